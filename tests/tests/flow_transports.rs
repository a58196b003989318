//! Goal: flow control (DESIGN.md §12) on every transport besides REST, against the real
//! `synap-server`: the push consumers (the queue WebSocket and SynapRPC's `QSTREAM`) never
//! hold more than `max_in_flight` or a group's `group_concurrency`, deliver nothing while the
//! queue is paused or rate limited, and are pushed the moment room appears (an ack, a resume,
//! a window's end); snooze works on the WebSocket, SynapRPC and the envelope; the envelope and
//! SynapRPC take groups, the flow settings, pause, resume, rate limits and the groups listing,
//! refusing bad values with REST's codes; `/metrics` shows the flow series.
//! Method: a fresh in-memory server per test, raw JSON over HTTP and the WebSocket, raw frames
//! over SynapRPC. "Nothing more was pushed" is read from the queue's stats after the pushes
//! that were due (a lease is taken in the same engine turn as its push), never from elapsed
//! time; a rate window's hold is checked on the lease deadlines the engine gave (same lease
//! length, so their gap is the gap between the deliveries).

mod flow_common;
mod rpc_common;
mod server_common;

use flow_common::*;

use rpc_common::{V, s};
use serde_json::{Value, json};
use server_common::Api;

#[tokio::test]
async fn a_paused_queue_pushes_nothing_until_it_is_resumed() {
    let api = Api::start();
    // The queue WebSocket, paused and resumed through the envelope.
    api.ok("/queue/p", json!({})).await;
    let v = api.cmd("queue.pause", json!({"queue": "p"})).await;
    assert_eq!(v["payload"], json!({"success": true, "paused": true}));
    let mut ws = WsConn::open(&api, "/queue/p/ws?prefetch=10").await;
    for n in 1..=2 {
        publish(&api, "p", n).await;
    }
    let st = api.stats("p").await;
    assert_eq!(
        (&st["paused"], &st["in_flight"], &st["held_back"]),
        (&json!(true), &json!(0), &json!(2)),
        "{st}"
    );
    let resumed = api.cmd("queue.resume", json!({"queue": "p"})).await;
    assert_eq!(
        resumed["payload"],
        json!({"success": true, "paused": false})
    );
    assert_eq!(ns(&ws.messages(2).await), vec![1, 2]);

    // A SynapRPC stream, paused and resumed with QPAUSE / QRESUME.
    let mut c = rpc(&api).await;
    c.ok("QCREATE", &[s("r")]).await;
    assert_eq!(c.ok("QPAUSE", &[s("r")]).await, paused(true));
    c.ok("QSTREAM", &[s("r"), s("w"), V::Int(10)]).await;
    let a = rpc_publish(&mut c, "r", "a", None).await;
    let b = rpc_publish(&mut c, "r", "b", None).await;
    let st = c.ok("QSTATS", &[s("r")]).await;
    assert_eq!(st.get("paused"), Some(&V::Bool(true)));
    assert_eq!(
        (st.get("in_flight"), st.get("held_back")),
        (Some(&V::Int(0)), Some(&V::Int(2)))
    );
    assert_eq!(c.ok("QRESUME", &[s("r")]).await, paused(false));
    let (first, second) = (push(&mut c).await, push(&mut c).await);
    assert_eq!((first.get("id"), second.get("id")), (Some(&a), Some(&b)));
}

