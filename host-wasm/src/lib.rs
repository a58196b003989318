//! Synap for WebAssembly.
