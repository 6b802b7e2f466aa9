//! Test setup shared by the PostgreSQL test binaries (the crate's own `testing` module, which
//! other crates' tests use too).

#![allow(unused_imports)]

pub use whisperer_store_postgres::testing::*;
