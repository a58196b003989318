//! One cluster-swarm run's settings, all drawn from its seed and printed on failure.

use std::fmt;

use synap_core::Rng;

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The seed everything is drawn from.
    pub seed: u64,
    /// Nodes in the cluster: 3 or 5.
    pub nodes: usize,
    /// Producers publishing keyed messages.
    pub publishers: usize,
    /// Messages each producer publishes.
    pub messages_per_publisher: usize,
    /// Workers consuming.
    pub consumers: usize,
    /// The queue's `max_retries`.
    pub max_retries: u32,
    /// Network delay range, ms.
    pub delay_ms: (u64, u64),
    /// Chance a message is dropped (faulty phase).
    pub p_drop: f64,
    /// Chance a message is delivered twice (faulty phase).
    pub p_dup: f64,
    /// Longest time a disk write takes, ms.
    pub fsync_ms_max: u64,
    /// Largest clock skew of a node, ms (either way).
    pub skew_ms_max: u64,
    /// Mean time between crashes (faulty phase), ms.
    pub crash_every_ms: u64,
    /// Mean time between partitions (faulty phase), ms.
    pub partition_every_ms: u64,
    /// Chance a reply to a client is lost (faulty phase).
    pub p_lose_reply: f64,
    /// Applied entries between snapshots.
    pub snapshot_entries: u64,
    /// Length of the faulty phase, ms.
    pub faulty_ms: u64,
    /// Chance a consume long-polls.
    pub p_long_poll: f64,
    /// Milliseconds per Raft tick.
    pub tick_ms: u64,
}

impl ClusterConfig {
    /// The settings of `seed`: 3 nodes for even seeds, 5 for odd ones unless `nodes` says.
    #[must_use]
    pub fn from_seed(seed: u64, nodes: Option<usize>) -> Self {
        let mut rng = Rng::new(seed ^ 0xC1A5_7E55);
        let mut pick = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
        let nodes = nodes.unwrap_or(if seed & 1 == 0 { 3 } else { 5 });
        let delay_lo = pick(1, 5);
        Self {
            seed,
            nodes,
            publishers: pick(1, 3) as usize,
            messages_per_publisher: pick(8, 25) as usize,
            consumers: pick(1, 3) as usize,
            max_retries: pick(1, 3) as u32,
            delay_ms: (delay_lo, delay_lo + pick(2, 40)),
            p_drop: pick(0, 10) as f64 / 100.0,
            p_dup: pick(0, 5) as f64 / 100.0,
            fsync_ms_max: pick(0, 15),
            skew_ms_max: pick(0, 3) * 500,
            crash_every_ms: pick(3, 12) * 1_000,
            partition_every_ms: pick(3, 12) * 1_000,
            p_lose_reply: pick(0, 10) as f64 / 100.0,
            snapshot_entries: pick(4, 40),
            faulty_ms: pick(15, 30) * 1_000,
            p_long_poll: pick(0, 5) as f64 / 10.0,
            tick_ms: 50,
        }
    }
}

impl fmt::Display for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CLUSTER_SEED={} nodes={}", self.seed, self.nodes)?;
        writeln!(
            f,
            "  publishers={} x {} messages, consumers={}, max_retries={}, long-poll {:.1}",
            self.publishers,
            self.messages_per_publisher,
            self.consumers,
            self.max_retries,
            self.p_long_poll
        )?;
        writeln!(
            f,
            "  delay={:?} ms drop={:.2} dup={:.2} fsync<={} ms skew<={} ms lost replies={:.2}",
            self.delay_ms,
            self.p_drop,
            self.p_dup,
            self.fsync_ms_max,
            self.skew_ms_max,
            self.p_lose_reply
        )?;
        write!(
            f,
            "  crash every ~{} ms, partition every ~{} ms, snapshot every {} entries, faulty for {} ms",
            self.crash_every_ms, self.partition_every_ms, self.snapshot_entries, self.faulty_ms
        )
    }
}
