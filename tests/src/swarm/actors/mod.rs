//! The swarm's actors, each with its own methods over the harness: a publisher, long-poll
//! consumers, streaming consumers (sessions), pub/sub subscribers, a KV user, a client
//! waiting for jobs, an operator pausing and rate-limiting queues, and a flow maker.

mod flow_maker;
mod hands;
mod job_waiter;
pub(crate) mod kv_user;
mod listener;
mod operator;
mod poller;
mod publisher;
mod streamer;

pub(crate) use flow_maker::FlowMaker;
pub(crate) use job_waiter::JobWaiter;
pub(crate) use listener::Listener;
pub(crate) use operator::Operator;
pub(crate) use poller::Poller;
pub(crate) use publisher::Publisher;
pub(crate) use streamer::Streamer;
