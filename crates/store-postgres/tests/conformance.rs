//! The storage conformance suite on the PostgreSQL backend, each test in a schema of its own.
//!
//! Runs against `WHISPERER_TEST_POSTGRES_URL`; skipped when it is unset, unless
//! `WHISPERER_REQUIRE_SERVICES=1` makes that a failure.

mod common;

use common::fresh;

whisperer_store::conformance_suite!(fresh());