#[tokio::test]
async fn max_in_flight_holds_a_large_credit_at_the_cap_until_acks() {
    let api = Api::start();
    let cfg = json!({"queue": "m", "config": {"max_in_flight": 2}});
    let v = api.cmd("queue.configure", cfg).await;
    assert_eq!(
        v["payload"],
        json!({"success": true, "queue": "m", "created": true})
    );
    let mut ws = WsConn::open(&api, "/queue/m/ws?prefetch=100").await;
    for n in 1..=5 {
        publish(&api, "m", n).await;
    }
    let mut held = ws.messages(2).await;
    assert_eq!(ns(&held), vec![1, 2]);
    let st = api.stats("m").await;
    assert_eq!((&st["in_flight"], &st["held_back"]), (&json!(2), &json!(3)));
    // Each ack makes room for exactly one more push.
    for next in 3..=5 {
        let done = held.remove(0);
        ws.ack(&done).await;
        let pushed = ws.messages(1).await;
        assert_eq!(ns(&pushed), vec![next]);
        held.extend(pushed);
        let st = api.stats("m").await;
        assert_eq!(st["in_flight"], 2, "never above max_in_flight: {st}");
    }

    // The same over a SynapRPC stream, configured with QCONFIGURE.
    let mut c = rpc(&api).await;
    let settings = map([("max_in_flight", V::Int(2))]);
    let created = c.ok("QCONFIGURE", &[s("n"), settings]).await;
    assert_eq!(created.get("created"), Some(&V::Bool(true)));
    c.ok("QSTREAM", &[s("n"), s("w"), V::Int(100)]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(rpc_publish(&mut c, "n", &format!("m{i}"), None).await);
    }
    let mut held = vec![push(&mut c).await, push(&mut c).await];
    assert_eq!(stat(&mut c, "n", "in_flight").await, 2);
    assert_eq!(stat(&mut c, "n", "held_back").await, 3);
    for id in &ids[2..] {
        let done = held.remove(0);
        c.ok("QACK", &[s("n"), done.get("id").unwrap().clone()])
            .await;
        let pushed = push(&mut c).await;
        assert_eq!(pushed.get("id"), Some(id));
        held.push(pushed);
        assert_eq!(stat(&mut c, "n", "in_flight").await, 2);
    }
}

#[tokio::test]
async fn an_ordered_group_is_pushed_in_order_one_at_a_time() {
    let api = Api::start();
    // Created through the envelope with the flow settings in its config.
    let create = json!({"name": "o", "config": {"ordered_groups": true, "group_concurrency": 1}});
    assert_eq!(api.cmd("queue.create", create).await["success"], true);
    let mut ws = WsConn::open(&api, "/queue/o/ws?prefetch=100").await;
    // Published over the same socket, with groups: A gets 1, 3, 4 and B gets 2, 5.
    for (n, g) in [(1, "A"), (2, "B"), (3, "A"), (4, "A"), (5, "B")] {
        let op = json!({"op": "publish", "message": {"n": n}, "group": g});
        assert_eq!(ws.call(op).await["type"], "published");
    }
    let first = ws.messages(2).await;
    assert_eq!(ns(&first), vec![1, 2], "one per group");
    assert_eq!(
        (&first[0]["group"], &first[1]["group"]),
        (&json!("A"), &json!("B"))
    );
    let st = api.stats("o").await;
    assert_eq!((&st["groups"], &st["held_back"]), (&json!(2), &json!(3)));
    // Each ack frees its group for that group's next message, in publish order.
    let mut held = first;
    for expect in [3, 5, 4] {
        let done = held.remove(0);
        ws.ack(&done).await;
        let pushed = ws.messages(1).await;
        assert_eq!(ns(&pushed), vec![expect]);
        held.extend(pushed);
    }

    // Over SynapRPC: a nacked head keeps its group's place.
    let mut c = rpc(&api).await;
    let settings = map([
        ("ordered_groups", V::Bool(true)),
        ("group_concurrency", V::Int(1)),
    ]);
    c.ok("QCREATE", &[s("q"), s("0"), s("30"), settings]).await;
    for (text, g) in [("a1", "A"), ("b1", "B"), ("a2", "A")] {
        rpc_publish(&mut c, "q", text, Some(g)).await;
    }
    c.ok("QSTREAM", &[s("q"), s("w"), V::Int(100)]).await;
    let (a1, b1) = (push(&mut c).await, push(&mut c).await);
    assert_eq!((body(&a1), body(&b1)), ("a1".into(), "b1".into()));
    assert_eq!(a1.get("group"), Some(&s("A")));
    assert_eq!(stat(&mut c, "q", "in_flight").await, 2);
    c.ok(
        "QNACK",
        &[s("q"), a1.get("id").unwrap().clone(), V::Bool(true)],
    )
    .await;
    let again = push(&mut c).await;
    assert_eq!(
        (body(&again), again.get("retry_count")),
        ("a1".into(), Some(&V::Int(1))),
        "the retried head goes before a2"
    );
    c.ok("QACK", &[s("q"), again.get("id").unwrap().clone()])
        .await;
    assert_eq!(body(&push(&mut c).await), "a2");
    let groups = c.ok("QGROUPS", &[s("q")]).await;
    let V::Array(groups) = groups else {
        panic!("QGROUPS answers an array: {groups:?}")
    };
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].get("in_flight"), Some(&V::Int(1)));
}

