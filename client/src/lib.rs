//! Async Rust client for Synap.
