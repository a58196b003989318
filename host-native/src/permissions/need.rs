//! What each engine command needs: the table of docs/securing.md.

use synap_core::Command;

use super::{Action, Kind};

/// What a command needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// Nothing: internal commands, or a reply filtered afterwards.
    None,
    /// One action on one resource.
    One(Kind, Action, &'a str),
    /// One action on each of several resources.
    Each(Kind, Action, Vec<&'a str>),
    /// One action on every resource of the kind (global stats).
    Every(Kind, Action),
    /// Subscription patterns, none wider than the caller's grants.
    Subscribe(&'a [String]),
    /// An operation on a subscriber by id: some `topic:…:subscribe` grant.
    Subscriber,
}

/// What each command needs: the table of docs/securing.md.
pub(crate) fn required(cmd: &Command) -> Need<'_> {
    use Action::{Admin, Consume, Publish, Read, Subscribe, Write};
    use Kind::{Kv, Queue, Topic};
    match cmd {
        Command::CreateQueue { queue, .. }
        | Command::ConfigureQueue { queue, .. }
        | Command::DeleteQueue { queue }
        | Command::DlqRetry { queue, .. }
        | Command::DlqPurge { queue }
        | Command::Purge { queue }
        | Command::Cancel { queue, .. }
        | Command::PutSchedule { queue, .. }
        | Command::DeleteSchedule { queue, .. }
        | Command::RunSchedule { queue, .. }
        | Command::PauseQueue { queue }
        | Command::ResumeQueue { queue } => Need::One(Queue, Admin, queue),
        Command::Publish { queue, .. } | Command::PublishBatch { queue, .. } => {
            Need::One(Queue, Publish, queue)
        }
        // Every job of a flow is a publish to its queue.
        Command::AddFlow { flow } => {
            let mut names = flow.queue_names();
            names.sort_unstable();
            names.dedup();
            Need::Each(Queue, Publish, names)
        }
        Command::Consume { queue, .. }
        | Command::Attach { queue, .. }
        | Command::Ack { queue, .. }
        | Command::Nack { queue, .. }
        | Command::Extend { queue, .. }
        | Command::Progress { queue, .. }
        // A worker whose downstream answered 429 holds the queue back.
        | Command::RateLimit { queue, .. } => Need::One(Queue, Consume, queue),
        Command::Stats { queue }
        | Command::DlqList { queue, .. }
        | Command::GetJob { queue, .. }
        | Command::WaitJob { queue, .. }
        | Command::ListSchedules { queue }
        | Command::Groups { queue, .. } => Need::One(Queue, Read, queue),
        Command::KvGet { key } | Command::KvExists { key } | Command::KvTtl { key } => {
            Need::One(Kv, Read, key)
        }
        Command::KvSet { key, .. }
        | Command::KvDel { key }
        | Command::KvExpire { key, .. }
        | Command::KvPersist { key }
        | Command::KvIncr { key, .. } => Need::One(Kv, Write, key),
        Command::KvMget { keys } => Need::Each(Kv, Read, keys.iter().map(String::as_str).collect()),
        Command::KvMset { entries } => {
            Need::Each(Kv, Write, entries.iter().map(|e| e.key.as_str()).collect())
        }
        Command::KvStats => Need::Every(Kv, Read),
        Command::PubsubStats => Need::Every(Topic, Subscribe),
        Command::PubsubPublish { topic, .. } => Need::One(Topic, Publish, topic),
        Command::Subscribe { patterns, .. } => Need::Subscribe(patterns),
        Command::Unsubscribe { .. } | Command::PubsubPoll { .. } | Command::PubsubCredit { .. } => {
            Need::Subscriber
        }
        // Filtered replies, and commands a transport sends for its own connections.
        Command::ListQueues
        | Command::KvKeys { .. }
        | Command::CancelWait { .. }
        | Command::SessionCredit { .. }
        | Command::Detach { .. }
        | Command::GiveBack { .. }
        | Command::DropConsumers
        // The host's own: schedule runs due and the catch-up after a restart.
        | Command::Tick
        | Command::Resume { .. }
        // Needs `read` on the flow's root queue, known once it is found: `GET /flows/{id}`
        // checks it on the reply.
        | Command::GetFlow { .. } => Need::None,
    }
}
