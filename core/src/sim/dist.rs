//! Random durations for the simulator: service times and inter-arrival gaps.
//!
//! Every draw comes from a seeded `Rng`, and every formula uses only IEEE-754 basic operations
//! (`+ - * /` and `sqrt`, which are correctly rounded everywhere). `f64::ln` is not: native
//! libm and the wasm build may differ in the last bit, and one flipped rounding would make a
//! native run and a browser run diverge. So the logarithm is computed here by a fixed series.

use serde::{Deserialize, Serialize};

use crate::Rng;

/// A distribution of durations in milliseconds. Draws are rounded to whole milliseconds and
/// never negative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always `ms`.
    Constant {
        /// The duration.
        ms: u64,
    },
    /// Uniform in `[min_ms, max_ms]`.
    Uniform {
        /// Shortest.
        min_ms: u64,
        /// Longest.
        max_ms: u64,
    },
    /// Exponential with mean `mean_ms` (memoryless: many short, a few long).
    Exponential {
        /// Mean.
        mean_ms: u64,
    },
    /// Normal with mean `mean_ms` and standard deviation `std_ms`, cut off below at 0.
    Normal {
        /// Mean.
        mean_ms: u64,
        /// Standard deviation.
        std_ms: u64,
    },
}

/// Upper bound on any configured duration: 30 days.
pub(crate) const MAX_DIST_MS: u64 = 30 * 24 * 3600 * 1000;

impl Dist {
    /// One draw, in whole milliseconds.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match *self {
            Self::Constant { ms } => ms,
            Self::Uniform { min_ms, max_ms } => {
                let span = max_ms - min_ms + 1;
                min_ms + rng.next_u64() % span
            }
            Self::Exponential { mean_ms } => round_ms(exponential(rng) * mean_ms as f64),
            Self::Normal { mean_ms, std_ms } => {
                round_ms(mean_ms as f64 + std_ms as f64 * standard_normal(rng))
            }
        }
    }

    /// The mean of the distribution (before the cut-off at 0), for validation and docs.
    #[must_use]
    pub fn mean_ms(&self) -> f64 {
        match *self {
            Self::Constant { ms } => ms as f64,
            Self::Uniform { min_ms, max_ms } => (min_ms + max_ms) as f64 / 2.0,
            Self::Exponential { mean_ms } | Self::Normal { mean_ms, .. } => mean_ms as f64,
        }
    }

    /// Checks the parameters; `what` names the field in the message.
    pub(crate) fn validate(&self, what: &str) -> Result<(), String> {
        let (lo, hi) = match *self {
            Self::Constant { ms } => (ms, ms),
            Self::Uniform { min_ms, max_ms } => (min_ms, max_ms),
            Self::Exponential { mean_ms } => (mean_ms, mean_ms),
            Self::Normal { mean_ms, std_ms } => (std_ms, mean_ms),
        };
        if lo > hi && matches!(self, Self::Uniform { .. }) {
            return Err(format!("{what}: min_ms must not exceed max_ms"));
        }
        if lo.max(hi) > MAX_DIST_MS {
            return Err(format!("{what}: durations are limited to {MAX_DIST_MS} ms"));
        }
        Ok(())
    }
}

/// Rounds a non-negative duration to whole milliseconds (negative draws become 0).
fn round_ms(x: f64) -> u64 {
    if x <= 0.0 {
        0
    } else {
        (x + 0.5).floor().min(MAX_DIST_MS as f64 * 16.0) as u64
    }
}

/// A draw of the standard exponential distribution (mean 1), by inversion.
pub(crate) fn exponential(rng: &mut Rng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    -ln(1.0 - rng.next_f64())
}

/// A draw of the standard normal distribution by Marsaglia's polar method, which needs only
/// `ln` and `sqrt` (no trigonometry, whose libm results differ between platforms).
pub(crate) fn standard_normal(rng: &mut Rng) -> f64 {
    loop {
        let u = 2.0 * rng.next_f64() - 1.0;
        let v = 2.0 * rng.next_f64() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * ln(s) / s).sqrt();
        }
    }
}

/// Natural logarithm of a positive finite `x`, bit-identical on every platform.
///
/// `x = m * 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then `ln m = 2 atanh(t)` with
/// `t = (m-1)/(m+1)`, `|t| < 0.172`, summed until the terms vanish (under 25 terms).
pub(crate) fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64;
    let mut mantissa_bits = bits & ((1u64 << 52) - 1);
    if exponent == 0 {
        // Subnormal: normalise by scaling up 2^54 first.
        let scaled = (x * (1u64 << 54) as f64).to_bits();
        exponent = ((scaled >> 52) & 0x7ff) as i64 - 54;
        mantissa_bits = scaled & ((1u64 << 52) - 1);
    }
    let mut e = exponent - 1023;
    let mut m = f64::from_bits(mantissa_bits | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut term = t;
    let mut sum: f64 = 0.0;
    let mut k = 1.0;
    while term.abs() > 1e-18 * sum.abs().max(1e-300) {
        sum += term / k;
        term *= t2;
        k += 2.0;
        if k > 61.0 {
            break;
        }
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std_closely() {
        for x in [
            1e-300, 1e-10, 0.001, 0.5, 0.7, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300,
        ] {
            let ours = ln(x);
            let std = x.ln();
            assert!(
                (ours - std).abs() <= 1e-13 * std.abs().max(1.0),
                "ln({x}) {ours} vs {std}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn sample_means_are_close_to_the_configured_mean() {
        let mut rng = Rng::new(7);
        for dist in [
            Dist::Constant { ms: 500 },
            Dist::Uniform {
                min_ms: 100,
                max_ms: 900,
            },
            Dist::Exponential { mean_ms: 500 },
            Dist::Normal {
                mean_ms: 500,
                std_ms: 50,
            },
        ] {
            let n = 20_000;
            let total: u64 = (0..n).map(|_| dist.sample(&mut rng)).sum();
            let mean = total as f64 / n as f64;
            assert!((mean - 500.0).abs() < 15.0, "{dist:?}: mean {mean}");
        }
    }

    #[test]
    fn uniform_stays_in_range_and_reaches_both_ends() {
        let mut rng = Rng::new(1);
        let d = Dist::Uniform {
            min_ms: 3,
            max_ms: 5,
        };
        let draws: Vec<u64> = (0..1000).map(|_| d.sample(&mut rng)).collect();
        assert!(draws.iter().all(|x| (3..=5).contains(x)));
        assert!(draws.contains(&3) && draws.contains(&5));
    }
}
