//! Queue settings as users write them (`synap_wire::QueueConfig`: durations in seconds,
//! fractions allowed) ⇄ the core's `QueueConfig` (milliseconds). Shared by the config file,
//! `POST /queue/{name}` and the stats answer.

use synap_core::{Backoff, Error, QueueConfig, RateLimit, RetryPosition};

/// Seconds to milliseconds by the rules every transport shares (see `synap_core::input`).
pub(crate) use synap_core::input::{secs_to_ms, ttl_secs_to_ms};

/// An `invalid_argument` error.
pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Queue settings as users write them: the wire type, named for its role here.
pub(crate) use synap_wire::QueueConfig as QueueSettings;

/// Applies [`QueueSettings`] (seconds) over a core `QueueConfig` (milliseconds).
pub(crate) trait ApplySettings {
    /// `base` with these settings applied; the engine validates ranges on use.
    ///
    /// # Errors
    /// `invalid_argument` for a duration that is negative, not finite or absurd, or more than
    /// 64 retry delays.
    fn apply(&self, base: &QueueConfig) -> Result<QueueConfig, Error>;
}

impl ApplySettings for QueueSettings {
    fn apply(&self, base: &QueueConfig) -> Result<QueueConfig, Error> {
        let mut c = base.clone();
        if let Some(v) = self.max_retries {
            c.max_retries = v;
        }
        if let Some(v) = self.ack_deadline_secs {
            c.ack_deadline_ms = secs_to_ms("ack_deadline_secs", v)?;
        }
        if let Some(delays) = &self.retry_delays {
            if delays.len() > 64 {
                return Err(invalid("retry_delays", "at most 64 entries"));
            }
            c.retry_delays_ms = delays
                .iter()
                .map(|d| secs_to_ms("retry_delays", *d))
                .collect::<Result<_, _>>()?;
        }
        if let Some(b) = &self.backoff {
            c.backoff = Some(Backoff {
                initial_ms: secs_to_ms("backoff.initial", b.initial)?,
                multiplier: b.multiplier.unwrap_or(2.0),
                max_ms: secs_to_ms("backoff.max", b.max)?,
                jitter: b.jitter.unwrap_or(0.0),
            });
        }
        if let Some(v) = self.max_depth {
            c.max_depth = v;
        }
        if let Some(v) = self.message_ttl {
            c.message_ttl_ms = Some(ttl_secs_to_ms("message_ttl", v)?);
        }
        if let Some(v) = self.max_bytes {
            c.max_bytes = Some(v);
        }
        if let Some(v) = self.prefetch {
            c.prefetch = v;
        }
        if let Some(v) = self.dead_letter {
            c.dead_letter = v;
        }
        if let Some(v) = self.dlq_max {
            c.dlq_max = v;
        }
        if let Some(v) = self.default_priority {
            c.default_priority = v;
        }
        if let Some(k) = self.keep_completed {
            c.keep_completed = keep_of("keep_completed.age_secs", k)?;
        }
        if let Some(k) = self.keep_cancelled {
            c.keep_cancelled = keep_of("keep_cancelled.age_secs", k)?;
        }
        if let Some(v) = self.max_result_bytes {
            c.max_result_bytes = v;
        }
        apply_flow(self, &mut c)?;
        if let Some(v) = self.retry_position {
            c.retry_position = match v {
                synap_wire::RetryPosition::Back => RetryPosition::Back,
                synap_wire::RetryPosition::Original => RetryPosition::Original,
            };
        }
        Ok(c)
    }
}

/// Applies the flow-control settings (DESIGN.md §12).
fn apply_flow(s: &QueueSettings, c: &mut QueueConfig) -> Result<(), Error> {
    if let Some(v) = s.max_in_flight {
        c.max_in_flight = Some(v);
    }
    if let Some(v) = s.group_concurrency {
        c.group_concurrency = Some(v);
    }
    if let Some(v) = s.ordered_groups {
        c.ordered_groups = v;
    }
    if let Some(v) = s.fair_groups {
        c.fair_groups = v;
    }
    if let Some(r) = s.rate_limit {
        c.rate_limit = Some(rate_of("rate_limit.per_secs", r)?);
    }
    if let Some(r) = s.group_rate_limit {
        c.group_rate_limit = Some(rate_of("group_rate_limit.per_secs", r)?);
    }
    if let Some(v) = s.max_snoozes {
        c.max_snoozes = v;
    }
    Ok(())
}

fn rate_of(field: &str, r: synap_wire::Rate) -> Result<RateLimit, Error> {
    Ok(RateLimit {
        max: r.max,
        per_ms: secs_to_ms(field, r.per_secs)?,
    })
}

