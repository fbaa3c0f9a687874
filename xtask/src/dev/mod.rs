//! The developers' lab, apart from the product: the test harness (`cargo xtask test`), the
//! benchmark (`cargo xtask bench`) and the test-only Podman storage. No product module imports
//! from here.

pub mod bench;
pub mod harness;
pub mod podstore;