#[tokio::test]
async fn a_rate_window_holds_pushes_until_it_ends() {
    let api = Api::start();
    let cfg = json!({"queue": "w", "config": {"rate_limit": {"max": 2, "per_secs": 2}}});
    assert_eq!(api.cmd("queue.configure", cfg).await["success"], true);
    let mut ws = WsConn::open(&api, "/queue/w/ws?prefetch=100&ack_deadline=60").await;
    for n in 1..=3 {
        publish(&api, "w", n).await;
    }
    let two = ws.messages(2).await;
    let st = api.stats("w").await;
    // The window may have closed already on a slow machine; while it holds, stats say so.
    if st["held_back"] == 1 {
        assert!(st["rate_limited_until_ms"].is_u64(), "{st}");
    }
    let third = ws.messages(1).await.remove(0);
    assert_eq!(third["message"]["n"], 3);
    let gap =
        third["lease_deadline"].as_u64().unwrap() - two[0]["lease_deadline"].as_u64().unwrap();
    assert!(
        gap >= 2000,
        "the third went {gap} ms after the first, within its window"
    );

    // SynapRPC: a window of one per second, then a worker's rate limit (QRATELIMIT).
    let mut c = rpc(&api).await;
    let rate = map([("max", V::Int(1)), ("per_secs", V::Float(1.0))]);
    c.ok("QCONFIGURE", &[s("r"), map([("rate_limit", rate)])])
        .await;
    c.ok("QSTREAM", &[s("r"), s("w"), V::Int(10), V::Int(60)])
        .await;
    rpc_publish(&mut c, "r", "x", None).await;
    rpc_publish(&mut c, "r", "y", None).await;
    let (x, y) = (push(&mut c).await, push(&mut c).await);
    let secs = |v: &V| v.get("deadline").unwrap().int();
    assert!(secs(&y) - secs(&x) >= 1, "y went within x's window");

    c.ok("QCREATE", &[s("l")]).await;
    let limited = c.ok("QRATELIMIT", &[s("l"), V::Float(1.0)]).await;
    let until = limited.get("rate_limited_until_ms").unwrap().int();
    c.ok("QSTREAM", &[s("l"), s("w"), V::Int(10), V::Int(60)])
        .await;
    rpc_publish(&mut c, "l", "z", None).await;
    let z = push(&mut c).await;
    // Delivered at `until` or later: its deadline (whole seconds) is that plus 60 s.
    assert!(
        secs(&z) * 1000 > until + 59_000,
        "pushed before the rate limit ended"
    );
}

