//! Queue operations over the REST routes of DESIGN.md §5: publish, consume under a lease,
//! ack/nack/extend, stats, and the dead-letter queue.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use synap_wire as wire;

use crate::client::SynapClient;
use crate::error::{Result, SynapError};
use crate::failover::random_key;
use crate::types::{
    AckBatchResult, ConsumeOptions, DlqPage, NackAction, NackOptions, PublishOptions,
    PublishResult, QueueConfig, QueueMessage, QueueStats, RawDelivery, secs,
};

/// A message with its options, sent as the wire's publish request (REST and the queue
/// WebSocket's `publish` frame).
pub(crate) struct PublishBody<'a, T: ?Sized> {
    pub(crate) message: &'a T,
    pub(crate) opts: &'a PublishOptions,
}

impl<T: Serialize + ?Sized> PublishBody<'_, T> {
    /// The wire request; fails only when `message` does not serialize to JSON.
    pub(crate) fn request(&self) -> serde_json::Result<wire::PublishRequest> {
        Ok(self.opts.request(Some(serde_json::to_value(self.message)?)))
    }
}

impl<T: Serialize + ?Sized> Serialize for PublishBody<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.request()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl SynapClient {
    /// On a client with failover, gives a publish without an idempotency key a random one
    /// before its first send, so a resend cannot make a second message; answers whether it
    /// did. A key the caller chose is kept; a `debounce` without a key is left for the server
    /// to refuse.
    pub(crate) fn ensure_key(&self, req: &mut wire::PublishRequest) -> bool {
        let add = self.fails_over()
            && self.generate_keys
            && req.idempotency_key.is_none()
            && req.debounce.is_none();
        if add {
            req.idempotency_key = Some(random_key());
        }
        add
    }

    /// Creates the queue `name` with `config` (fields left `None` take the server defaults).
    /// Creating an existing queue applies the given settings to it.
    ///
    /// # Errors
    /// `invalid_argument` for a bad name or an out-of-range setting.
    pub async fn queue_create(&self, name: &str, config: QueueConfig) -> Result<()> {
        let _: wire::QueueCreated = self
            .call(Method::POST, &["queue", name], Some(&config.to_wire()))
            .await?;
        Ok(())
    }

