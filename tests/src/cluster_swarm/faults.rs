//! The swarm's faults: partitions that heal, crashes that lose what was not written, and
//! restarts from each node's disk; and the calm that ends them.

use synap_cluster::Node;

use super::world::{Outcome, World};

impl World {
    pub(crate) fn faults_due(&mut self) {
        if self.partition_until != 0 && self.now >= self.partition_until {
            self.heal();
        }
        if self.now >= self.next_partition_at {
            let every = self.cfg.partition_every_ms;
            self.next_partition_at = self.now + self.pick(every / 2, every * 3 / 2);
            self.partition();
        }
        if self.now >= self.next_crash_at {
            let every = self.cfg.crash_every_ms;
            self.next_crash_at = self.now + self.pick(every / 2, every * 3 / 2);
            let live: Vec<usize> = (0..self.peers.len())
                .filter(|&i| self.peers[i].node.is_some())
                .collect();
            if !live.is_empty() {
                // Leaders are picked more often: their failover is the interesting case.
                let leader = live
                    .iter()
                    .copied()
                    .find(|&i| self.peers[i].node.as_ref().is_some_and(Node::is_leader));
                let victim = match leader {
                    Some(l) if self.chance(0.5) => l,
                    _ => live[self.pick(0, live.len() as u64 - 1) as usize],
                };
                self.crash(victim);
            }
        }
    }

    pub(crate) fn partition(&mut self) {
        self.tally.partitions += 1;
        let n = self.peers.len();
        // One node alone, or a random split.
        if self.chance(0.5) {
            let lone = self.pick(0, n as u64 - 1) as usize;
            self.side = (0..n).map(|i| i == lone).collect();
        } else {
            self.side = (0..n).map(|_| self.rng.next_u64() & 1 == 0).collect();
        }
        self.partition_until = self.now + self.pick(300, 5_000);
        let sides: u64 = self
            .side
            .iter()
            .enumerate()
            .map(|(i, &s)| u64::from(s) << i)
            .sum();
        self.note(&[3, sides]);
    }

    pub(crate) fn heal(&mut self) {
        self.side = vec![false; self.peers.len()];
        self.partition_until = 0;
    }

    /// Node `i` dies: whatever it had not written is gone, its clients' connections drop.
    pub(crate) fn crash(&mut self, i: usize) {
        self.tally.crashes += 1;
        let p = &mut self.peers[i];
        p.node = None;
        p.writes.clear();
        p.events.clear();
        let host = std::mem::take(&mut p.host);
        let callers = host
            .inbox
            .into_iter()
            .map(|(c, _)| c)
            .chain(host.in_flight.into_values().flatten())
            .chain(host.parked.into_values());
        for caller in callers {
            self.outcomes.push_back((caller, Outcome::Lost));
        }
        let down = self.pick(200, 4_000);
        self.peers[i].restart_at = Some(self.now + down);
        self.note(&[4, i as u64]);
    }

    pub(crate) fn restart(&mut self, i: usize) {
        let clock = self.clock(i);
        let p = &mut self.peers[i];
        p.restart_at = None;
        let node = Node::new(p.cfg.clone(), p.disk.recovered(), clock)
            .unwrap_or_else(|e| panic!("node {} does not restart: {e}", i + 1));
        p.node = Some(node);
        self.drain(i);
    }

    /// The faulty phase ends: partitions heal, crashed nodes come back, the network is
    /// reliable.
    pub(crate) fn calm(&mut self) {
        self.faults = false;
        self.heal();
        for i in 0..self.peers.len() {
            if self.peers[i].node.is_none() {
                self.restart(i);
            }
        }
    }
}
