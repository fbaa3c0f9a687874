//! The outside world: the docker and podman CLIs, registries over HTTP, the private
//! engine. The only layer that runs processes or opens connections for the tool.

pub mod docker;
pub mod engine;
pub mod http;
pub mod registry;
