//! The simulation swarm over many seeds (default 500; `SIM_RUNS`, `SIM_BASE` and `SIM_SEED`
//! widen, move or pin it; `SIM_TRACE` prints a seed's commands and events). Each seed picks one
//! to four queues with their own configs, long-poll and streaming consumers (sessions),
//! pub/sub subscribers and fault rates, runs the real engine under a fake clock with an oracle
//! checking every reply and event, then a fault-free phase that must end with every message
//! acked or dead-lettered (or deleted with its queue); each seed runs twice and the traces must
//! hash equal. Keyed publishes whose reply was "lost" are sent again, and must answer with
//! their first publish. Jobs are looked up, waited for and cancelled, workers report progress
//! and ack with results, `every_ms` and cron schedules publish (one job per slot, at its slot,
//! across restarts with downtime), `until_finished` keys hold while their job is unfinished,
//! and a debounced publish replaces its key's still-delayed job (the trailing call wins).
//! About half the seeds draw flow control: grouped messages, `max_in_flight`, group limits,
//! ordered and fair groups, rate windows, pauses, worker rate limits and snoozes, whose rules
//! the oracle checks at every delivery; held-back messages must still all finish. About two
//! thirds of the seeds add flows (jobs waiting for their children across the queues, some
//! refused whole on purpose), whose parents run only once their children finished, fail or
//! are cancelled with them, and must all end.

use synap_tests::swarm::{check_seed, seeds_from_env, summarize};

#[test]
fn swarm() {
    let seeds = seeds_from_env(500);
    let reports: Vec<_> = seeds.iter().map(|&seed| check_seed(seed)).collect();
    let total = summarize(&reports);
    println!("swarm: {} seeds, {total:?}", seeds.len());
    assert!(total["published"] > 0, "the swarm published nothing");
    assert_eq!(
        total["published"],
        total["acked"] + total["dead_lettered"] + total["deleted"] + total["cancelled"]
    );
    if seeds.len() >= 100 {
        for figure in [
            "session_pushes",
            "given_back",
            "pubsub_pushed",
            "restarts",
            "duplicates",
            "cancelled",
            "scheduled",
            "cron_runs",
            "debounced",
            "job_waits",
            "waits_answered",
            "grouped",
            "pauses",
            "worker_limits",
            "rate_limited_queues",
            "snoozes",
            "snoozed_out",
            "held_back",
            "flows_added",
            "flows_refused",
            "flows_completed",
            "flows_cancelled",
            "flows_failed",
            "parent_deliveries",
            "child_failed",
            "flow_cancels",
            "parent_cancels",
            "flow_queries",
        ] {
            assert!(total[figure] > 0, "the swarm never exercised {figure}");
        }
    }
}
