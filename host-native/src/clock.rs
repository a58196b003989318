//! The host clock: Unix-epoch milliseconds that never go backwards.
//!
//! Time is measured as a Unix-epoch origin plus the elapsed time of tokio's monotonic
//! `Instant`, so a wall-clock step (NTP, a manual change) cannot move engine time backwards, and
//! tests under tokio's paused time drive the engine deterministically.

use std::time::{SystemTime, UNIX_EPOCH};

use synap_core::Millis;
use tokio::time::Instant;

/// Maps between engine `Millis` and tokio `Instant`s.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    origin_unix_ms: u64,
}

impl Clock {
    /// A clock anchored at the current wall-clock time.
    pub(crate) fn new() -> Self {
        let origin_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            origin: Instant::now(),
            origin_unix_ms,
        }
    }

    /// This clock, moved forward if needed so it reads at least `floor` now: time recovered
    /// from the data directory never goes backwards, even if the wall clock did.
    pub(crate) fn not_before(self, floor: Millis) -> Self {
        let now = self.now();
        if now >= floor {
            return self;
        }
        Self {
            origin_unix_ms: self.origin_unix_ms + (floor.0 - now.0),
            ..self
        }
    }

    /// Now, in Unix-epoch milliseconds.
    pub(crate) fn now(&self) -> Millis {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Millis(self.origin_unix_ms.saturating_add(elapsed))
    }

    /// The instant at which engine time reaches `at` (now, if it already has).
    pub(crate) fn instant_at(&self, at: Millis) -> Instant {
        let offset = at.0.saturating_sub(self.origin_unix_ms);
        // Deadlines far in the future are capped so the addition cannot overflow.
        let offset = offset.min(365 * 24 * 3600 * 1000);
        self.origin + std::time::Duration::from_millis(offset)
    }
}
