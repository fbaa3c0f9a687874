//! The integration tests, one binary (compiled and linked once): a module per feature, on a
//! real engine and a real registry (`cargo xtask test` starts them), sharing `common`.

mod common;

mod bad_input;
mod build_all;
mod bundle;
mod config;
mod dockerignore;
mod engine;
mod hardening;
mod podman;
mod project_stack;
mod registry;
mod root_context;
mod status;
mod tidy;
