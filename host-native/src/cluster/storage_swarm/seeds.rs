//! Running seeds: one seed's run to the end (twice, comparing traces), the replay hint, and the
//! test that runs the default or chosen seeds and checks every fault happened.

use std::time::Instant;

use super::{FAULTY_MS, Report, SETTLE_MS, Tally, World};

fn run(seed: u64) -> Report {
    let mut w = World::new(seed);
    while w.now < FAULTY_MS {
        w.step();
    }
    w.calm = true;
    for p in &mut w.peers {
        if p.node.is_none() {
            p.restart_at = Some(w.now);
        }
    }
    let calm_from = w.now;
    while !w.settled() {
        assert!(
            w.now < calm_from + SETTLE_MS,
            "liveness: not settled {SETTLE_MS} ms after the faults ended (keys answered: {}, \
             acked: {})",
            w.client.keys.iter().filter(|k| k.0.is_some()).count(),
            w.oracle.acked()
        );
        w.step();
    }
    w.finish();
    Report {
        trace: w.oracle.trace(),
        sim_ms: w.now,
        tally: w.tally,
    }
}

fn replay_hint(seed: u64) {
    eprintln!("raft storage swarm seed {seed} failed; replay it with:");
    eprintln!(
        "  SYNAP_RAFT_SWARM_SEED={seed} cargo test -p synap-server cluster::storage_swarm -- --nocapture"
    );
}

fn check_seed(seed: u64) -> Report {
    let first = std::panic::catch_unwind(|| run(seed)).unwrap_or_else(|panic| {
        replay_hint(seed);
        std::panic::resume_unwind(panic)
    });
    let second = run(seed);
    if first != second {
        replay_hint(seed);
        panic!("seed {seed}: two runs differ:\n{first:?}\n{second:?}");
    }
    first
}

#[test]
fn nodes_crash_and_restart_through_the_real_raft_storage() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match var("SYNAP_RAFT_SWARM_SEED") {
        Some(s) => vec![s],
        None => (0..var("SYNAP_RAFT_SWARM_SEEDS").unwrap_or(16)).collect(),
    };
    let started = Instant::now();
    let mut sum = Tally::default();
    for &seed in &seeds {
        let t = check_seed(seed).tally;
        sum.crashes += t.crashes;
        sum.torn_writes += t.torn_writes;
        sum.failed_syncs += t.failed_syncs;
        sum.interrupted_groups += t.interrupted_groups;
        sum.interrupted_snapshots += t.interrupted_snapshots;
        sum.short_write_groups += t.short_write_groups;
        sum.clean_restarts_checked += t.clean_restarts_checked;
        sum.snapshots_installed += t.snapshots_installed;
        sum.compactions += t.compactions;
        sum.lost_proposals += t.lost_proposals;
        sum.dropped += t.dropped;
    }
    println!(
        "raft storage swarm: {} seeds (each twice) in {:.1} s: {sum:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    if seeds.len() >= 8 {
        assert!(
            sum.crashes > 0
                && sum.torn_writes > 0
                && sum.failed_syncs > 0
                && sum.interrupted_snapshots > 0
                && sum.short_write_groups > 0
                && sum.clean_restarts_checked > 0
                && sum.snapshots_installed > 0
                && sum.compactions > 0,
            "a fault never happened: {sum:?}"
        );
    }
}
