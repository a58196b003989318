//! The cluster swarm over many seeds: 3 nodes on even seeds, 5 on odd ones, each a seeded run
//! of `synap_cluster::Node`s in one thread with network faults, partitions, crashes and
//! restarts, clock skew, snapshots, and clients resending keyed publishes; an oracle checks
//! one leader per term, committed entries never changing, replicas equal at equal applied
//! index, every acknowledged publish ending acked or dead-lettered exactly once, nothing
//! delivered after an acknowledged ack, nothing leased twice at once. Each seed runs twice and
//! the traces must hash equal.
//!
//! Quick by default (`DEFAULT_RUNS` seeds); `CLUSTER_RUNS=500` widens it, `CLUSTER_BASE` moves
//! it, `CLUSTER_SEED=n` replays one seed.

use std::time::Instant;

use synap_tests::cluster_swarm::{check_seed, seeds_from_env, summarize};

/// Seeds of the quick default run.
const DEFAULT_RUNS: u64 = 32;

#[test]
fn cluster_swarm() {
    let seeds = seeds_from_env(DEFAULT_RUNS);
    let started = Instant::now();
    let reports: Vec<_> = seeds.iter().map(|&seed| check_seed(seed)).collect();
    let total = summarize(&reports);
    let sim_s: u64 = reports.iter().map(|r| r.sim_ms).sum::<u64>() / 1_000;
    println!(
        "cluster swarm: {} seeds (x2), {sim_s} simulated s, {:?} wall; {total:?}",
        seeds.len(),
        started.elapsed()
    );
    assert!(total["published"] > 0, "the swarm published nothing");
    assert_eq!(total["published"], total["acked"] + total["dead_lettered"]);
    if seeds.len() >= 8 {
        for figure in [
            "crashes",
            "partitions",
            "dropped",
            "leader_terms",
            "snapshots_sent",
        ] {
            assert!(total[figure] > 0, "the swarm never exercised {figure}");
        }
    }
}
