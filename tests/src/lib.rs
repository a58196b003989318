//! Shared harness for Synap's tests: the simulation swarm's actors, faults and oracle.

pub mod swarm;
