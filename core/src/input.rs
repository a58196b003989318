//! Input rules every transport shares (REST, the queue WebSocket, the SDK envelope,
//! SynapRPC): ids, durations in seconds, TTLs and integer arithmetic. Hosts convert what they
//! read with these functions, so a value means the same and is refused the same everywhere.

use crate::Error;

/// Longest duration accepted anywhere, in seconds (about 31 years): larger values are surely
/// mistakes, and the bound keeps the conversion to milliseconds exact.
pub const MAX_SECS: f64 = 1e9;
/// [`MAX_SECS`] as an integer.
const MAX_WHOLE_SECS: u64 = 1_000_000_000;

pub use crate::config::validate_queue_name;

/// Seconds (fractions allowed) as milliseconds. Negative, non-finite and absurd values
/// (over [`MAX_SECS`]) are an `invalid_argument` naming `field`.
pub fn secs_to_ms(field: &str, secs: f64) -> Result<u64, Error> {
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(Error::invalid(
            field,
            "must be a number of seconds between 0 and 1e9",
        ));
    }
    // In range by the check above, so the cast neither truncates nor saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (secs * 1000.0).round() as u64;
    Ok(ms)
}

/// A TTL in seconds as milliseconds: like [`secs_to_ms`], and at least 1 ms. A TTL of 0 is
/// refused rather than read as "expire at once" or "never expire".
pub fn ttl_secs_to_ms(field: &str, secs: f64) -> Result<u64, Error> {
    let ms = secs_to_ms(field, secs)?;
    if ms == 0 {
        return Err(Error::invalid(field, "a TTL must be positive"));
    }
    Ok(ms)
}

/// A TTL in whole seconds (SynapRPC and the envelope send integers) as milliseconds, by the
/// same rules as [`ttl_secs_to_ms`].
pub fn whole_ttl_secs_to_ms(field: &str, secs: i64) -> Result<u64, Error> {
    let ms = u64::try_from(secs)
        .ok()
        .filter(|s| *s <= MAX_WHOLE_SECS)
        .map(|s| s * 1000);
    match ms {
        Some(0) => Err(Error::invalid(field, "a TTL must be positive")),
        Some(ms) => Ok(ms),
        None => Err(Error::invalid(
            field,
            "must be a number of seconds between 1 and 1e9",
        )),
    }
}

/// A TTL in whole milliseconds (SynapRPC's `PX`), by the same rules: 1 ms to 1e9 s.
pub fn whole_ttl_ms(field: &str, ms: i64) -> Result<u64, Error> {
    u64::try_from(ms)
        .ok()
        .filter(|ms| (1..=MAX_WHOLE_SECS * 1000).contains(ms))
        .ok_or_else(|| Error::invalid(field, "must be between 1 ms and 1e9 seconds"))
}

/// Checks a consumer or subscriber id: 1 to `max` bytes, no control characters (NUL
/// included), so ids are safe to log and echo.
pub fn check_id(field: &str, id: &str, max: usize) -> Result<(), Error> {
    if id.is_empty() || id.len() > max {
        return Err(Error::invalid(field, format!("must be 1-{max} bytes")));
    }
    if has_control(id) {
        return Err(Error::invalid(
            field,
            "must not contain control characters (NUL included)",
        ));
    }
    Ok(())
}

/// Whether `text` holds a control character (C0, DEL or C1).
#[must_use]
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The amount a decrement by `by` adds: `-by`, or an `invalid_argument` for `i64::MIN`, whose
/// negation does not fit (a decrement never wraps or saturates silently).
pub fn negate(field: &str, by: i64) -> Result<i64, Error> {
    by.checked_neg().ok_or_else(|| {
        Error::invalid(
            field,
            "the amount's negation does not fit in a 64-bit signed integer",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_convert_to_milliseconds() {
        assert_eq!(secs_to_ms("t", 0.3).unwrap(), 300);
        assert_eq!(secs_to_ms("t", 0.0).unwrap(), 0);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12, 1e300] {
            assert!(secs_to_ms("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttls_are_positive_everywhere() {
        assert!(ttl_secs_to_ms("ttl", 0.0).is_err());
        assert!(ttl_secs_to_ms("ttl", 0.0001).is_err());
        assert_eq!(ttl_secs_to_ms("ttl", 0.5).unwrap(), 500);
        assert!(whole_ttl_secs_to_ms("ttl", 0).is_err());
        assert!(whole_ttl_secs_to_ms("ttl", -1).is_err());
        assert!(whole_ttl_secs_to_ms("ttl", i64::MAX).is_err());
        assert_eq!(whole_ttl_secs_to_ms("ttl", 60).unwrap(), 60_000);
        assert!(whole_ttl_ms("ttl", 0).is_err());
        assert!(whole_ttl_ms("ttl", -5).is_err());
        assert_eq!(whole_ttl_ms("ttl", 1500).unwrap(), 1500);
    }

    #[test]
    fn ids_are_short_and_printable() {
        assert!(check_id("consumer_id", "w1", 255).is_ok());
        assert!(check_id("consumer_id", "", 255).is_err());
        assert!(check_id("consumer_id", &"x".repeat(256), 255).is_err());
        assert!(check_id("consumer_id", "a\0b", 255).is_err());
        assert!(check_id("consumer_id", "a\nb", 255).is_err());
        assert!(check_id("consumer_id", "émile", 255).is_ok());
    }

    #[test]
    fn negation_overflow_is_an_error() {
        assert_eq!(negate("by", 5).unwrap(), -5);
        assert_eq!(negate("by", i64::MAX).unwrap(), -i64::MAX);
        assert!(negate("by", i64::MIN).is_err());
    }
}
