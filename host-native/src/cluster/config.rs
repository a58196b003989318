//! The `cluster:` section of the config file (DESIGN.md §11) and `--node-id`: who the nodes
//! are, where each listens, the shared secret, and the Raft timings. Checked at start, with an
//! error that names the field.

use std::net::SocketAddr;

use serde::Deserialize;

/// Environment variable holding the cluster secret (instead of `cluster.secret`).
pub(crate) const SECRET_ENV: &str = "SYNAP_CLUSTER_SECRET";
/// Default largest Raft message between nodes (a snapshot travels in chunks, not in one).
pub(crate) const DEFAULT_MAX_FRAME_BYTES: usize = 256 << 20;
/// Default largest snapshot a node receives (it is held in memory while it arrives).
pub(crate) const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 4 << 30;
/// Largest (and default) chunk of a snapshot on the wire.
pub(crate) const MAX_CHUNK_BYTES: usize = 1 << 20;
/// Smallest chunk `cluster.snapshot_chunk_bytes` may set.
const MIN_CHUNK_BYTES: usize = 1024;

/// One `cluster.nodes` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeAddrs {
    /// The node's id (not 0), the same in every node's config.
    pub(crate) id: u64,
    /// Where the node listens for its peers (Raft messages).
    pub(crate) raft: SocketAddr,
    /// Its HTTP address (clients are pointed there).
    pub(crate) http: SocketAddr,
    /// Its SynapRPC address, if it serves SynapRPC.
    #[serde(default)]
    pub(crate) rpc: Option<SocketAddr>,
    /// Added to a running cluster (`POST /cluster/nodes`), not a founding voter: the entry
    /// only tells that node where to listen. Its peers learn its addresses from the log.
    #[serde(default)]
    pub(crate) join: bool,
}

/// The `cluster:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ClusterSection {
    secret: Option<String>,
    nodes: Vec<NodeAddrs>,
    /// Milliseconds per Raft tick.
    tick_ms: Option<u64>,
    /// Ticks without a leader before an election (jittered up to twice that).
    election_ticks: Option<usize>,
    /// Ticks between a leader's heartbeats.
    heartbeat_ticks: Option<usize>,
    /// Applied entries between snapshots (log compaction).
    snapshot_entries: Option<u64>,
    /// Largest Raft message between nodes.
    max_frame_bytes: Option<usize>,
    /// Largest snapshot a node receives.
    max_snapshot_bytes: Option<u64>,
    /// Size of the chunks a snapshot is sent in.
    snapshot_chunk_bytes: Option<usize>,
    /// The engine's seed, the same on every node (derived from the node ids when absent).
    seed: Option<u64>,
}

/// A checked cluster configuration for this node.
#[derive(Clone, Debug)]
pub(crate) struct ClusterConfig {
    /// This node's id.
    pub(crate) node_id: u64,
    /// Every node of the file, in id order: the founding voters, and entries marked `join`.
    pub(crate) nodes: Vec<NodeAddrs>,
    /// The shared secret peers prove they hold when they connect.
    pub(crate) secret: String,
    pub(crate) tick_ms: u64,
    pub(crate) election_ticks: usize,
    pub(crate) heartbeat_ticks: usize,
    pub(crate) snapshot_entries: u64,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_snapshot_bytes: u64,
    pub(crate) snapshot_chunk_bytes: usize,
    seed: Option<u64>,
}

