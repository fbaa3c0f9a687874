//! The outside world: the docker CLI, the engine's API over HTTP, registries, the private
//! engine, the file watcher. The only layer that runs processes or opens connections for the tool.

pub mod api;
pub mod docker;
pub mod engine;
pub mod http;
pub mod registry;
pub mod watcher;
