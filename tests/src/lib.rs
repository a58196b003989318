//! Shared harness for Synap's tests: the simulation swarm's actors, faults and oracle
//! ([`swarm`]; `tests/swarm.rs` runs it), and the harnesses that start the real server
//! ([`server_harness`]) and the client examples ([`client_harness`]) for the end-to-end tests in
//! `tests/`. docs/testing.md says what each suite proves and how to replay a failing seed.

pub mod client_harness;
pub mod cluster_harness;
pub mod cluster_swarm;
pub mod server_harness;
pub mod swarm;
