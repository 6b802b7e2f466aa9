//! Integration tests of the `whisperer` binary: real processes, real stores, real clients.

mod churn;
mod cli;
mod clients;
mod closed_loop;
mod cohorts;
mod decide;
mod deliver;
mod durability;
mod helpers;
mod postgres;
mod sim;
mod tidy;
