//! Publishing: one message, or a batch all or none, with idempotency keys.

use crate::Error;
use crate::api::{DedupMode, PublishMessage, Published};
use crate::dedup::ScopedKey;
use crate::engine::Engine;
use crate::queue::{check_publish, publish_bytes};

impl Engine {
    /// Publishes one message to `queue`, as `publish_all` does a batch of one, without the
    /// batch's bookkeeping (the common case: no vector, and the message moves as little as
    /// it can). A key seen on the queue within the window answers with the first publish.
    /// Parked waiters are served at once.
    pub(crate) fn publish_one(
        &mut self,
        queue: &str,
        mut m: PublishMessage,
    ) -> Result<Published, Error> {
        check_publish(&self.ctx.limits, &m)?;
        let now = self.ctx.now;
        let qid = self.publish_target(queue)?.0.id;
        let key = match m.idempotency_key.as_deref() {
            None => None,
            Some(key) => {
                self.dedup.expire(now);
                let key = ScopedKey::new(qid, key);
                if let Some(first) = self.dedup.first(&key) {
                    return Ok(Published {
                        duplicate: true,
                        ..first.clone()
                    });
                }
                self.dedup
                    .check_room(1, self.ctx.limits.max_idempotency_keys)?;
                Some(key)
            }
        };
        let q = self.queues.get_mut(&qid).expect("publish target exists");
        q.check_room(1)?;
        q.check_groups(&self.ctx.limits, m.group.as_deref().into_iter())?;
        q.check_memory(&self.ctx, publish_bytes(&m))?;
        let held = m.dedup == Some(DedupMode::UntilFinished);
        let published = q.publish(&mut self.ctx, &mut m, true);
        if let Some(key) = key {
            if held {
                self.dedup.record_held(key, published.clone());
            } else {
                let expires_at = now.add_ms(self.config.idempotency_window_ms);
                self.dedup.record(key, published.clone(), expires_at);
            }
        }
        Ok(published)
    }

    /// Publishes `messages` to `queue`, all or none. A message whose idempotency key was seen
    /// on the queue within the window, or earlier in the same batch, adds nothing and answers
    /// with the first publish's id and position. A single publish (`serve`) serves parked
    /// waiters at once; a batch serves them after its last message.
    pub(crate) fn publish_all(
        &mut self,
        queue: &str,
        messages: Vec<PublishMessage>,
        serve: bool,
    ) -> Result<Vec<Published>, Error> {
        for m in &messages {
            check_publish(&self.ctx.limits, m)?;
            if m.debounce && messages.len() > 1 {
                return Err(Error::invalid(
                    "debounce",
                    "a debounced message is published alone, not in a batch",
                ));
            }
        }
        let now = self.ctx.now;
        let qid = self.publish_target(queue)?.0.id;
        // What each message answers without being added: a key seen before, or the index of
        // the message earlier in this batch that carries the same key.
        let mut prior: Vec<Option<Result<Published, usize>>> = vec![None; messages.len()];
        if messages.iter().any(|m| m.idempotency_key.is_some()) {
            self.dedup.expire(now);
            let mut new_keys = rustc_hash::FxHashMap::<&str, usize>::default();
            for (i, m) in messages.iter().enumerate() {
                let Some(key) = m.idempotency_key.as_deref() else {
                    continue;
                };
                prior[i] = match self.dedup.first(&ScopedKey::new(qid, key)) {
                    Some(first) => Some(Ok(first.clone())),
                    None => match new_keys.entry(key) {
                        std::collections::hash_map::Entry::Occupied(e) => Some(Err(*e.get())),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(i);
                            None
                        }
                    },
                };
            }
            self.dedup
                .check_room(new_keys.len(), self.ctx.limits.max_idempotency_keys)?;
        }
        let q = self.queues.get_mut(&qid).expect("publish target exists");
        q.check_room(prior.iter().filter(|p| p.is_none()).count() as u64)?;
        let groups = messages.iter().zip(&prior).filter(|(_, p)| p.is_none());
        q.check_groups(
            &self.ctx.limits,
            groups.filter_map(|(m, _)| m.group.as_deref()),
        )?;
        // Only new messages count against the memory budget: a retried publish whose key was
        // seen is answered as before, even when the server is full.
        let bytes = messages
            .iter()
            .zip(&prior)
            .filter(|(_, p)| p.is_none())
            .map(|(m, _)| publish_bytes(m))
            .sum();
        q.check_memory(&self.ctx, bytes)?;
        let expires_at = now.add_ms(self.config.idempotency_window_ms);
        let mut out: Vec<Published> = Vec::with_capacity(messages.len());
        let mut messages = messages;
        for (m, prior) in messages.iter_mut().zip(prior) {
            let answer = match prior {
                Some(Ok(first)) => first,
                Some(Err(earlier)) => out[earlier].clone(),
                None => {
                    let key = m.idempotency_key.take();
                    let held = m.dedup == Some(DedupMode::UntilFinished);
                    let published = q.publish(&mut self.ctx, m, serve);
                    if let Some(key) = key {
                        let key = ScopedKey::new(qid, &key);
                        if held {
                            self.dedup.record_held(key, published.clone());
                        } else {
                            self.dedup.record(key, published.clone(), expires_at);
                        }
                    }
                    out.push(published);
                    continue;
                }
            };
            out.push(Published {
                duplicate: true,
                ..answer
            });
        }
        if !serve {
            q.serve(&mut self.ctx);
        }
        Ok(out)
    }
}
