//! The commands, one module each (`pipeline` is build-all and build SERVICE, whose steps are
//! `prefetch`, `build` and `push`), the gather step they start with (`gather`), and the command
//! line (`flags`).

pub mod build;
pub mod check;
pub mod clean;
pub mod deps;
pub mod export;
pub mod flags;
pub mod gather;
pub mod history;
pub mod import;
pub mod pipeline;
pub mod prefetch;
pub mod push;
pub mod render;
pub mod sync_env;
