use super::*;
use proptest::prelude::*;

fn who(perms: &[&str]) -> Principal {
    let perms: Vec<String> = perms.iter().map(|p| (*p).to_owned()).collect();
    Principal::new("k", Some(&perms)).unwrap()
}

#[test]
fn permissions_parse_or_name_what_is_wrong() {
    assert!(Grant::parse("queue:video-*:publish").is_ok());
    assert!(Grant::parse("kv:video:*:read").is_ok());
    assert!(Grant::parse("topic:notifications.#:publish").is_ok());
    assert!(Grant::parse("queue:*:*").is_ok());
    assert!(Grant::parse("server:metrics:read").is_ok());
    for bad in [
        "queue:x",
        "queue:x:write",
        "kv:x:publish",
        "box:x:read",
        "queue::read",
        "queue:a b:read",
        "topic:a.#.b:subscribe",
        "queue",
    ] {
        let e = Grant::parse(bad).unwrap_err();
        assert!(e.contains(bad), "{e}");
    }
}

#[test]
fn kv_patterns_may_hold_colons() {
    let p = who(&["kv:video:*:read"]);
    assert!(p.may(Kind::Kv, Action::Read, "video:1"));
    assert!(!p.may(Kind::Kv, Action::Read, "videos"));
    assert!(!p.may(Kind::Kv, Action::Write, "video:1"));
}

#[test]
fn actions_cover_their_commands() {
    let p = who(&["queue:video-*:publish", "queue:jobs:consume"]);
    let publish = Command::Publish {
        queue: "video-a".into(),
        message: Default::default(),
    };
    assert!(p.check(&publish).is_ok());
    let purge = Command::Purge {
        queue: "video-a".into(),
    };
    let e = p.check(&purge).unwrap_err();
    assert!(e.0.contains("admin") && e.0.contains("video-a"), "{e}");
    let mut list = Reply::Queues {
        queues: vec!["jobs".into(), "other".into(), "video-b".into()],
    };
    p.filter(&mut list);
    assert_eq!(
        list,
        Reply::Queues {
            queues: vec!["jobs".into(), "video-b".into()]
        }
    );
}

#[test]
fn wider_subscriptions_are_refused() {
    let p = who(&["topic:notifications.*:subscribe"]);
    assert!(p.may_subscribe("notifications.email"));
    assert!(p.may_subscribe("notifications.*"));
    assert!(p.may_subscribe("notifications.*.sent"));
    assert!(p.may_subscribe("notifications.a.#"));
    assert!(
        !p.may_subscribe("notifications.#"),
        "matches `notifications` itself"
    );
    assert!(!p.may_subscribe("*.email"));
    assert!(!p.may_subscribe("#"));
    let q = who(&["topic:notifications.#:subscribe"]);
    assert!(q.may_subscribe("notifications.#"));
    assert!(q.may_subscribe("notifications"));
    assert!(!q.may_subscribe("notificationsx"));
    assert!(!q.may_subscribe("#"));
    assert!(who(&["topic:#:subscribe"]).may_subscribe("#"));
    assert!(!who(&["topic:#:publish"]).may_subscribe("a"));
}

/// A topic `pattern` (subscription syntax) matches `topic`; the core's rule, restated.
fn sub_matches(pattern: &str, topic: &str) -> bool {
    let mut pats = pattern.split('.');
    let mut segs = topic.split('.');
    loop {
        match (pats.next(), segs.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some(p), Some(s)) if Glob::new(p).matches(s) => {}
            _ => return false,
        }
    }
}

/// Reference glob matching, by brute force.
fn glob_ref(p: &[u8], t: &[u8]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((b'*', rest)) => (0..=t.len()).any(|i| glob_ref(rest, &t[i..])),
        Some((c, rest)) => t.first() == Some(c) && glob_ref(rest, &t[1..]),
    }
}

fn name() -> impl Strategy<Value = String> {
    "[ab.]{0,6}"
}

fn pattern() -> impl Strategy<Value = String> {
    "[ab.*]{0,6}"
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof!["[ab]{1,2}", Just("*".to_owned()), "[ab]\\*"]
}

fn sub_pattern() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 1..4), any::<bool>()).prop_map(|(segs, hash)| {
        let mut p = segs.join(".");
        if hash {
            p.push_str(".#");
        }
        p
    })
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec("[ab]{1,3}", 1..6).prop_map(|s| s.join("."))
}

proptest! {
    #[test]
    fn globs_match_as_the_reference(p in pattern(), t in name()) {
        prop_assert_eq!(Glob::new(&p).matches(&t), glob_ref(p.as_bytes(), t.as_bytes()));
    }

    /// Soundness of "wider": an allowed subscription never delivers a topic no grant
    /// allows.
    #[test]
    fn an_allowed_subscription_matches_only_granted_topics(
        grants in prop::collection::vec(pattern().prop_filter("non-empty", |p| !p.is_empty()), 1..3),
        hash in any::<bool>(),
        sub in sub_pattern(),
        topics in prop::collection::vec(topic(), 1..24),
    ) {
        let mut perms: Vec<String> =
            grants.iter().map(|g| format!("topic:{g}:subscribe")).collect();
        if hash {
            perms.push("topic:a.#:subscribe".into());
        }
        let p = Principal::new("k", Some(&perms)).unwrap();
        if p.may_subscribe(&sub) {
            for t in topics.iter().filter(|t| sub_matches(&sub, t)) {
                prop_assert!(p.may(Kind::Topic, Action::Subscribe, t), "{} via {}", t, sub);
            }
        }
    }

    /// A concrete topic as a subscription pattern is allowed exactly when it is granted.
    #[test]
    fn a_plain_topic_subscription_is_allowed_when_granted(
        g in pattern().prop_filter("non-empty", |p| !p.is_empty()),
        t in topic(),
    ) {
        let p = Principal::new("k", Some(&[format!("topic:{g}:subscribe")])).unwrap();
        prop_assert_eq!(p.may_subscribe(&t), p.may(Kind::Topic, Action::Subscribe, &t));
    }
}

/// `cargo test -p synap-server permission_check_cost -- --ignored --nocapture`: the cost
/// of one check on the publish path.
#[test]
#[ignore = "a measurement, not a test"]
fn permission_check_cost() {
    let scoped = who(&[
        "queue:uploads-*:publish",
        "kv:video:*:read",
        "queue:bench:publish",
        "queue:bench:consume",
    ]);
    let full = Principal::full("admin");
    let cmd = Command::Publish {
        queue: "bench".into(),
        message: Default::default(),
    };
    for (label, p) in [("scoped", &scoped), ("full", &full)] {
        let n = 5_000_000u32;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(p.check(std::hint::black_box(&cmd))).unwrap();
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{label}: {ns:.1} ns per check");
    }
}