    /// Deletes a queue with its messages and DLQ; `false` if there was no such queue.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn queue_delete(&self, name: &str) -> Result<bool> {
        let r: wire::Deleted = self
            .call(Method::DELETE, &["queue", name], None::<&()>)
            .await?;
        Ok(r.deleted)
    }

    /// Names of all queues.
    ///
    /// # Errors
    /// Transport or server errors.
    pub async fn queue_list(&self) -> Result<Vec<String>> {
        let r: wire::QueueList = self
            .call(Method::GET, &["queue", "list"], None::<&()>)
            .await?;
        Ok(r.queues)
    }

    /// Publishes `message` (any `Serialize` value, sent as JSON) to `queue`. On a client with
    /// failover a publish without an idempotency key gets a random one
    /// ([`with_generated_keys`](Self::with_generated_keys)), and an unanswered publish is sent
    /// again with its key, so it is answered with the one message it made.
    ///
    /// # Errors
    /// `queue_full`, `payload_too_large`, `invalid_argument` (e.g. priority above 9), or
    /// `queue_not_found` when the server does not auto-create queues.
    pub async fn queue_publish<T: Serialize + ?Sized>(
        &self,
        queue: &str,
        message: &T,
        opts: PublishOptions,
    ) -> Result<PublishResult> {
        let mut body = PublishBody {
            message,
            opts: &opts,
        }
        .request()?;
        let generated = self.ensure_key(&mut body);
        let safe = body.idempotency_key.is_some();
        let mut r: PublishResult = self
            .call_tracked(
                Method::POST,
                &["queue", queue, "publish"],
                Some(&body),
                safe,
            )
            .await
            .result?;
        // A key of the client's own is seen again only when it resent the publish: to the
        // caller this is the one publish it made.
        r.duplicate &= !generated;
        Ok(r)
    }

    /// Publishes several messages in one request; all are accepted or none. Results are in
    /// the order given.
    ///
    /// # Errors
    /// As [`queue_publish`](Self::queue_publish).
    pub async fn queue_publish_batch<T: Serialize>(
        &self,
        queue: &str,
        messages: &[(T, PublishOptions)],
    ) -> Result<Vec<PublishResult>> {
        let mut batch = wire::PublishBatchRequest {
            messages: messages
                .iter()
                .map(|(message, opts)| PublishBody { message, opts }.request())
                .collect::<serde_json::Result<_>>()?,
        };
        let generated: Vec<bool> = batch
            .messages
            .iter_mut()
            .map(|m| self.ensure_key(m))
            .collect();
        let safe = batch.messages.iter().all(|m| m.idempotency_key.is_some());
        let mut r: wire::PublishedBatch = self
            .call_tracked(
                Method::POST,
                &["queue", queue, "publish_batch"],
                Some(&batch),
                safe,
            )
            .await
            .result?;
        for (m, generated) in r.messages.iter_mut().zip(generated) {
            m.duplicate &= !generated;
        }
        Ok(r.messages)
    }

    /// Leases one message, long-polling up to `opts.timeout` when none is ready. `None` when the
    /// wait ends with nothing.
    ///
    /// # Errors
    /// `queue_not_found`, a body that is not a `T` ([`SynapError::Decode`]; the message stays
    /// leased until its deadline), or transport errors.
    ///
    /// [`SynapError::Decode`]: crate::SynapError::Decode
    pub async fn queue_consume<T: DeserializeOwned>(
        &self,
        queue: &str,
        opts: Option<ConsumeOptions>,
    ) -> Result<Option<QueueMessage<T>>> {
        let mut batch = self.queue_consume_batch(queue, 1, opts).await?;
        Ok(batch.pop())
    }

    /// Leases up to `max` (1..=100) messages, long-polling like
    /// [`queue_consume`](Self::queue_consume); an empty list when the wait ends with nothing.
    ///
    /// # Errors
    /// As [`queue_consume`](Self::queue_consume).
    pub async fn queue_consume_batch<T: DeserializeOwned>(
        &self,
        queue: &str,
        max: u32,
        opts: Option<ConsumeOptions>,
    ) -> Result<Vec<QueueMessage<T>>> {
        let opts = opts.unwrap_or_default();
        let wait = opts.timeout.unwrap_or_default();
        let body = opts.request(max);
        let r: wire::Deliveries = self
            .call_long(&["queue", queue, "consume"], &body, wait)
            .await?;
        r.messages
            .into_iter()
            .map(|d| RawDelivery(d).decode())
            .collect()
    }

    /// Acknowledges a message under whatever lease it holds: it is done. On a client with
    /// failover, an ack sent again after an unanswered attempt that finds the message gone
    /// (`message_not_found`) counts as done: that attempt acked it.
    ///
    /// # Errors
    /// `message_not_found` for an unknown id, `lease_mismatch` when it is not leased.
    pub async fn queue_ack(&self, queue: &str, message_id: &str) -> Result<()> {
        self.queue_ack_with_lease(queue, message_id, None).await
    }

    /// Acknowledges the delivery holding `lease`; a late ack after a redelivery gets
    /// `lease_mismatch` (see [`SynapError::is_lease_mismatch`]) and leaves the new delivery be.
    ///
    /// # Errors
    /// As [`queue_ack`](Self::queue_ack).
    ///
    /// [`SynapError::is_lease_mismatch`]: crate::SynapError::is_lease_mismatch
    pub async fn queue_ack_with_lease(
        &self,
        queue: &str,
        message_id: &str,
        lease: Option<u64>,
    ) -> Result<()> {
        self.ack(queue, message_id, lease, None).await
    }

    /// Acknowledges the delivery holding `lease` (the current one for `None`) with the job's
    /// `result` (any `Serialize` value, sent as JSON), kept with the completed job for
    /// [`job`](Self::job) and [`wait_for`](Self::wait_for). An ack of a job cancelled while in
    /// flight settles it as cancelled and still keeps the result.
    ///
    /// # Errors
    /// As [`queue_ack`](Self::queue_ack), and `invalid_argument` for a result over the queue's
    /// `max_result_bytes` (64 KiB by default).
    pub async fn queue_ack_with_result<R: Serialize + ?Sized>(
        &self,
        queue: &str,
        message_id: &str,
        lease: Option<u64>,
        result: &R,
    ) -> Result<()> {
        let result = serde_json::to_value(result)?;
        self.ack(queue, message_id, lease, Some(result)).await
    }

    async fn ack(
        &self,
        queue: &str,
        message_id: &str,
        lease: Option<u64>,
        result: Option<serde_json::Value>,
    ) -> Result<()> {
        let body = wire::AckRequest {
            message_id: message_id.to_owned(),
            lease,
            result,
        };
        let sent = self
            .call_tracked::<_, wire::Success>(
                Method::POST,
                &["queue", queue, "ack"],
                Some(&body),
                true,
            )
            .await;
        match sent.result {
            Ok(_) => Ok(()),
            // Resent after a failover: an acked message is gone, so an earlier attempt did it.
            Err(e) if sent.resent && e.code() == Some("message_not_found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Acknowledges several `(message_id, lease)` pairs in one request. Refused acks are
    /// reported per message rather than failing the batch. After a resend (failover), messages
    /// found gone count as acked, as for [`queue_ack`](Self::queue_ack).
    ///
    /// # Errors
    /// `queue_not_found` or transport errors.
    pub async fn queue_ack_batch(
        &self,
        queue: &str,
        acks: &[(&str, Option<u64>)],
    ) -> Result<AckBatchResult> {
        let batch = wire::AckBatchRequest {
            acks: acks
                .iter()
                .map(|&(message_id, lease)| wire::AckRequest {
                    message_id: message_id.to_owned(),
                    lease,
                    result: None,
                })
                .collect(),
        };
        let sent = self
            .call_tracked::<_, AckBatchResult>(
                Method::POST,
                &["queue", queue, "ack_batch"],
                Some(&batch),
                true,
            )
            .await;
        let mut r = sent.result?;
        if sent.resent {
            // As for one ack: a message gone after a resend was acked by an earlier attempt.
            let before = r.failed.len();
            r.failed.retain(|f| f.code != "message_not_found");
            r.acked += (before - r.failed.len()) as u64;
        }
        Ok(r)
    }

    /// Rejects a message: `requeue = true` retries it (after the queue's retry delay, and
    /// dead-letters it once `max_retries` is spent); `false` dead-letters it at once.
    ///
    /// # Errors
    /// As [`queue_ack`](Self::queue_ack).
    pub async fn queue_nack(
        &self,
        queue: &str,
        message_id: &str,
        requeue: bool,
    ) -> Result<NackAction> {
        let opts = NackOptions {
            requeue,
            ..NackOptions::default()
        };
        self.queue_nack_with(queue, message_id, &opts).await
    }

    /// Rejects a message with an explicit retry delay, error text or lease, or snoozes it
    /// ([`NackOptions::snooze`]: back after the delay without spending an attempt, answered
    /// [`NackAction::Snoozed`]). On a client with failover a nack with a lease is sent again
    /// after an unanswered attempt; one without is not (the message may have been delivered to
    /// another worker meanwhile).
    ///
    /// # Errors
    /// As [`queue_ack`](Self::queue_ack); [`SynapError::Resent`] (still `is_lease_mismatch()`
    /// or `is_not_found()`) when a resend is refused because an earlier attempt most likely
    /// rejected the message already.
    pub async fn queue_nack_with(
        &self,
        queue: &str,
        message_id: &str,
        opts: &NackOptions,
    ) -> Result<NackAction> {
        let body = opts.request(message_id);
        // Without a lease a repeat could reject the next delivery of the message, made to
        // another worker after an earlier attempt requeued it.
        let safe = opts.lease.is_some();
        let sent = self
            .call_tracked::<_, wire::Nacked>(
                Method::POST,
                &["queue", queue, "nack"],
                Some(&body),
                safe,
            )
            .await;
        match sent.result {
            Ok(r) => Ok(r.action),
            Err(e) if sent.resent && (e.is_lease_mismatch() || e.is_not_found()) => {
                Err(SynapError::Resent(Box::new(e)))
            }
            Err(e) => Err(e),
        }
    }

    /// Extends a lease: the new deadline is `ack_deadline` from now. Workers on long tasks call
    /// this before the deadline to keep the message.
    ///
    /// # Errors
    /// `lease_mismatch` when the lease already ended or `lease` is stale.
    pub async fn queue_extend(
        &self,
        queue: &str,
        message_id: &str,
        ack_deadline: Duration,
        lease: Option<u64>,
    ) -> Result<()> {
        let body = wire::ExtendRequest {
            message_id: message_id.to_owned(),
            ack_deadline: secs(ack_deadline),
            lease,
        };
        let _: wire::Extended = self
            .call(Method::POST, &["queue", queue, "extend"], Some(&body))
            .await?;
        Ok(())
    }

    /// Statistics of a queue.
    ///
    /// # Errors
    /// `queue_not_found` or transport errors.
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats> {
        self.call(Method::GET, &["queue", queue, "stats"], None::<&()>)
            .await
    }

    /// Removes ready and delayed messages (in-flight ones stay); returns how many.
    ///
    /// # Errors
    /// `queue_not_found` or transport errors.
    pub async fn queue_purge(&self, queue: &str) -> Result<u64> {
        let r: wire::Purged = self
            .call(
                Method::POST,
                &["queue", queue, "purge"],
                Some(&wire::Empty {}),
            )
            .await?;
        Ok(r.purged)
    }

    /// A page of the queue's dead-letter queue, oldest first.
    ///
    /// # Errors
    /// `queue_not_found` or transport errors.
    pub async fn dlq_list(&self, queue: &str, offset: u64, limit: u64) -> Result<DlqPage> {
        let mut url = self.url(&["queue", queue, "dlq"]);
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string())
            .append_pair("limit", &limit.to_string());
        let page: wire::DlqPage = self.send_get(url).await?;
        Ok(page.into())
    }

    /// Moves dead-lettered messages back to the queue with attempts reset: the given ids, or
    /// all of them for `None`. Returns how many moved.
    ///
    /// # Errors
    /// `queue_not_found` or transport errors.
    pub async fn dlq_retry(&self, queue: &str, message_ids: Option<&[String]>) -> Result<u64> {
        let body = wire::DlqRetryRequest {
            message_ids: message_ids.map(<[String]>::to_vec),
        };
        let r: wire::Retried = self
            .call(Method::POST, &["queue", queue, "dlq", "retry"], Some(&body))
            .await?;
        Ok(r.retried)
    }

    /// Empties the dead-letter queue; returns how many entries were removed.
    ///
    /// # Errors
    /// `queue_not_found` or transport errors.
    pub async fn dlq_purge(&self, queue: &str) -> Result<u64> {
        let r: wire::Purged = self
            .call(
                Method::POST,
                &["queue", queue, "dlq", "purge"],
                Some(&wire::Empty {}),
            )
            .await?;
        Ok(r.purged)
    }
}
