//! Topic patterns: `.`-separated segments; `*` matches exactly one segment (or, inside a
//! segment such as `user-*`, any text within that one segment); `#`, only as the last segment,
//! matches zero or more segments.

use crate::Error;

/// Checks a topic to publish to: non-empty segments, no wildcards.
pub(crate) fn validate_topic(topic: &str, max_bytes: usize) -> Result<(), Error> {
    check_common("topic", topic, max_bytes)?;
    if topic.contains(['*', '#']) {
        return Err(Error::invalid("topic", "a topic cannot contain * or #"));
    }
    Ok(())
}

/// Checks a subscription pattern.
pub(crate) fn validate_pattern(pattern: &str, max_bytes: usize) -> Result<(), Error> {
    check_common("pattern", pattern, max_bytes)?;
    let segments: Vec<&str> = pattern.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        if seg.contains('#') && (*seg != "#" || i + 1 != segments.len()) {
            return Err(Error::invalid(
                "pattern",
                "# must be a whole segment and the last one",
            ));
        }
    }
    Ok(())
}

fn check_common(field: &str, s: &str, max_bytes: usize) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::invalid(field, "cannot be empty"));
    }
    if s.len() > max_bytes {
        return Err(Error::too_large(field, s.len(), max_bytes));
    }
    if crate::input::has_control(s) {
        return Err(Error::invalid(
            field,
            "must not contain control characters (NUL included)",
        ));
    }
    if s.split('.').any(str::is_empty) {
        return Err(Error::invalid(field, "segments cannot be empty"));
    }
    Ok(())
}

/// Whether `pattern` is a wildcard pattern.
pub(crate) fn is_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '#'])
}

/// Whether a validated `pattern` matches a validated `topic`.
pub(crate) fn matches(pattern: &str, topic: &str) -> bool {
    let mut pats = pattern.split('.');
    let mut segs = topic.split('.');
    loop {
        match (pats.next(), segs.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some(p), Some(s)) if segment_matches(p, s) => {}
            _ => return false,
        }
    }
}

/// One segment: `*` alone matches anything; otherwise `*` globs within the segment.
fn segment_matches(pat: &str, seg: &str) -> bool {
    if !pat.contains('*') {
        return pat == seg;
    }
    let parts: Vec<&str> = pat.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if seg.len() < first.len() + last.len() || !seg.starts_with(first) || !seg.ends_with(last) {
        return false;
    }
    let mut rest = &seg[first.len()..seg.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_exactly_one_segment() {
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("*.b", "x.b"));
    }

    #[test]
    fn hash_matches_zero_or_more_trailing_segments() {
        assert!(matches("a.#", "a"));
        assert!(matches("a.#", "a.b"));
        assert!(matches("a.#", "a.b.c"));
        assert!(matches("#", "anything.at.all"));
        assert!(!matches("a.#", "b.a"));
    }

    #[test]
    fn star_inside_a_segment_globs_within_it() {
        assert!(matches("user-*.x", "user-42.x"));
        assert!(!matches("user-*.x", "admin-1.x"));
        assert!(matches("a*c", "abbbc"));
        assert!(!matches("a*c*d", "acx"));
    }

    #[test]
    fn exact_patterns_need_equality() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
    }

    #[test]
    fn hash_must_be_last_and_whole() {
        assert!(validate_pattern("a.#.b", 255).is_err());
        assert!(validate_pattern("a#", 255).is_err());
        assert!(validate_pattern("a.#", 255).is_ok());
        assert!(validate_pattern("", 255).is_err());
        assert!(validate_pattern("a..b", 255).is_err());
        assert!(validate_topic("a.*", 255).is_err());
    }
}