impl ClusterConfig {
    /// Checks `section` for node `node_id`; `env_secret` is `SYNAP_CLUSTER_SECRET`, which
    /// the file's `secret` overrides.
    pub(crate) fn resolve(
        section: ClusterSection,
        node_id: Option<u64>,
        env_secret: Option<&str>,
    ) -> Result<Self, String> {
        let node_id = node_id.ok_or(
            "the config file has a cluster: section; start each node with --node-id N (its id in cluster.nodes)",
        )?;
        let secret = section
            .secret
            .or_else(|| env_secret.map(str::to_owned))
            .unwrap_or_default();
        if secret.trim().is_empty() {
            return Err(format!(
                "cluster.secret (or {SECRET_ENV}) must be set and non-empty: nodes refuse peers without it"
            ));
        }
        let mut nodes = section.nodes;
        if nodes.is_empty() {
            return Err("cluster.nodes must list at least one node".into());
        }
        nodes.sort_by_key(|n| n.id);
        for pair in nodes.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(format!("cluster.nodes: id {} is listed twice", pair[0].id));
            }
        }
        if nodes.iter().any(|n| n.id == 0) {
            return Err("cluster.nodes: ids start at 1 (0 is not a node id)".into());
        }
        if nodes.iter().all(|n| n.join) {
            return Err(
                "cluster.nodes must list the founding nodes (entries without join: true)".into(),
            );
        }
        if nodes.len() > synap_cluster::members::MAX_MEMBERS * 4 {
            return Err(format!(
                "cluster.nodes lists {} nodes; at most {}",
                nodes.len(),
                synap_cluster::members::MAX_MEMBERS * 4
            ));
        }
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                if a.raft == b.raft || a.http == b.http || (a.rpc.is_some() && a.rpc == b.rpc) {
                    return Err(format!(
                        "cluster.nodes: nodes {} and {} share an address",
                        a.id, b.id
                    ));
                }
            }
        }
        if !nodes.iter().any(|n| n.id == node_id) {
            let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
            return Err(format!(
                "--node-id {node_id} is not in cluster.nodes (ids: {})",
                ids.join(", ")
            ));
        }
        let tick_ms = section.tick_ms.unwrap_or(100);
        let election_ticks = section.election_ticks.unwrap_or(10);
        let heartbeat_ticks = section.heartbeat_ticks.unwrap_or(2);
        if !(1..=10_000).contains(&tick_ms) {
            return Err("cluster.tick_ms must be between 1 and 10000".into());
        }
        if heartbeat_ticks == 0 || election_ticks <= heartbeat_ticks {
            return Err(
                "cluster.election_ticks must be greater than cluster.heartbeat_ticks (> 0)".into(),
            );
        }
        let max_frame_bytes = section.max_frame_bytes.unwrap_or(DEFAULT_MAX_FRAME_BYTES);
        if !(1 << 20..=u32::MAX as usize).contains(&max_frame_bytes) {
            return Err("cluster.max_frame_bytes must be between 1 MiB and 4 GiB".into());
        }
        let max_snapshot_bytes = section
            .max_snapshot_bytes
            .unwrap_or(DEFAULT_MAX_SNAPSHOT_BYTES);
        if max_snapshot_bytes < 1 << 20 {
            return Err("cluster.max_snapshot_bytes must be at least 1 MiB".into());
        }
        let snapshot_chunk_bytes = section.snapshot_chunk_bytes.unwrap_or(MAX_CHUNK_BYTES);
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&snapshot_chunk_bytes) {
            return Err(format!(
                "cluster.snapshot_chunk_bytes must be between {MIN_CHUNK_BYTES} and {MAX_CHUNK_BYTES}"
            ));
        }
        Ok(Self {
            node_id,
            nodes,
            secret,
            tick_ms,
            election_ticks,
            heartbeat_ticks,
            snapshot_entries: section.snapshot_entries.unwrap_or(10_000),
            max_frame_bytes,
            max_snapshot_bytes,
            snapshot_chunk_bytes,
            seed: section.seed,
        })
    }

    /// This node's entry.
    pub(crate) fn me(&self) -> &NodeAddrs {
        self.node(self.node_id).expect("checked at load")
    }

    /// A node's entry.
    pub(crate) fn node(&self, id: u64) -> Option<&NodeAddrs> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The founding voters' ids (the entries without `join`), in id order.
    pub(crate) fn founding(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| !n.join)
            .map(|n| n.id)
            .collect()
    }

    /// The engine's seed, the same on every node (replicas draw the same message ids):
    /// `cluster.seed`, or derived from the founding node ids (entries marked `join` do not
    /// count, so listing a node added later changes nothing). Not from the secret, which may
    /// be rotated: a node that replays the log from its start must draw what the others drew.
    pub(crate) fn engine_seed(&self) -> u64 {
        use blake2::Digest;
        if let Some(seed) = self.seed {
            return seed;
        }
        let mut h = blake2::Blake2b512::new();
        h.update(b"synap-cluster-engine-seed\0");
        for id in self.founding() {
            h.update(id.to_le_bytes());
        }
        let out = h.finalize();
        u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> ClusterSection {
        serde_norway::from_str(yaml).unwrap()
    }

    const THREE: &str = "secret: s3cret\nnodes:\n  - { id: 1, raft: 127.0.0.1:17001, http: 127.0.0.1:15500, rpc: 127.0.0.1:15501 }\n  - { id: 2, raft: 127.0.0.1:17002, http: 127.0.0.1:15510, rpc: 127.0.0.1:15511 }\n  - { id: 3, raft: 127.0.0.1:17003, http: 127.0.0.1:15520 }\n";

    #[test]
    fn the_design_example_parses_for_each_node() {
        for id in 1..=3 {
            let c = ClusterConfig::resolve(section(THREE), Some(id), None).unwrap();
            assert_eq!(c.me().id, id);
            assert_eq!(c.nodes.len(), 3);
        }
        let a = ClusterConfig::resolve(section(THREE), Some(1), None).unwrap();
        let b = ClusterConfig::resolve(section(THREE), Some(2), None).unwrap();
        assert_eq!(a.engine_seed(), b.engine_seed(), "one seed per cluster");
    }

    #[test]
    fn bad_sections_are_refused_with_a_reason() {
        let err = |yaml: &str, id: Option<u64>, env: Option<&str>| {
            ClusterConfig::resolve(section(yaml), id, env).unwrap_err()
        };
        assert!(err(THREE, None, None).contains("--node-id"));
        assert!(err(THREE, Some(4), None).contains("not in cluster.nodes"));
        let no_secret = THREE.replace("secret: s3cret\n", "");
        assert!(err(&no_secret, Some(1), None).contains("secret"));
        assert!(err(&no_secret, Some(1), Some("  ")).contains("secret"));
        assert!(ClusterConfig::resolve(section(&no_secret), Some(1), Some("env")).is_ok());
        let twice = THREE.replace("id: 3", "id: 2");
        assert!(err(&twice, Some(1), None).contains("twice"));
        assert!(err("secret: x\nnodes: []\n", Some(1), None).contains("at least one"));
        let shared = THREE.replace("17003", "17002");
        assert!(err(&shared, Some(1), None).contains("share"));
        assert!(serde_norway::from_str::<ClusterSection>("nodez: []\n").is_err());
    }

    #[test]
    fn a_joining_entry_is_no_founder_and_leaves_the_seed_alone() {
        let four = format!(
            "{THREE}  - {{ id: 4, raft: 127.0.0.1:17004, http: 127.0.0.1:15530, join: true }}\n"
        );
        let a = ClusterConfig::resolve(section(THREE), Some(1), None).unwrap();
        let b = ClusterConfig::resolve(section(&four), Some(4), None).unwrap();
        assert_eq!(b.founding(), vec![1, 2, 3]);
        assert!(b.me().join);
        assert_eq!(
            a.engine_seed(),
            b.engine_seed(),
            "a joining entry changes no seed"
        );
        let only =
            "secret: x\nnodes:\n  - { id: 4, raft: 127.0.0.1:1, http: 127.0.0.1:2, join: true }\n";
        let e = ClusterConfig::resolve(section(only), Some(4), None).unwrap_err();
        assert!(e.contains("founding"), "{e}");
    }

    #[test]
    fn snapshot_limits_have_defaults_and_bounds() {
        let c = ClusterConfig::resolve(section(THREE), Some(1), None).unwrap();
        assert_eq!(c.snapshot_chunk_bytes, MAX_CHUNK_BYTES);
        assert_eq!(c.max_snapshot_bytes, DEFAULT_MAX_SNAPSHOT_BYTES);
        let with = |extra: &str| {
            ClusterConfig::resolve(section(&format!("{THREE}{extra}")), Some(1), None)
        };
        let c = with("snapshot_chunk_bytes: 4096\nmax_snapshot_bytes: 2097152\n").unwrap();
        assert_eq!(
            (c.snapshot_chunk_bytes, c.max_snapshot_bytes),
            (4096, 2 << 20)
        );
        assert!(
            with("snapshot_chunk_bytes: 100\n")
                .unwrap_err()
                .contains("snapshot_chunk_bytes")
        );
        assert!(
            with("snapshot_chunk_bytes: 2097152\n")
                .unwrap_err()
                .contains("snapshot_chunk_bytes")
        );
        assert!(
            with("max_snapshot_bytes: 10\n")
                .unwrap_err()
                .contains("max_snapshot_bytes")
        );
        assert!(
            with("max_frame_bytes: 10\n")
                .unwrap_err()
                .contains("max_frame_bytes")
        );
    }

    #[test]
    fn a_node_binds_its_own_entry_unless_flags_say_otherwise() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!("cluster:\n  {}", THREE.replace('\n', "\n  ").trim_end()),
        )
        .unwrap();
        let load = |args: &[&str]| {
            let argv = ["synap-server", "--config", path.to_str().unwrap()];
            let cli = crate::config::Cli::try_parse_from(argv.iter().chain(args)).unwrap();
            crate::config::ServerConfig::load(&cli, None)
        };
        let c = load(&["--node-id", "2"]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:15510");
        assert_eq!(c.rpc_bind.unwrap().to_string(), "127.0.0.1:15511");
        assert_eq!(c.cluster.unwrap().node_id, 2);
        let c = load(&["--node-id", "2", "--bind", "0.0.0.0:9"]).unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:9");
        assert!(load(&[]).unwrap_err().contains("--node-id"));
        let e = load(&["--node-id", "1", "--in-memory"]).unwrap_err();
        assert!(e.contains("in-memory"), "{e}");
        let cli = crate::config::Cli::try_parse_from(["synap-server", "--node-id", "1"]).unwrap();
        let e = crate::config::ServerConfig::load(&cli, None).unwrap_err();
        assert!(e.contains("cluster: section"), "{e}");
    }
}
