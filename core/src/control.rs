//! Flow-control commands at the engine's level (DESIGN.md §12): pause and resume a queue, a
//! worker's rate limit, and the listing of a queue's groups. The limits themselves are queue
//! settings (`QueueConfig`) and are applied in the one delivery path (`queue/flow.rs`).

use crate::Error;
use crate::api::{Command, Reply};
use crate::engine::Engine;

impl Engine {
    /// Runs one flow-control command.
    pub(crate) fn dispatch_control(&mut self, cmd: Command) -> Result<Reply, Error> {
        Ok(match cmd {
            Command::PauseQueue { queue } => {
                let (q, _) = self.queue_mut(&queue)?;
                q.pause();
                Reply::QueuePaused { paused: true }
            }
            Command::ResumeQueue { queue } => {
                let (q, ctx) = self.queue_mut(&queue)?;
                q.resume(ctx);
                Reply::QueuePaused { paused: false }
            }
            Command::RateLimit { queue, for_ms } => {
                let max = self.ctx.limits.max_delay_ms;
                if !(1..=max).contains(&for_ms) {
                    return Err(Error::invalid(
                        "for_ms",
                        format!("must be between 1 and {max} ms"),
                    ));
                }
                let (q, ctx) = self.queue_mut(&queue)?;
                Reply::RateLimited {
                    until: q.rate_limit(ctx, for_ms),
                }
            }
            Command::Groups { queue, limit } => {
                let max = self.ctx.limits.max_page;
                if !(1..=max).contains(&limit) {
                    return Err(Error::invalid("limit", format!("must be 1..={max}")));
                }
                Reply::Groups {
                    groups: self.queue(&queue)?.list_groups(limit as usize),
                }
            }
            other => unreachable!("{other:?} is not a flow-control command"),
        })
    }
}
