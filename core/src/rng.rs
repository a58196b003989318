//! The engine's only source of randomness: a PRNG seeded by `Engine::new`.
//!
//! Retry jitter and message ids come from here, so a run is a pure function of
//! `(config, seed, [(now, command)])`. The generator state is part of the engine's serialized
//! state, so a restored engine draws the same numbers as the original would have.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use serde::{Deserialize, Serialize};

/// Seeded, serializable PRNG (xoshiro256++).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// A generator whose whole future output is determined by `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform float in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 16 random bytes, for a UUID.
    pub fn next_bytes16(&mut self) -> [u8; 16] {
        let hi = self.next_u64().to_le_bytes();
        let lo = self.next_u64().to_le_bytes();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&hi);
        out[8..].copy_from_slice(&lo);
        out
    }
}
