//! Queue settings as users write them (durations in seconds, fractions allowed), converted to
//! the core's `QueueConfig` (milliseconds). Shared by the config file and `POST /queue/{name}`.

use serde::Deserialize;
use synap_core::{Backoff, Error, QueueConfig, RetryPosition};

/// Longest duration accepted anywhere, in seconds (about 31 years): larger values are surely
/// mistakes, and the bound keeps the conversion to milliseconds exact.
const MAX_SECS: f64 = 1e9;

/// Converts seconds (fractions allowed) to milliseconds, rejecting negative, non-finite and
/// absurd values with an `invalid_argument` naming `field`.
pub(crate) fn secs_to_ms(field: &str, secs: f64) -> Result<u64, Error> {
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(invalid(
            field,
            "must be a number of seconds between 0 and 1e9",
        ));
    }
    // In range by the check above, so the cast neither truncates nor saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (secs * 1000.0).round() as u64;
    Ok(ms)
}

/// An `invalid_argument` error.
pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Exponential backoff in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackoffSettings {
    /// Delay before the first retry.
    pub(crate) initial: f64,
    /// Growth per retry (default 2).
    #[serde(default)]
    pub(crate) multiplier: Option<f64>,
    /// Largest delay.
    pub(crate) max: f64,
    /// Random shortening fraction in [0, 1].
    #[serde(default)]
    pub(crate) jitter: Option<f64>,
}

/// Per-queue settings; absent fields take the server's default queue config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QueueSettings {
    /// Retries after the first delivery (`max_retries = N` allows N+1 deliveries).
    #[serde(alias = "default_max_retries")]
    pub(crate) max_retries: Option<u32>,
    /// Default lease length.
    #[serde(alias = "ack_deadline")]
    pub(crate) ack_deadline_secs: Option<f64>,
    /// Fixed retry delays; the last repeats.
    pub(crate) retry_delays: Option<Vec<f64>>,
    /// Exponential backoff (used when `retry_delays` is empty).
    pub(crate) backoff: Option<BackoffSettings>,
    /// Ready plus delayed messages allowed.
    pub(crate) max_depth: Option<u64>,
    /// Message time-to-live.
    pub(crate) message_ttl: Option<f64>,
    /// Unacked messages per consumer id (0 = unlimited).
    #[serde(alias = "prefetch_limit")]
    pub(crate) prefetch: Option<u32>,
    /// Keep dead-lettered messages.
    pub(crate) dead_letter: Option<bool>,
    /// DLQ capacity.
    pub(crate) dlq_max: Option<u64>,
    /// Priority of messages published without one.
    pub(crate) default_priority: Option<u8>,
    /// Where a retried message stands when it is ready again: `back` or `original`.
    pub(crate) retry_position: Option<RetryPosition>,
}

impl QueueSettings {
    /// True when no field is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.max_retries.is_none()
            && self.ack_deadline_secs.is_none()
            && self.retry_delays.is_none()
            && self.backoff.is_none()
            && self.max_depth.is_none()
            && self.message_ttl.is_none()
            && self.prefetch.is_none()
            && self.dead_letter.is_none()
            && self.dlq_max.is_none()
            && self.default_priority.is_none()
            && self.retry_position.is_none()
    }

    /// `base` with these settings applied; the engine validates ranges on use.
    pub(crate) fn apply(&self, base: &QueueConfig) -> Result<QueueConfig, Error> {
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
            c.message_ttl_ms = Some(secs_to_ms("message_ttl", v)?);
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
        if let Some(v) = self.retry_position {
            c.retry_position = v;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_convert_to_milliseconds() {
        assert_eq!(secs_to_ms("t", 0.3).unwrap(), 300);
        assert_eq!(secs_to_ms("t", 300.0).unwrap(), 300_000);
        assert!(secs_to_ms("t", -1.0).is_err());
        assert!(secs_to_ms("t", f64::NAN).is_err());
        assert!(secs_to_ms("t", 1e12).is_err());
    }

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
}
