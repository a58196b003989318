//! Unit tests of the engine task: batched calls, give-back of unread answers, session sinks.

use synap_core::{EngineConfig, Json, PublishMessage};

use super::*;

fn task() -> EngineTask {
    let (events, _) = broadcast::channel(16);
    EngineTask::new(
        Engine::new(EngineConfig::default(), 7),
        events,
        Clock::new(),
    )
}

fn call(t: &mut EngineTask, cmd: Command) -> Result<Reply, Failure> {
    let (reply, mut rx) = oneshot::channel();
    t.on_request(Request::Call { cmd, reply });
    rx.try_recv().expect("answered at once")
}

fn publish(t: &mut EngineTask) {
    let message = PublishMessage {
        message: Some(Json::from_trusted_text("1")),
        ..PublishMessage::default()
    };
    let cmd = Command::Publish {
        queue: "q".into(),
        message,
    };
    call(t, cmd).expect("published");
}

fn consume_now() -> Command {
    Command::Consume {
        queue: "q".into(),
        wait_ms: 0,
        lease_ms: Some(60_000),
        max_messages: 1,
        consumer_id: None,
    }
}

/// (ready, in flight, nacked total) of queue `q`.
fn counts(t: &mut EngineTask) -> (u64, u64, u64) {
    match call(t, Command::Stats { queue: "q".into() }) {
        Ok(Reply::Stats(s)) => (s.ready, s.in_flight, s.nacked_total),
        other => panic!("stats: {other:?}"),
    }
}

/// Consumes at once, reading the reply.
fn take_one(t: &mut EngineTask, token: u64) -> Vec<Delivery> {
    let (reply, mut rx) = oneshot::channel();
    t.on_request(Request::Consume {
        cmd: consume_now(),
        token,
        reply,
    });
    rx.try_recv().expect("answered at once").expect("consumed")
}

#[test]
fn a_batch_of_calls_runs_in_order_with_one_reply_each() {
    let mut t = task();
    publish(&mut t);
    let first = take_one(&mut t, 1);
    let ack = Command::Ack {
        queue: "q".into(),
        message_id: first[0].message_id,
        lease: Some(first[0].lease),
        result: None,
    };
    let (reply, mut rx) = oneshot::channel();
    let cmds = vec![ack.clone(), ack, Command::Stats { queue: "q".into() }];
    t.on_request(Request::CallMany { cmds, reply });
    let replies = rx.try_recv().expect("answered at once");
    assert!(matches!(replies[0], Ok(Reply::Acked)));
    assert!(
        replies[1].is_err(),
        "the second ack runs after the first: settled already"
    );
    match &replies[2] {
        Ok(Reply::Stats(s)) => assert_eq!((s.ready, s.in_flight), (0, 0)),
        other => panic!("stats: {other:?}"),
    }
}

#[test]
fn an_immediate_answer_nobody_receives_is_given_back() {
    let mut t = task();
    publish(&mut t);
    let (reply, rx) = oneshot::channel();
    drop(rx);
    t.on_request(Request::Consume {
        cmd: consume_now(),
        token: 1,
        reply,
    });
    assert_eq!(counts(&mut t), (1, 0, 1), "back in the queue, as a nack");
    let again = take_one(&mut t, 2);
    assert_eq!(again[0].retry_count, 1, "it counted as a delivery attempt");
}

#[test]
fn an_abandoned_consume_gives_back_the_messages_it_never_read() {
    let mut t = task();
    publish(&mut t);
    let returned = take_one(&mut t, 1);
    assert_eq!(counts(&mut t), (0, 1, 0));
    t.on_request(Request::Abandon { token: 1, returned });
    assert_eq!(counts(&mut t), (1, 0, 1));
}

#[test]
fn giving_back_a_settled_or_redelivered_lease_changes_nothing() {
    let mut t = task();
    publish(&mut t);
    let first = take_one(&mut t, 1);
    t.on_request(Request::Abandon {
        token: 98,
        returned: first.clone(),
    });
    let second = take_one(&mut t, 2);
    // The first lease is over: giving it back again must not touch the new delivery.
    t.on_request(Request::Abandon {
        token: 99,
        returned: first.clone(),
    });
    assert_eq!(counts(&mut t), (0, 1, 1));
    let ack = Command::Ack {
        queue: "q".into(),
        message_id: second[0].message_id,
        lease: Some(second[0].lease),
        result: None,
    };
    call(&mut t, ack).expect("the second lease still holds");
}

fn attach(t: &mut EngineTask, credit: u32) -> (SessionId, mpsc::Receiver<SessionPush>) {
    let create = Command::CreateQueue {
        queue: "q".into(),
        config: None,
    };
    call(t, create).expect("declared");
    let (sink, rx) = mpsc::channel(SESSION_SINK);
    let (reply, mut answer) = oneshot::channel();
    let cmd = Command::Attach {
        queue: "q".into(),
        consumer_id: None,
        credit,
        lease_ms: Some(60_000),
    };
    t.on_request(Request::Attach { cmd, sink, reply });
    match answer.try_recv().expect("answered at once") {
        Ok(Reply::Attached { session_id, .. }) => (session_id, rx),
        other => panic!("attach: {other:?}"),
    }
}

#[test]
fn a_session_s_pushes_reach_its_sink() {
    let mut t = task();
    publish(&mut t);
    let (_, mut rx) = attach(&mut t, 4);
    publish(&mut t);
    let mut got = 0;
    while let Ok(SessionPush::Messages(m)) = rx.try_recv() {
        got += m.len();
    }
    assert_eq!(got, 2, "the queued message at attach, then the new one");
    assert_eq!(counts(&mut t), (0, 2, 0));
}

#[test]
fn a_session_whose_connection_is_gone_gives_back_on_its_next_push() {
    let mut t = task();
    let (_, rx) = attach(&mut t, 4);
    drop(rx);
    publish(&mut t);
    assert_eq!(
        counts(&mut t),
        (1, 0, 1),
        "pushed, found no reader, given back"
    );
}

#[test]
fn detaching_drops_the_sink_and_gives_back() {
    let mut t = task();
    let (session_id, mut rx) = attach(&mut t, 4);
    publish(&mut t);
    assert!(matches!(rx.try_recv(), Ok(SessionPush::Messages(_))));
    let reply = call(
        &mut t,
        Command::Detach {
            session_id,
            give_back: true,
        },
    );
    assert!(
        matches!(reply, Ok(Reply::Detached { returned: 1 })),
        "{reply:?}"
    );
    assert_eq!(counts(&mut t), (1, 0, 1));
    assert!(rx.try_recv().is_err(), "nothing more is pushed");
}

#[test]
fn deleting_the_queue_tells_the_session() {
    let mut t = task();
    publish(&mut t);
    let (_, mut rx) = attach(&mut t, 4);
    assert!(matches!(rx.try_recv(), Ok(SessionPush::Messages(_))));
    call(&mut t, Command::DeleteQueue { queue: "q".into() }).expect("deleted");
    assert!(matches!(rx.try_recv(), Ok(SessionPush::Ended)));
}
