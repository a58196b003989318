use super::*;

#[test]
fn the_sample_queue_form_parses() {
    let text = "queue:\n  video-processing:\n    max_retries: 3\n    ack_deadline_secs: 300\n    retry_delays: [10, 60, 300]\n";
    let file: FileConfig = serde_norway::from_str(text).unwrap();
    let s = &file.queues["video-processing"];
    let c = s.apply(&QueueConfig::default()).unwrap();
    assert_eq!(c.ack_deadline_ms, 300_000);
    assert_eq!(c.retry_delays_ms, vec![10_000, 60_000, 300_000]);
}

#[test]
fn rpc_bind_takes_an_address_or_off() {
    assert_eq!("off".parse::<RpcBind>(), Ok(RpcBind::Off));
    assert_eq!(
        "127.0.0.1:9".parse::<RpcBind>(),
        Ok(RpcBind::At("127.0.0.1:9".parse().unwrap()))
    );
    assert!("nowhere".parse::<RpcBind>().is_err());
    let file: FileConfig = serde_norway::from_str("server:\n  rpc_bind: off\n").unwrap();
    assert_eq!(file.server.rpc_bind, Some(RpcBind::Off));
}

#[test]
fn users_need_valid_hashes_and_names() {
    let user = |name: &str, hash: &str| UserSection {
        name: name.into(),
        password_hash: hash.into(),
        permissions: None,
    };
    let good = crate::http::passwords::hash("pw").unwrap();
    assert!(load_users(vec![user("alice", &good)]).is_ok());
    assert!(load_users(vec![user("alice", "plain-text")]).is_err());
    assert!(load_users(vec![user("a:b", &good)]).is_err());
    assert!(load_users(vec![user("alice", &good), user("alice", &good)]).is_err());
}

#[test]
fn threads_come_from_the_flag_or_the_file_within_bounds() {
    use clap::Parser;
    let load = |args: &[&str]| {
        let cli = Cli::try_parse_from(std::iter::once("synap-server").chain(args.iter().copied()))
            .unwrap();
        ServerConfig::load(&cli, None).map(|c| c.threads)
    };
    assert_eq!(load(&[]), Ok(None), "one per core by default");
    assert_eq!(load(&["--threads", "1"]), Ok(Some(1)));
    let e = load(&["--threads", "0"]).unwrap_err();
    assert!(e.contains("between 1 and"), "{e}");
    let file: FileConfig = serde_norway::from_str("server:\n  threads: 3\n").unwrap();
    assert_eq!(file.server.threads, Some(3));
}

#[test]
fn key_entries_parse_and_bad_ones_name_themselves() {
    let hash = crate::http::passwords::hash("k2").unwrap();
    let text = format!(
        "server:\n  api_keys:\n    - plain-key\n    - {{ name: uploads, key_hash: \"{hash}\", permissions: [\"queue:video-*:publish\", \"kv:video:*:read\"] }}\n    - {{ name: workers, key: k3, permissions: [\"queue:video-*:consume\", \"topic:notifications.#:publish\"] }}\n  users:\n    - {{ name: ops, password_hash: \"{hash}\", permissions: [\"queue:*:*\"] }}\n"
    );
    let file: FileConfig = serde_norway::from_str(&text).unwrap();
    let keys = load_keys(file.server.api_keys, Some("env-key")).unwrap();
    assert_eq!(keys.len(), 4);
    assert!(keys[0].principal.full_access() && keys[1].principal.full_access());
    assert_eq!(keys[2].principal.name, "uploads");
    assert!(matches!(keys[2].secret, crate::http::Secret::Hash(_)));
    assert!(!keys[3].principal.full_access());
    let users = load_users(file.server.users).unwrap();
    assert_eq!(users[0].principal.permission_texts(), vec!["queue:*:*"]);

    let bad = |entry: &str| {
        let text = format!("server:\n  api_keys:\n    - {entry}\n");
        let file: FileConfig = serde_norway::from_str(&text).unwrap();
        load_keys(file.server.api_keys, None).unwrap_err()
    };
    let e = bad("{ name: w, key: k, permissions: [\"queue:x:write\"] }");
    assert!(e.contains("\"w\"") && e.contains("queue:x:write"), "{e}");
    let e = bad("{ name: w, key: k, key_hash: h }");
    assert!(e.contains("exactly one"), "{e}");
    let e = bad("{ name: w, key_hash: plain }");
    assert!(e.contains("key_hash"), "{e}");
    let e = bad("{ name: w, key: k, permissions: [\"topic:a.#.b:subscribe\"] }");
    assert!(e.contains("a.#.b"), "{e}");
}

#[test]
fn unknown_fields_are_rejected() {
    assert!(serde_norway::from_str::<FileConfig>("server:\n  bnd: x\n").is_err());
}

#[test]
fn flow_limits_are_read_within_their_ceilings() {
    let limits = |text: &str| {
        let file: FileConfig = serde_norway::from_str(text).unwrap();
        let mut engine = EngineConfig::default();
        apply_limits(&mut engine, &file.limits).map(|()| engine.limits)
    };
    let l = limits("limits:\n  max_flows: 50\n  max_flow_jobs: 20\n  max_flow_depth: 3\n").unwrap();
    assert_eq!(
        (l.max_flows, l.max_flow_jobs, l.max_flow_depth),
        (50, 20, 3)
    );
    let d = limits("limits: {}\n").unwrap();
    assert_eq!(
        (d.max_flows, d.max_flow_jobs, d.max_flow_depth),
        (10_000, 1_000, 8)
    );
    for bad in [
        "limits:\n  max_flows: 0\n",
        "limits:\n  max_flow_jobs: 100001\n",
        "limits:\n  max_flow_depth: 33\n",
        "limits:\n  max_flow_depth: 0\n",
    ] {
        let e = limits(bad).unwrap_err();
        assert!(e.contains("limits.max_flow"), "{bad}: {e}");
    }
}
