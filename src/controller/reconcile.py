"""Reconcile loop of the cluster controller (a stand-in: reads its config and exits)."""
import tomllib

with open("/etc/ai-infra/controller.toml", "rb") as f:
    config = tomllib.load(f)
print("watching", ", ".join(config["services"]), "every", config["interval_seconds"], "s")
