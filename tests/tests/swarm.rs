//! The simulation swarm over many seeds (default 500; `SIM_RUNS`, `SIM_BASE` and `SIM_SEED`
//! widen, move or pin it). Each seed picks a queue config and fault rates, runs the real engine
//! under a fake clock with an oracle checking every step, then a fault-free phase that must end
//! with every message acked or dead-lettered; each seed runs twice and the traces must hash
//! equal.

use synap_tests::swarm::{check_seed, seeds_from_env, summarize};

#[test]
fn swarm() {
    let seeds = seeds_from_env(500);
    let outcomes: Vec<_> = seeds.iter().map(|&seed| check_seed(seed)).collect();
    let total = summarize(&outcomes);
    println!("swarm: {} seeds, {total:?}", seeds.len());
    assert!(total["published"] > 0, "the swarm published nothing");
    assert_eq!(total["published"], total["acked"] + total["dead_lettered"]);
}
