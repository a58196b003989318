//! Retry delays: a fixed list, or exponential backoff with seeded jitter.

use crate::ctx::Ctx;

use super::Queue;

impl Queue {
    /// Delay before the retry that follows delivery number `attempts` (1-based): the
    /// `attempts`-th retry. No policy means the message is ready again at once.
    pub(crate) fn retry_delay(&self, ctx: &mut Ctx, attempts: u32) -> u64 {
        let n = attempts.max(1) as usize;
        let delays = &self.config.retry_delays_ms;
        if let Some(last) = delays.last() {
            return delays.get(n - 1).copied().unwrap_or(*last);
        }
        let Some(b) = &self.config.backoff else {
            return 0;
        };
        let mut delay = b.initial_ms as f64;
        for _ in 1..n {
            delay *= b.multiplier;
            if delay >= b.max_ms as f64 {
                break;
            }
        }
        let delay = delay.min(b.max_ms as f64);
        let cut = if b.jitter > 0.0 {
            delay * b.jitter * ctx.rng.next_f64()
        } else {
            0.0
        };
        (delay - cut).round() as u64
    }
}
