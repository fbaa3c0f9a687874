//! The decisions: input digests, each image's status, the plan, the scheduler, the reports.
//! Pure functions of gathered facts (`cmd::gather` gathers them).

pub mod digest;
pub mod graph;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod status;