#[tokio::test]
async fn a_snooze_spends_no_attempt_on_every_transport() {
    let api = Api::start();
    // The queue WebSocket's nack frame.
    let cfg = json!({"queue": "s", "config": {"max_retries": 0, "max_snoozes": 1}});
    assert_eq!(api.cmd("queue.configure", cfg).await["success"], true);
    let mut ws = WsConn::open(&api, "/queue/s/ws?prefetch=10").await;
    publish(&api, "s", 1).await;
    let snooze = |d: &Value| {
        json!({"op": "nack", "message_id": d["message_id"], "lease": d["lease"],
               "snooze": true, "delay": 0.05})
    };
    let d = ws.messages(1).await.remove(0);
    assert_eq!(ws.call(snooze(&d)).await["action"], "snoozed");
    let d = ws.messages(1).await.remove(0);
    assert_eq!(d["retry_count"], 0, "the snooze spent no attempt");
    assert_eq!(ws.call(snooze(&d)).await["action"], "dead_lettered");
    let dlq = api.ok_get("/queue/s/dlq").await;
    assert_eq!(dlq["messages"][0]["reason"], "snoozed_out");

    // SynapRPC: QNACK queue id requeue delay snooze.
    let mut c = rpc(&api).await;
    c.ok("QCREATE", &[s("r")]).await;
    rpc_publish(&mut c, "r", "x", None).await;
    c.ok("QSTREAM", &[s("r"), s("w"), V::Int(10)]).await;
    let x = push(&mut c).await;
    let id = x.get("id").unwrap().clone();
    let nack = [
        s("r"),
        id.clone(),
        V::Bool(true),
        V::Float(0.05),
        V::Bool(true),
    ];
    assert_eq!(c.ok("QNACK", &nack).await, s("OK"));
    let again = push(&mut c).await;
    assert_eq!(
        (again.get("id"), again.get("retry_count")),
        (Some(&id), Some(&V::Int(0)))
    );
    let no_requeue = [s("r"), id.clone(), V::Bool(false), V::Null, V::Bool(true)];
    let e = c.err("QNACK", &no_requeue).await;
    assert!(e.starts_with("Invalid value:"), "{e}");
    let bad = [s("r"), id, V::Bool(true), V::Null, s("maybe")];
    assert_eq!(
        c.err("QNACK", &bad).await,
        "ERR argument 4 must be a boolean"
    );

    // The envelope's queue.nack.
    let pub_body = json!({"queue": "e", "payload": [49]});
    api.cmd("queue.create", json!({"name": "e"})).await;
    assert_eq!(api.cmd("queue.publish", pub_body).await["success"], true);
    let consume = json!({"queue": "e", "consumer_id": "c", "timeout": 10});
    let got = api.cmd("queue.consume", consume.clone()).await;
    let m = &got["payload"]["message"];
    let nack = json!({"queue": "e", "message_id": m["id"], "lease": m["lease"],
                      "snooze": true, "delay": 0.05});
    let v = api.cmd("queue.nack", nack).await;
    assert_eq!(v["payload"]["action"], "snoozed", "{v}");
    let got = api.cmd("queue.consume", consume).await;
    assert_eq!(got["payload"]["message"]["retry_count"], 0, "{got}");
    let bad = json!({"queue": "e", "message_id": m["id"], "snooze": "yes"});
    let v = api.cmd("queue.nack", bad).await;
    assert_eq!(
        (&v["success"], &v["code"]),
        (&json!(false), &json!("invalid_argument"))
    );
}

