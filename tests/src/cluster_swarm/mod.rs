//! The cluster swarm: 3 or 5 `synap_cluster::Node`s in one thread on a seeded network (delay,
//! drop, duplicate, reorder, partitions that heal), with crashes that lose unwritten state,
//! restarts from each node's disk, clock skew, log compaction and snapshot catch-up; producers
//! publish with idempotency keys and resend after a timeout or `NotLeader`, workers consume,
//! ack and nack through whichever node leads. An oracle (see `oracle`) checks every applied
//! entry, leader and client answer; after the faulty phase a calm one must settle every
//! acknowledged publish and bring every replica to the same state. Each seed runs twice and
//! the traces must hash equal. Model: the single-engine swarm (`swarm`), TigerBeetle's VOPR.

mod clients;
mod config;
mod faults;
mod oracle;
mod world;

use std::collections::BTreeMap;

pub use config::ClusterConfig;
pub use world::Tally;

use clients::{Admin, Conn, Consumer, Publisher};
use world::{Outcome, World};

/// Simulated time the calm phase may take to settle everything.
const SETTLE_MS: u64 = 300_000;
/// Loop steps at one instant before the run is declared stuck.
const SAME_INSTANT_STEPS: usize = 10_000;

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterReport {
    /// Hash of the run's trace (applied entries per node, leader changes, faults).
    pub trace_hash: u64,
    /// Simulated milliseconds the run took.
    pub sim_ms: u64,
    /// Messages published (one per key).
    pub published: usize,
    /// Messages acked.
    pub acked: usize,
    /// Messages dead-lettered.
    pub dead: usize,
    /// Terms that had a leader.
    pub leader_terms: usize,
    /// Snapshots installed from a leader.
    pub snapshots_installed: usize,
    /// Faults and losses exercised.
    pub tally: Tally,
}

/// One run's clients.
struct Clients {
    admin: Admin,
    publishers: Vec<Publisher>,
    consumers: Vec<Consumer>,
}

impl Clients {
    fn new(w: &mut World) -> Self {
        let cfg = w.cfg.clone();
        let mut client = 0;
        let mut conn = |w: &mut World| {
            let c = Conn::new(client, w.any_node(), w.now);
            client += 1;
            c
        };
        let admin = Admin {
            conn: conn(w),
            done: false,
        };
        let publishers = (0..cfg.publishers)
            .map(|i| Publisher::new(i, conn(w), cfg.messages_per_publisher))
            .collect();
        let consumers = (0..cfg.consumers)
            .map(|i| Consumer::new(i, conn(w)))
            .collect();
        Self {
            admin,
            publishers,
            consumers,
        }
    }

    fn keys(&self, w: &World) -> usize {
        w.cfg.publishers * w.cfg.messages_per_publisher
    }

    fn next_at(&self) -> u64 {
        let mut at = if self.admin.done {
            u64::MAX
        } else {
            self.admin.conn.next_at()
        };
        if self.admin.done {
            for p in self.publishers.iter().filter(|p| !p.done()) {
                at = at.min(p.conn.next_at());
            }
            for c in &self.consumers {
                at = at.min(c.next_at());
            }
        }
        at
    }

    fn act(&mut self, w: &mut World) {
        if !self.admin.done {
            self.admin.act(w);
            return;
        }
        for p in &mut self.publishers {
            p.act(w);
        }
        for c in &mut self.consumers {
            c.act(w);
        }
    }

    /// Hands every outcome to the client that is still waiting for it.
    fn dispatch(&mut self, w: &mut World) {
        while let Some(((client, req), outcome)) = w.outcomes.pop_front() {
            let np = self.publishers.len();
            let conn_current = |c: &Conn| c.is_current(req);
            match client {
                0 if conn_current(&self.admin.conn) => self.admin.on(w, outcome),
                c if (1..=np).contains(&c) && conn_current(&self.publishers[c - 1].conn) => {
                    self.publishers[c - 1].on(w, outcome);
                }
                c if c > np && conn_current(&self.consumers[c - 1 - np].conn) => {
                    self.consumers[c - 1 - np].on(w, outcome);
                }
                _ => drop::<Outcome>(outcome),
            }
        }
    }

    fn done(&self) -> bool {
        self.admin.done && self.publishers.iter().all(Publisher::done)
    }
}

