//! The swarm's actors, each with its own methods over the harness: a publisher, long-poll
//! consumers, streaming consumers (sessions), pub/sub subscribers, a KV user and a client
//! waiting for jobs.

mod hands;
mod job_waiter;
pub(crate) mod kv_user;
mod listener;
mod poller;
mod publisher;
mod streamer;

pub(crate) use job_waiter::JobWaiter;
pub(crate) use listener::Listener;
pub(crate) use poller::Poller;
pub(crate) use publisher::Publisher;
pub(crate) use streamer::Streamer;
