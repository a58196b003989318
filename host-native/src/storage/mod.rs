//! Durability: the command log, snapshots and recovery of the engine (DESIGN.md §6).

pub(crate) mod fs;
pub(crate) mod record;
pub(crate) mod log;
pub(crate) mod snapshot;
pub(crate) mod writer;
pub(crate) mod recovery;
