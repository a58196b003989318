//! Time as data: the host passes `Millis` into every call; the core never reads a clock.

use serde::{Deserialize, Serialize};

/// Milliseconds on the host's clock: Unix-epoch milliseconds in the server (never going
/// backwards), 0-based virtual time in simulations.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The start of virtual time.
    pub const ZERO: Self = Self(0);

    /// `self + ms`, saturating instead of overflowing.
    #[must_use]
    pub fn add_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
