//! Hashing of serialized values, for `Engine::state_digest` and the simulator's `run_hash`.
//!
//! Values are hashed as their compact JSON text (streamed into xxh3, never built as a string):
//! the text is the same on every platform, so a hash computed natively equals one computed in
//! WebAssembly.

use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

/// Feeds `value`'s JSON text into `hasher`.
pub(crate) fn hash_json<T: Serialize + ?Sized>(hasher: &mut Xxh3, value: &T) {
    serde_json::to_writer(HashWriter(hasher), value).expect("engine values serialize to JSON");
}

/// Feeds written bytes into a hasher.
struct HashWriter<'a>(&'a mut Xxh3);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
