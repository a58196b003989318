//! Helpers of the flow-control transport tests (flow_transports.rs): raw WebSocket and
//! SynapRPC connections and the calls the tests repeat.

use crate::rpc_common::{PUSH_ID, Rpc, V, s};
use crate::server_common::{Api, Ws, ws_connect, ws_next, ws_send};
use serde_json::{Value, json};

/// The `n` of each delivered JSON message.
pub(crate) fn ns(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["message"]["n"].as_u64().expect("n"))
        .collect()
}

/// Publishes `{"n": n}` over REST.
pub(crate) async fn publish(api: &Api, queue: &str, n: u64) {
    api.publish(queue, json!({"message": {"n": n}})).await;
}

/// A queue WebSocket whose frames are read by kind: frames not asked for yet are kept.
pub(crate) struct WsConn {
    ws: Ws,
    stash: Vec<Value>,
    next_id: u64,
}

impl WsConn {
    /// Connects to `path` and reads the `connected` frame.
    pub(crate) async fn open(api: &Api, path: &str) -> Self {
        let mut ws = ws_connect(&api.srv.ws_url(path)).await;
        let hello = ws_next(&mut ws).await.expect("hello");
        assert_eq!(hello["type"], "connected", "{hello}");
        Self {
            ws,
            stash: Vec::new(),
            next_id: 1,
        }
    }

    /// The next frame `pick` takes, from the stash or the socket.
    pub(crate) async fn next_where(&mut self, pick: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.stash.iter().position(&pick) {
            return self.stash.remove(i);
        }
        loop {
            let frame = ws_next(&mut self.ws).await.expect("the socket is open");
            if pick(&frame) {
                return frame;
            }
            self.stash.push(frame);
        }
    }

    /// The next `n` pushed deliveries.
    pub(crate) async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next_where(|f| f["type"] == "message").await);
        }
        out
    }

    /// Sends `op` with a fresh id and returns its answer.
    pub(crate) async fn call(&mut self, mut op: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        op["id"] = json!(id);
        ws_send(&mut self.ws, &op).await;
        self.next_where(|f| f["type"] != "message" && f["id"] == id)
            .await
    }

    /// Acks a delivery under its lease.
    pub(crate) async fn ack(&mut self, d: &Value) {
        let op = json!({"op": "ack", "message_id": d["message_id"], "lease": d["lease"]});
        let answer = self.call(op).await;
        assert_eq!(answer["type"], "ok", "{answer}");
    }
}

pub(crate) async fn rpc(api: &Api) -> Rpc {
    Rpc::connect(api.srv.rpc_addr.expect("SynapRPC on")).await
}

/// The next push on `c` (answers to other requests stay in its stash).
pub(crate) async fn push(c: &mut Rpc) -> V {
    if let Some(i) = c.stash.iter().position(|(id, _)| *id == PUSH_ID) {
        return c.stash.remove(i).1.expect("an Ok push");
    }
    loop {
        let (id, result) = c.recv().await.expect("connection open");
        if id == PUSH_ID {
            return result.expect("an Ok push");
        }
        c.stash.push((id, result));
    }
}

/// `QPUBLISH queue body` with `group` as the sixth argument when given; the message id.
pub(crate) async fn rpc_publish(c: &mut Rpc, queue: &str, body: &str, group: Option<&str>) -> V {
    let mut args = vec![s(queue), V::Bytes(body.as_bytes().to_vec())];
    if let Some(g) = group {
        args.extend([V::Null, V::Null, V::Null, s(g)]);
    }
    c.ok("QPUBLISH", &args).await
}

/// The `payload` text of a pushed or consumed message.
pub(crate) fn body(v: &V) -> String {
    v.get("payload").expect("payload").text().to_owned()
}

/// A field of a `QSTATS` answer as an integer.
pub(crate) async fn stat(c: &mut Rpc, queue: &str, field: &str) -> i64 {
    let st = c.ok("QSTATS", &[s(queue)]).await;
    st.get(field).unwrap_or_else(|| panic!("no {field}")).int()
}

/// A SynapRPC map with text keys.
pub(crate) fn map<const N: usize>(pairs: [(&str, V); N]) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// `{paused: b}`, the answer of `QPAUSE` and `QRESUME`.
pub(crate) fn paused(b: bool) -> V {
    map([("paused", V::Bool(b))])
}

/// The `code` of an envelope command that must fail (`none` when it has none).
pub(crate) async fn refused(api: &Api, command: &str, payload: Value) -> String {
    let v = api.cmd(command, payload).await;
    assert_eq!(v["success"], false, "{v}");
    v["code"].as_str().unwrap_or("none").to_owned()
}
