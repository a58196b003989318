//! The oracle's model of pub/sub: each subscriber's patterns, credit, bounded buffer and drop
//! count, predicting every push, poll answer and statistic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use synap_core::{Command, Error, MessageId, PubMessage, Reply};

/// One subscriber as the oracle sees it.
#[derive(Debug, Default)]
struct Sub {
    patterns: BTreeSet<String>,
    buffer: VecDeque<MessageId>,
    credit: u32,
    dropped: u64,
    /// Pushes the current command must emit, in order.
    expect: VecDeque<MessageId>,
    /// Publish number of the last message it received (order and at-most-once).
    last: Option<u64>,
}

/// The pub/sub model.
#[derive(Debug)]
pub(crate) struct PubsubModel {
    subs: BTreeMap<String, Sub>,
    cap: usize,
    published: u64,
    delivered: u64,
    dropped: u64,
    /// Publish number of each message.
    seq: BTreeMap<MessageId, u64>,
}

/// Whether `pattern` matches `topic`: `*` one segment, a trailing `#` zero or more.
fn matches(pattern: &str, topic: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = topic.split('.').collect();
    if p.last() == Some(&"#") {
        let head = &p[..p.len() - 1];
        return t.len() >= head.len() && head.iter().zip(&t).all(|(a, b)| *a == "*" || a == b);
    }
    p.len() == t.len() && p.iter().zip(&t).all(|(a, b)| *a == "*" || a == b)
}

impl PubsubModel {
    /// A model for subscriber buffers of `cap` messages.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            subs: BTreeMap::new(),
            cap,
            published: 0,
            delivered: 0,
            dropped: 0,
            seq: BTreeMap::new(),
        }
    }

    /// A subscriber received `id`: after everything it received before, never twice.
    fn received(sub: &mut Sub, seq: &BTreeMap<MessageId, u64>, id: MessageId, who: &str) {
        let n = seq[&id];
        assert!(
            sub.last.is_none_or(|l| n > l),
            "pub/sub: {who} got message #{n} after #{:?} (order or duplicate)",
            sub.last
        );
        sub.last = Some(n);
    }

    fn push_buffered(sub: &mut Sub, delivered: &mut u64) {
        while sub.credit > 0 {
            let Some(id) = sub.buffer.pop_front() else {
                break;
            };
            sub.credit -= 1;
            *delivered += 1;
            sub.expect.push_back(id);
        }
    }

    /// Predicts a pub/sub command's effect and checks its reply (pushes are checked as the
    /// events are drained).
    pub(crate) fn command(&mut self, cmd: &Command, result: &Result<Reply, Error>) {
        let not_found = |r: &Result<Reply, Error>| {
            assert_eq!(
                r.as_ref().map_err(Error::code).err(),
                Some("subscriber_not_found")
            );
        };
        match cmd {
            Command::Subscribe {
                subscriber_id: Some(id),
                patterns,
                credit,
                ..
            } => {
                let sub = self.subs.entry(id.clone()).or_default();
                sub.patterns.extend(patterns.iter().cloned());
                sub.credit += credit;
                Self::push_buffered(sub, &mut self.delivered);
                let want: Vec<String> = sub.patterns.iter().cloned().collect();
                assert!(
                    matches!(result, Ok(Reply::Subscribed { patterns, .. }) if *patterns == want),
                    "subscribe answered {result:?}"
                );
            }
            Command::Unsubscribe {
                subscriber_id,
                patterns,
            } => {
                let Some(sub) = self.subs.get_mut(subscriber_id) else {
                    return not_found(result);
                };
                let removed = match patterns {
                    Some(ps) => ps.iter().filter(|p| sub.patterns.remove(*p)).count(),
                    None => std::mem::take(&mut sub.patterns).len(),
                } as u64;
                if sub.patterns.is_empty() {
                    self.subs.remove(subscriber_id);
                }
                assert_eq!(result, &Ok(Reply::Unsubscribed { removed }));
            }
            Command::PubsubPublish { topic, .. } => {
                let Ok(Reply::PubsubPublished {
                    message_id,
                    subscribers_matched,
                    ..
                }) = result
                else {
                    panic!("pub/sub publish answered {result:?}");
                };
                self.seq.insert(*message_id, self.published);
                self.published += 1;
                let mut matched = 0;
                for sub in self.subs.values_mut() {
                    if !sub.patterns.iter().any(|p| matches(p, topic)) {
                        continue;
                    }
                    matched += 1;
                    if sub.credit > 0 {
                        sub.credit -= 1;
                        self.delivered += 1;
                        sub.expect.push_back(*message_id);
                        continue;
                    }
                    if sub.buffer.len() >= self.cap {
                        sub.buffer.pop_front();
                        sub.dropped += 1;
                        self.dropped += 1;
                    }
                    sub.buffer.push_back(*message_id);
                    assert!(sub.buffer.len() <= self.cap, "buffer bound");
                }
                assert_eq!(
                    *subscribers_matched, matched,
                    "subscribers matched by {topic}"
                );
            }
            Command::PubsubPoll { subscriber_id, max } => {
                let Some(sub) = self.subs.get_mut(subscriber_id) else {
                    return not_found(result);
                };
                let n = sub.buffer.len().min(*max as usize);
                let want: Vec<MessageId> = sub.buffer.drain(..n).collect();
                self.delivered += n as u64;
                let Ok(Reply::PubsubMessages { messages, dropped }) = result else {
                    panic!("poll answered {result:?}");
                };
                let got: Vec<MessageId> = messages.iter().map(|m| m.message_id).collect();
                assert_eq!(got, want, "poll of {subscriber_id}");
                assert_eq!(*dropped, sub.dropped, "drops of {subscriber_id}");
                for id in got {
                    Self::received(sub, &self.seq, id, subscriber_id);
                }
            }
            Command::PubsubCredit {
                subscriber_id,
                credit,
            } => {
                let Some(sub) = self.subs.get_mut(subscriber_id) else {
                    return not_found(result);
                };
                sub.credit += credit;
                Self::push_buffered(sub, &mut self.delivered);
                assert_eq!(result, &Ok(Reply::PubsubCredited { credit: sub.credit }));
            }
            Command::PubsubStats => {
                let Ok(Reply::PubsubStats(s)) = result else {
                    panic!("pub/sub stats answered {result:?}");
                };
                assert_eq!(s.subscribers, self.subs.len() as u64, "subscribers");
                assert_eq!(s.messages_published, self.published, "published");
                assert_eq!(s.messages_delivered, self.delivered, "delivered");
                assert_eq!(s.messages_dropped, self.dropped, "dropped");
            }
            _ => {}
        }
    }

    /// A push the engine emitted: the one the model expects next for that subscriber.
    pub(crate) fn pushed(&mut self, subscriber: &str, m: &PubMessage) {
        let sub = self
            .subs
            .get_mut(subscriber)
            .unwrap_or_else(|| panic!("push to unknown subscriber {subscriber}"));
        assert_eq!(
            sub.expect.pop_front(),
            Some(m.message_id),
            "push to {subscriber} out of credit or order"
        );
        Self::received(sub, &self.seq, m.message_id, subscriber);
    }

    /// Every push the model predicted was emitted.
    pub(crate) fn all_pushed(&self) {
        for (id, s) in &self.subs {
            assert!(
                s.expect.is_empty(),
                "pushes to {id} missing: {:?}",
                s.expect
            );
        }
    }
}
