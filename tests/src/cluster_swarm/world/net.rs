//! The swarm's network: messages encoded, dropped (by a partition or at random), duplicated
//! and delayed, delivered when due; snapshot outcomes reported back to their sender.

use synap_cluster::{Message, MessageType, decode_message, encode_message};

use super::World;

impl World {
    fn apart(&self, a: u64, b: u64) -> bool {
        self.side[(a - 1) as usize] != self.side[(b - 1) as usize]
    }

    pub(super) fn send(&mut self, m: &Message) {
        let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
        if snapshot {
            self.tally.snapshots_sent += 1;
        }
        let cut = self.apart(m.from, m.to);
        if cut || (self.faults && self.chance(self.cfg.p_drop)) {
            self.tally.dropped += 1;
            if snapshot {
                self.reports.push((m.from, m.to, false));
            }
            return;
        }
        let bytes = encode_message(m);
        let copies = if self.faults && self.chance(self.cfg.p_dup) {
            self.tally.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = self.cfg.delay_ms;
            let at = self.now + self.pick(lo, hi);
            self.net_seq += 1;
            self.net.insert((at, self.net_seq), bytes.clone());
        }
    }

    pub(super) fn deliver_due(&mut self) {
        while let Some(entry) = self.net.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let bytes = entry.remove();
            let m = decode_message(&bytes).expect("messages decode");
            let to = (m.to - 1) as usize;
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let (from, target) = (m.from, m.to);
            let clock = self.clock(to);
            match self.peers[to].node.as_mut() {
                Some(node) => {
                    let _ = node.step(clock, m);
                    self.drain(to);
                    if snapshot {
                        self.reports.push((from, target, true));
                    }
                }
                None if snapshot => self.reports.push((from, target, false)),
                None => {}
            }
        }
    }

    pub(super) fn flush_reports(&mut self) {
        for (from, to, ok) in std::mem::take(&mut self.reports) {
            let i = (from - 1) as usize;
            let clock = self.clock(i);
            if let Some(node) = self.peers[i].node.as_mut() {
                node.report_snapshot(clock, to, ok);
                self.drain(i);
            }
        }
    }
}