/// The flow series of `queue` in the server's metrics, as written: (paused, held back,
/// groups, rate limited until).
async fn flow_metrics(api: &Api, queue: &str) -> [String; 4] {
    let (_, text) = api.get("/metrics").await;
    let text = text.as_str().expect("text");
    ["paused", "held_back", "groups", "rate_limited_until_ms"].map(|series| {
        let name = format!("synap_queue_{series}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
        let prefix = format!("{name}{{queue=\"{queue}\"}} ");
        let value = text.lines().find_map(|l| l.strip_prefix(&prefix));
        value.unwrap_or_else(|| panic!("no {prefix}")).to_owned()
    })
}

#[tokio::test]
async fn metrics_show_the_flow_series() {
    let api = Api::start();
    let create = json!({"name": "mq", "group_concurrency": 1});
    assert_eq!(api.cmd("queue.create", create).await["success"], true);
    api.ok("/queue/idle", json!({})).await;
    for (n, g) in [(1, "g1"), (2, "g1"), (3, "g1"), (4, "g2")] {
        let p = json!({"queue": "mq", "payload": [48 + n], "group": g});
        assert_eq!(api.cmd("queue.publish", p).await["success"], true);
    }
    let got = api.consume("mq", json!({"max_messages": 10})).await;
    assert_eq!(got.len(), 2, "one per group");
    assert_eq!(flow_metrics(&api, "idle").await, ["0", "0", "0", "0"]);
    assert_eq!(flow_metrics(&api, "mq").await, ["0", "2", "2", "0"]);
    let mut c = rpc(&api).await;
    c.ok("QPAUSE", &[s("mq")]).await;
    let limited = c.ok("QRATELIMIT", &[s("mq"), V::Int(600)]).await;
    let until = limited.get("rate_limited_until_ms").unwrap().int();
    let until = until.to_string();
    assert_eq!(
        flow_metrics(&api, "mq").await,
        ["1", "2", "2", until.as_str()]
    );
}

#[tokio::test]
async fn the_envelope_refuses_bad_flow_values_with_rest_codes() {
    let api = Api::start();
    let create = json!({"name": "x", "config": {"max_in_flight": "two"}});
    assert_eq!(
        refused(&api, "queue.create", create).await,
        "invalid_argument"
    );
    for config in [
        json!({"ordered_groups": true, "group_concurrency": 2}),
        json!({"max_in_flight": 0}),
        json!({"rate_limit": {"max": 1}}),
        json!({"max_in_fligth": 1}),
    ] {
        let body = json!({"queue": "x", "config": config});
        let code = refused(&api, "queue.configure", body).await;
        assert_eq!(code, "invalid_argument", "{config}");
    }
    api.cmd("queue.create", json!({"name": "x"})).await;
    for group in [json!(""), json!(7), json!("x".repeat(256))] {
        let p = json!({"queue": "x", "payload": [1], "group": group});
        assert_eq!(refused(&api, "queue.publish", p).await, "invalid_argument");
    }
    let v = api.cmd("queue.pause", json!({"queue": "absent"})).await;
    assert_eq!(
        (&v["code"], &v["error"]),
        (&json!("queue_not_found"), &json!("Queue not found: absent"))
    );
    for body in [
        json!({"queue": "x", "for_secs": 0}),
        json!({"queue": "x"}),
        json!({"queue": "x", "for_secs": "soon"}),
    ] {
        assert_eq!(
            refused(&api, "queue.rate_limit", body).await,
            "invalid_argument"
        );
    }
    let limit = json!({"queue": "x", "limit": 0});
    assert_eq!(
        refused(&api, "queue.groups", limit).await,
        "invalid_argument"
    );
    assert_eq!(refused(&api, "queue.frobnicate", json!({})).await, "none");

    // What works: a rate limit, the groups listing, stats and deliveries carrying the group.
    let v = api
        .cmd("queue.rate_limit", json!({"queue": "x", "for_secs": 0.2}))
        .await;
    assert!(v["payload"]["rate_limited_until_ms"].is_u64(), "{v}");
    let p = json!({"queue": "x", "payload": [1], "group": "tenant"});
    api.cmd("queue.publish", p).await;
    let v = api.cmd("queue.groups", json!({"queue": "x"})).await;
    assert_eq!(
        v["payload"],
        json!({"groups": [{"group": "tenant", "ready": 1, "in_flight": 0, "delayed": 0}]})
    );
    let consume = json!({"queue": "x", "consumer_id": "c", "timeout": 10});
    let got = api.cmd("queue.consume", consume).await;
    assert_eq!(got["payload"]["message"]["group"], "tenant", "{got}");
    let st = api.cmd("queue.stats", json!({"queue": "x"})).await;
    assert_eq!(
        (&st["payload"]["groups"], &st["payload"]["paused"]),
        (&json!(1), &json!(false))
    );
}

#[tokio::test]
async fn synaprpc_refuses_bad_flow_values() {
    let api = Api::start();
    let mut c = rpc(&api).await;
    let settings = map([("max_in_flight", V::Int(1))]);
    c.ok("QCREATE", &[s("q"), V::Null, V::Null, settings]).await;
    let st = api.stats("q").await;
    assert_eq!(st["config"]["max_in_flight"], 1, "{st}");
    let ordered = [
        ("ordered_groups", V::Bool(true)),
        ("group_concurrency", V::Int(2)),
    ];
    let errors = [
        (
            map([("max_in_fligth", V::Int(1))]),
            "Invalid value: settings: unknown field",
        ),
        (
            map([("max_in_flight", s("two"))]),
            "Invalid value: settings:",
        ),
        (map(ordered), "Invalid value: ordered_groups:"),
        (s("fast"), "ERR argument 1 must be a map"),
    ];
    for (settings, starts) in errors {
        let e = c.err("QCONFIGURE", &[s("q"), settings.clone()]).await;
        assert!(e.starts_with(starts), "{settings:?}: {e}");
    }
    let payload = V::Bytes(b"m".to_vec());
    let grouped = |g: V| vec![s("q"), payload.clone(), V::Null, V::Null, V::Null, g];
    let e = c.err("QPUBLISH", &grouped(s(""))).await;
    assert!(e.starts_with("Invalid value: group:"), "{e}");
    let e = c.err("QPUBLISH", &grouped(V::Int(7))).await;
    assert_eq!(e, "ERR argument 5 must be a string");
    assert_eq!(
        c.err("QPAUSE", &[s("absent")]).await,
        "Queue not found: absent"
    );
    let e = c.err("QRATELIMIT", &[s("q"), V::Int(0)]).await;
    assert!(e.starts_with("Invalid value: for_secs:"), "{e}");
    let e = c.err("QRATELIMIT", &[s("q"), s("soon")]).await;
    assert_eq!(e, "ERR argument 1 must be a number of seconds");
    let e = c.err("QGROUPS", &[s("q"), V::Int(0)]).await;
    assert!(e.starts_with("Invalid value: limit:"), "{e}");
    // A grouped publish works, and QSTATS carries the flow fields.
    rpc_publish(&mut c, "q", "m", Some("tenant")).await;
    let st = c.ok("QSTATS", &[s("q")]).await;
    assert_eq!(st.get("groups"), Some(&V::Int(1)));
    assert_eq!(st.get("paused"), Some(&V::Bool(false)));
    assert_eq!(st.get("rate_limited_until_ms"), Some(&V::Null));
    assert_eq!(st.get("held_back"), Some(&V::Int(0)));
}

#[tokio::test]
async fn the_flow_commands_need_their_permissions() {
    let yaml = "server:\n  api_keys:\n    - admin-key\n    \
                - { name: con, key: con-key, permissions: [\"queue:q*:consume\"] }\n    \
                - { name: read, key: read-key, permissions: [\"queue:q*:read\"] }\n";
    let srv = server_common::Server::start_with(server_common::Options {
        config_yaml: Some(yaml),
        ..server_common::Options::default()
    });
    let mut api = Api::with(srv);
    api.key = Some("admin-key".into());
    api.ok("/queue/q", json!({})).await;
    // A worker may rate limit the queue it consumes, not pause, configure or list it.
    api.key = Some("con-key".into());
    let pause = json!({"queue": "q"});
    assert_eq!(refused(&api, "queue.pause", pause).await, "forbidden");
    let config = json!({"queue": "q", "config": {"max_in_flight": 1}});
    assert_eq!(refused(&api, "queue.configure", config).await, "forbidden");
    let v = api
        .cmd("queue.rate_limit", json!({"queue": "q", "for_secs": 0.1}))
        .await;
    assert_eq!(v["success"], true, "{v}");
    api.key = Some("read-key".into());
    assert_eq!(
        api.cmd("queue.groups", json!({"queue": "q"})).await["success"],
        true
    );

    let mut c = rpc(&api).await;
    c.ok("AUTH", &[s("con-key")]).await;
    for (cmd, args) in [
        ("QPAUSE", vec![s("q")]),
        ("QRESUME", vec![s("q")]),
        ("QGROUPS", vec![s("q")]),
        ("QCONFIGURE", vec![s("q"), map([])]),
    ] {
        let e = c.err(cmd, &args).await;
        assert!(e.starts_with("NOPERM forbidden:"), "{cmd}: {e}");
    }
    c.ok("QRATELIMIT", &[s("q"), V::Float(0.1)]).await;
}
