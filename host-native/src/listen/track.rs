//! What one connection's watchdog knows: when bytes last moved, whether a request is being
//! answered, and since when an unanswered request head has been arriving.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// No request head is arriving.
const NONE: u64 = u64::MAX;

/// The HTTP timeouts (see `Limits`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// From a request head's first byte to its end.
    pub(crate) header: Duration,
    /// Keep-alive: a connection with no request for this long is closed.
    pub(crate) idle: Duration,
}

/// Shared by a connection's socket, its requests and its watchdog.
#[derive(Debug)]
pub(crate) struct Track {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written, or answer finished.
    last_io_ms: AtomicU64,
    /// Milliseconds from `start` to the first byte of a request head not yet complete.
    head_since_ms: AtomicU64,
    /// Requests whose answer is not finished.
    pub(crate) in_flight: AtomicUsize,
    /// The connection became a WebSocket: no HTTP timeouts apply any more.
    pub(crate) upgraded: AtomicBool,
}

/// What the watchdog does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Look again at this time.
    CheckAt(Instant),
    /// Close the connection, for this reason.
    Close(&'static str),
}

impl Track {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Bytes arrived: between requests they start a request head.
    pub(crate) fn read_bytes(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_since_ms.compare_exchange(
                NONE,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Bytes left.
    pub(crate) fn wrote_bytes(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request head is complete and its route runs.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(NONE, Ordering::Relaxed);
    }

    /// A request's answer is finished (written, or dropped).
    pub(crate) fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether the connection has been quiet or slow for too long, or when to look again.
    pub(crate) fn verdict(&self, t: Timeouts) -> Verdict {
        let now = self.now_ms();
        let at = |ms: u64| self.start + Duration::from_millis(ms);
        let look_again = at(now) + t.header.min(t.idle);
        if self.upgraded.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::CheckAt(look_again);
        }
        let head = self.head_since_ms.load(Ordering::Relaxed);
        if head != NONE {
            let deadline = head.saturating_add(millis(t.header));
            if now >= deadline {
                return Verdict::Close("request head not complete within the header timeout");
            }
            return Verdict::CheckAt(at(deadline));
        }
        let deadline = self
            .last_io_ms
            .load(Ordering::Relaxed)
            .saturating_add(millis(t.idle));
        if now >= deadline {
            return Verdict::Close("idle past the keep-alive timeout");
        }
        Verdict::CheckAt(at(deadline))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(2),
        idle: Duration::from_secs(5),
    };

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_closes_after_the_idle_timeout() {
        let track = Track::new();
        assert!(matches!(track.verdict(T), Verdict::CheckAt(_)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            track.verdict(T),
            Verdict::Close("idle past the keep-alive timeout")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_head_closes_after_the_header_timeout() {
        let track = Track::new();
        tokio::time::advance(Duration::from_secs(1)).await;
        track.read_bytes();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert!(matches!(track.verdict(T), Verdict::CheckAt(_)));
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(matches!(track.verdict(T), Verdict::Close(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_being_answered_is_never_timed_out_here() {
        let track = Track::new();
        track.read_bytes();
        track.request_started();
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(matches!(track.verdict(T), Verdict::CheckAt(_)));
        track.request_ended();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(track.verdict(T), Verdict::CheckAt(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(track.verdict(T), Verdict::Close(_)));
    }
}
