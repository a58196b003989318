//! Simulator throughput: simulated tasks (messages published) per wall-clock second on the
//! `video-processing` preset. Run with `cargo run --release -p synap-core --example sim_bench`.
//! Benchmarks may read the clock; the simulator itself never does.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Instant;

use synap_core::sim::{Simulation, preset};

fn main() {
    let runs = 5;
    let mut best = f64::MAX;
    let mut report = None;
    for _ in 0..runs {
        let mut sim = Simulation::from_preset("video-processing").expect("preset is valid");
        let started = Instant::now();
        let r = sim.run();
        best = best.min(started.elapsed().as_secs_f64());
        report = Some(r);
    }
    let r = report.expect("at least one run");
    let s = &r.summary;
    println!(
        "preset video-processing: {} simulated s",
        s.simulated_ms / 1000
    );
    println!(
        "published {} completed {} dead-lettered {} still in system {}",
        s.published, s.completed, s.dead_lettered, s.still_in_system
    );
    println!(
        "events processed {}, commands {}, run_hash {}",
        s.events_processed, s.commands, s.run_hash
    );
    println!(
        "best of {runs}: {:.1} ms wall, {:.0} simulated tasks/s, {:.0} events/s, {:.0}x real time",
        best * 1000.0,
        s.published as f64 / best,
        s.events_processed as f64 / best,
        s.simulated_ms as f64 / 1000.0 / best
    );
    // A heavier variant: ten times the arrival rate and workers, to measure at scale.
    let mut big = preset("video-processing").expect("preset is valid");
    for p in &mut big.producers {
        if let synap_core::sim::Arrival::Poisson { rate_per_sec } = &mut p.arrival {
            *rate_per_sec *= 10.0;
        }
    }
    for w in &mut big.workers {
        w.count *= 10;
    }
    let mut sim = Simulation::new(big).expect("scaled preset is valid");
    let started = Instant::now();
    let r = sim.run();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "10x preset: published {} in {:.1} ms wall: {:.0} simulated tasks/s",
        r.summary.published,
        secs * 1000.0,
        r.summary.published as f64 / secs
    );
}
