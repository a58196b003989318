//! Reading a scenario's seed.

use serde::{Deserialize, Deserializer};

/// A scenario's `seed`: a number, or decimal digits in a string (seeds past 2^53 do not
/// survive JavaScript's numbers).
pub(super) fn from_number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seed {
        Number(u64),
        Text(String),
    }
    match Seed::deserialize(d)? {
        Seed::Number(n) => Ok(n),
        Seed::Text(s) => parse_seed(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses a seed written as decimal digits.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("seed must be a non-negative integer, got {text:?}"));
    }
    t.parse::<u64>()
        .map_err(|_| format!("seed {text:?} does not fit in 64 bits"))
}
