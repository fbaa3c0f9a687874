//! The repository's knowledge: the project, its Dockerfiles, `.dockerignore`, build contexts,
//! `.env` and its values, templates, image references. Reads files, writes only through
//! `base::atomic`; runs no process and opens no connection.

pub mod context;
pub mod dockerfile;
pub mod env;
pub mod hashcache;
pub mod ignore;
pub mod project;
pub mod reads;
pub mod record;
pub mod reference;
pub mod render;