/// One step: jump to the next thing due, run the cluster, let clients act, propose.
fn step(w: &mut World, clients: &mut Clients, same_instant: &mut usize) {
    let next = w.next_at().min(clients.next_at());
    if next > w.now {
        w.now = next;
        *same_instant = 0;
    } else {
        *same_instant += 1;
        assert!(*same_instant < SAME_INSTANT_STEPS, "stuck at {} ms", w.now);
    }
    w.run_due();
    clients.dispatch(w);
    clients.act(w);
    w.flush_hosts();
    clients.dispatch(w);
}

/// Runs one seed (3 nodes for even seeds, 5 for odd) to the end, panicking on a violation.
#[must_use]
pub fn run(seed: u64) -> ClusterReport {
    run_config(ClusterConfig::from_seed(seed, None))
}

/// Runs one configuration.
#[must_use]
pub fn run_config(cfg: ClusterConfig) -> ClusterReport {
    let mut w = World::new(cfg);
    let mut clients = Clients::new(&mut w);
    let start = w.now;
    let mut same = 0;
    while w.now < start + w.cfg.faulty_ms {
        step(&mut w, &mut clients, &mut same);
    }
    w.calm();
    let calm_from = w.now;
    while !(clients.done() && w.oracle.all_settled() && w.converged()) {
        assert!(
            w.now < calm_from + SETTLE_MS,
            "liveness: not settled {SETTLE_MS} ms after the faults ended \
             (clients done: {}, settled: {}, converged: {})",
            clients.done(),
            w.oracle.all_settled(),
            w.converged()
        );
        step(&mut w, &mut clients, &mut same);
    }
    w.assert_replicas_equal();
    w.assert_disks_agree();
    let keys = clients.keys(&w);
    w.oracle.finish(keys);
    ClusterReport {
        trace_hash: w.trace_hash(),
        sim_ms: w.now - start,
        published: w.oracle.published,
        acked: w.oracle.settled_acked,
        dead: w.oracle.settled_dead,
        leader_terms: w.oracle.leader_terms,
        snapshots_installed: w.oracle.snapshots_installed,
        tally: w.tally,
    }
}

/// Runs a seed twice, requiring equal reports; on a failure prints how to replay it.
pub fn check_seed(seed: u64) -> ClusterReport {
    let first = match std::panic::catch_unwind(|| run(seed)) {
        Ok(r) => r,
        Err(panic) => {
            eprintln!("{}", ClusterConfig::from_seed(seed, None));
            eprintln!("cluster swarm seed {seed} failed; replay it with:");
            eprintln!("  CLUSTER_SEED={seed} cargo test -p synap-tests --test cluster_swarm");
            std::panic::resume_unwind(panic);
        }
    };
    let second = run(seed);
    if first != second {
        eprintln!("{}", ClusterConfig::from_seed(seed, None));
        eprintln!("  CLUSTER_SEED={seed} cargo test -p synap-tests --test cluster_swarm");
        panic!("seed {seed}: two runs differ:\n{first:?}\n{second:?}");
    }
    first
}

/// Seeds from the environment: `CLUSTER_SEED=n` pins one, `CLUSTER_RUNS=k` runs
/// `base..base+k` (base `CLUSTER_BASE`, default 0), else `default_runs` seeds from 0.
#[must_use]
pub fn seeds_from_env(default_runs: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("CLUSTER_SEED") {
        return vec![seed];
    }
    let base = var("CLUSTER_BASE").unwrap_or(0);
    let runs = var("CLUSTER_RUNS").unwrap_or(default_runs);
    (base..base + runs).collect()
}

/// Figures summed over many runs, for the test's closing line.
#[must_use]
pub fn summarize(reports: &[ClusterReport]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in reports {
        let t = &r.tally;
        for (k, v) in [
            ("published", r.published),
            ("acked", r.acked),
            ("dead_lettered", r.dead),
            ("leader_terms", r.leader_terms),
            ("snapshots_installed", r.snapshots_installed),
            ("crashes", t.crashes),
            ("partitions", t.partitions),
            ("dropped", t.dropped),
            ("duplicated", t.duplicated),
            ("lost_replies", t.lost_replies),
            ("lost_proposals", t.lost_proposals),
            ("snapshots_sent", t.snapshots_sent),
        ] {
            *m.entry(k).or_default() += v;
        }
    }
    m
}
