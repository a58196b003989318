//! Shared harness for Synap's tests: the simulation swarm's actors, faults and oracle.

pub mod client_harness;
pub mod server_harness;
pub mod swarm;
