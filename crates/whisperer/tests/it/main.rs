//! Integration tests of the `whisperer` binary: real processes, real stores, real clients.

mod cli;
mod clients;
mod cohorts;
mod durability;
mod helpers;
mod postgres;
mod sim;
mod tidy;
