//! Goal: the wire types read and write exactly the documented JSON, and refuse a body with a
//! field missing or renamed instead of reading it as a default.

use serde_json::json;

use crate::{
    Backoff, KvGet, KvTtl, PublishRequest, Published, PubsubMessage, QueueConfig, QueueStats,
};

#[test]
fn a_present_nullable_field_must_be_present() {
    let p: Published = serde_json::from_value(json!({"message_id": "m", "position": null}))
        .expect("null position");
    assert_eq!(p.position, None);
    assert_eq!(serde_json::to_value(&p).unwrap()["position"], json!(null));
    assert!(serde_json::from_value::<Published>(json!({"message_id": "m"})).is_err());
    assert!(serde_json::from_value::<KvTtl>(json!({})).is_err());
}

#[test]
fn kv_get_tells_missing_from_found_without_expiry() {
    let missing = serde_json::to_value(KvGet::Missing).unwrap();
    assert_eq!(missing, json!({"found": false}));
    let found = KvGet::Found {
        value: json!([1]),
        ttl: None,
    };
    let v = serde_json::to_value(&found).unwrap();
    assert_eq!(v, json!({"found": true, "value": [1], "ttl": null}));
    assert_eq!(serde_json::from_value::<KvGet>(v).unwrap(), found);
    assert!(serde_json::from_value::<KvGet>(json!({"found": true, "value": 1})).is_err());
}

#[test]
fn requests_leave_out_what_is_not_set_and_refuse_unknown_fields() {
    let p = PublishRequest {
        message: Some(json!({"a": 1})),
        delay: Some(0.25),
        ..PublishRequest::default()
    };
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!({"message": {"a": 1}, "delay": 0.25})
    );
    assert!(serde_json::from_value::<PublishRequest>(json!({"mesage": 1})).is_err());
    let c: QueueConfig =
        serde_json::from_value(json!({"default_max_retries": 2, "ack_deadline": 1.5})).unwrap();
    assert_eq!((c.max_retries, c.ack_deadline_secs), (Some(2), Some(1.5)));
    assert!(QueueConfig::default().is_empty() && !c.is_empty());
    let b = Backoff {
        initial: 1.0,
        multiplier: None,
        max: 30.0,
        jitter: None,
    };
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        json!({"initial": 1.0, "max": 30.0})
    );
}

#[test]
fn a_stats_answer_with_a_field_missing_is_refused() {
    let mut v = json!({
        "queue": "q", "depth": 1, "ready": 1, "delayed": 0, "in_flight": 0,
        "dead_letter_count": 0, "consumers": 0, "waiters": 0, "published_total": 1,
        "consumed_total": 0, "acked_total": 0, "nacked_total": 0, "lease_expired_total": 0,
        "dead_lettered_total": 0, "expired_total": 0, "dlq_dropped_total": 0,
        "avg_wait_time_ms": 0.0, "oldest_ready_age_ms": 5, "config": {"max_retries": 3}
    });
    let s: QueueStats = serde_json::from_value(v.clone()).unwrap();
    assert_eq!((s.depth, s.config.max_retries), (1, Some(3)));
    v.as_object_mut().unwrap().remove("waiters");
    assert!(serde_json::from_value::<QueueStats>(v).is_err());
}

#[test]
fn a_pubsub_frame_carries_its_type_tag() {
    let m = PubsubMessage {
        topic: "a.b".into(),
        message: json!(1),
        payload: json!(1),
        message_id: "m".into(),
        published_at: 1500,
        timestamp: 1,
        headers: crate::Headers::new(),
        metadata: None,
    };
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(
        (v["type"].clone(), v["metadata"].clone()),
        (json!("message"), json!(null))
    );
    assert_eq!(serde_json::from_value::<PubsubMessage>(v).unwrap(), m);
}