fn rate_secs(r: RateLimit) -> synap_wire::Rate {
    synap_wire::Rate {
        max: r.max,
        per_secs: ms_to_secs(r.per_ms),
    }
}

/// A core config as settings in seconds, every field given: the `config` of the stats answer,
/// in the shape `POST /queue/{name}` takes.
pub(crate) fn settings_of(c: &QueueConfig) -> QueueSettings {
    QueueSettings {
        max_retries: Some(c.max_retries),
        ack_deadline_secs: Some(ms_to_secs(c.ack_deadline_ms)),
        retry_delays: Some(c.retry_delays_ms.iter().copied().map(ms_to_secs).collect()),
        backoff: c.backoff.as_ref().map(|b| synap_wire::Backoff {
            initial: ms_to_secs(b.initial_ms),
            multiplier: Some(b.multiplier),
            max: ms_to_secs(b.max_ms),
            jitter: Some(b.jitter),
        }),
        max_depth: Some(c.max_depth),
        message_ttl: c.message_ttl_ms.map(ms_to_secs),
        prefetch: Some(c.prefetch),
        dead_letter: Some(c.dead_letter),
        dlq_max: Some(c.dlq_max),
        default_priority: Some(c.default_priority),
        retry_position: Some(match c.retry_position {
            RetryPosition::Back => synap_wire::RetryPosition::Back,
            RetryPosition::Original => synap_wire::RetryPosition::Original,
        }),
        max_bytes: c.max_bytes,
        keep_completed: Some(keep_secs(c.keep_completed)),
        keep_cancelled: Some(keep_secs(c.keep_cancelled)),
        max_result_bytes: Some(c.max_result_bytes),
        max_in_flight: c.max_in_flight,
        group_concurrency: c.group_concurrency,
        ordered_groups: Some(c.ordered_groups),
        fair_groups: Some(c.fair_groups),
        rate_limit: c.rate_limit.map(rate_secs),
        group_rate_limit: c.group_rate_limit.map(rate_secs),
        max_snoozes: Some(c.max_snoozes),
    }
}

fn keep_of(field: &str, k: synap_wire::Keep) -> Result<synap_core::Keep, Error> {
    Ok(synap_core::Keep {
        count: k.count,
        age_ms: secs_to_ms(field, k.age_secs)?,
    })
}

fn keep_secs(k: synap_core::Keep) -> synap_wire::Keep {
    synap_wire::Keep {
        count: k.count,
        age_secs: ms_to_secs(k.age_ms),
    }
}

/// Milliseconds as seconds.
#[allow(clippy::cast_precision_loss)] // Durations are far below 2^52 ms.
pub(crate) fn ms_to_secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_over_the_default() {
        let s = QueueSettings {
            max_retries: Some(3),
            ack_deadline_secs: Some(300.0),
            retry_delays: Some(vec![10.0, 60.0, 300.0]),
            ..QueueSettings::default()
        };
        let c = s.apply(&QueueConfig::default()).unwrap();
        assert_eq!(c.ack_deadline_ms, 300_000);
        assert_eq!(c.retry_delays_ms, vec![10_000, 60_000, 300_000]);
        assert_eq!(c.max_depth, QueueConfig::default().max_depth);
    }

    #[test]
    fn a_core_config_reads_back_as_the_settings_that_made_it() {
        let s = QueueSettings {
            ack_deadline_secs: Some(0.3),
            retry_delays: Some(vec![1.5]),
            backoff: Some(synap_wire::Backoff {
                initial: 1.0,
                multiplier: Some(3.0),
                max: 30.0,
                jitter: Some(0.1),
            }),
            message_ttl: Some(60.0),
            max_in_flight: Some(8),
            group_concurrency: Some(1),
            ordered_groups: Some(true),
            fair_groups: Some(true),
            rate_limit: Some(synap_wire::Rate {
                max: 100,
                per_secs: 1.5,
            }),
            group_rate_limit: Some(synap_wire::Rate {
                max: 2,
                per_secs: 60.0,
            }),
            max_snoozes: Some(7),
            ..QueueSettings::default()
        };
        let core = s.apply(&QueueConfig::default()).unwrap();
        assert_eq!(core.rate_limit.map(|r| r.per_ms), Some(1_500));
        assert_eq!(core.group_limit(), Some(1));
        let back = settings_of(&core);
        assert_eq!(back.ack_deadline_secs, Some(0.3));
        assert_eq!(back.retry_delays, Some(vec![1.5]));
        assert_eq!(back.backoff, s.backoff);
        assert_eq!(back.message_ttl, Some(60.0));
        assert_eq!(back.rate_limit, s.rate_limit);
        assert_eq!(back.group_rate_limit, s.group_rate_limit);
        assert_eq!(back.apply(&QueueConfig::default()).unwrap(), core);
    }
}
