"""ai-infra backend (stand-in)."""
