//! Permissions (DESIGN.md §15): what an API key or user may do, and the one check every
//! transport applies (REST, queue WebSocket, pub/sub WebSocket and SSE, `/events`, the command
//! envelope, SynapRPC).
//!
//! A permission is `kind:pattern:action`:
//! - kinds and actions: `queue` (`publish`, `consume`, `read`, `admin`), `kv` (`read`,
//!   `write`), `topic` (`publish`, `subscribe`), `server` (`read`: resources `metrics` and
//!   `debug`); the action `*` is every action of the kind;
//! - the pattern matches names with `*` standing for any run of characters (dots and colons
//!   included); for `topic`, a last segment `#` (`news.#`, or `#` alone) matches the prefix
//!   itself and everything below it, as in subscriptions.
//!
//! The kind and action are the text before the first `:` and after the last one, so a KV
//! pattern may hold colons (`kv:video:*:read`).
//!
//! Every engine command maps to what it needs (`required`); transports call
//! `EngineHandle::call_as` (check, call, filter the reply) or `Principal::check` before the
//! command reaches the engine, so a refused command has no effect.

use std::fmt;
use std::sync::{Arc, LazyLock};

use synap_core::{Command, Event, Reply};

/// The kind of resource a permission is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Queues, by name.
    Queue,
    /// KV keys.
    Kv,
    /// Pub/sub topics.
    Topic,
    /// Server operations: `metrics`, `debug`.
    Server,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Kv => "kv",
            Self::Topic => "topic",
            Self::Server => "server",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queue" => Self::Queue,
            "kv" => Self::Kv,
            "topic" => Self::Topic,
            "server" => Self::Server,
            _ => return None,
        })
    }

    /// The actions of this kind, as a bit set.
    fn all(self) -> u8 {
        match self {
            Self::Queue => {
                Action::Publish.bit()
                    | Action::Consume.bit()
                    | Action::Read.bit()
                    | Action::Admin.bit()
            }
            Self::Kv => Action::Read.bit() | Action::Write.bit(),
            Self::Topic => Action::Publish.bit() | Action::Subscribe.bit(),
            Self::Server => Action::Read.bit(),
        }
    }
}

/// What a caller does to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Queue or topic publish.
    Publish,
    /// Queue consume, ack, nack, extend.
    Consume,
    /// Queue stats, DLQ list; KV reads; server metrics and debug.
    Read,
    /// Queue create/config, delete, purge, DLQ retry and purge.
    Admin,
    /// KV writes.
    Write,
    /// Topic subscribe.
    Subscribe,
}

impl Action {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Consume => "consume",
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Write => "write",
            Self::Subscribe => "subscribe",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "publish" => Self::Publish,
            "consume" => Self::Consume,
            "read" => Self::Read,
            "admin" => Self::Admin,
            "write" => Self::Write,
            "subscribe" => Self::Subscribe,
            _ => return None,
        })
    }
}

/// A name pattern: `*` is any run of characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Glob {
    /// `*`: every name.
    Any,
    /// No `*`.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// Anything else: the literal parts between the stars (first and last may be empty).
    Parts(Vec<String>),
}

impl Glob {
    fn new(pattern: &str) -> Self {
        if pattern == "*" {
            return Self::Any;
        }
        let parts: Vec<&str> = pattern.split('*').collect();
        match parts.as_slice() {
            [one] => Self::Exact((*one).to_owned()),
            [prefix, ""] => Self::Prefix((*prefix).to_owned()),
            _ => {
                // Runs of stars are one star.
                let mut out: Vec<String> = Vec::with_capacity(parts.len());
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 && i + 1 < parts.len() && p.is_empty() {
                        continue;
                    }
                    out.push((*p).to_owned());
                }
                if out.iter().all(String::is_empty) {
                    Self::Any
                } else {
                    Self::Parts(out)
                }
            }
        }
    }

    /// Whether the glob matches `name`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => e == name,
            Self::Prefix(p) => name.starts_with(p.as_str()),
            Self::Parts(parts) => {
                let toks: Vec<Tok> = name.bytes().map(Tok::Lit).collect();
                parts_match(parts, &toks)
            }
        }
    }

    /// Whether the glob matches every string `toks` can stand for, each `Tok::Wild` standing
    /// for any run of characters: only a `*` of the glob can take a wildcard in, so this is
    /// sound (never true when some instance is not matched).
    fn covers(&self, toks: &[Tok]) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => lit_eq(e.as_bytes(), toks),
            Self::Prefix(p) => toks.len() >= p.len() && lit_eq(p.as_bytes(), &toks[..p.len()]),
            Self::Parts(parts) => parts_match(parts, toks),
        }
    }
}

/// A character of a name, or a wildcard of a subscription pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    Wild,
}

fn lit_eq(lit: &[u8], toks: &[Tok]) -> bool {
    lit.len() == toks.len() && lit.iter().zip(toks).all(|(b, t)| *t == Tok::Lit(*b))
}

fn find(lit: &[u8], toks: &[Tok]) -> Option<usize> {
    if lit.is_empty() {
        return Some(0);
    }
    (0..=toks.len().checked_sub(lit.len())?).find(|&i| lit_eq(lit, &toks[i..i + lit.len()]))
}

/// `parts` are the literals between stars (at least two): first must start the text, last
/// must end it, the middle ones appear in order, leftmost first (which is optimal).
fn parts_match(parts: &[String], toks: &[Tok]) -> bool {
    let (first, last) = (parts[0].as_bytes(), parts[parts.len() - 1].as_bytes());
    if toks.len() < first.len() + last.len()
        || !lit_eq(first, &toks[..first.len()])
        || !lit_eq(last, &toks[toks.len() - last.len()..])
    {
        return false;
    }
    let mut rest = &toks[first.len()..toks.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match find(mid.as_bytes(), rest) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

/// One parsed permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    kind: Kind,
    /// The pattern as globs (a topic's trailing `#` gives two).
    globs: Vec<Glob>,
    /// Granted actions, as bits.
    actions: u8,
}

impl Grant {
    /// Parses `kind:pattern:action`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("permission {text:?}: {why}"));
        let (Some((kind, rest)), Some((_, action))) = (text.split_once(':'), text.rsplit_once(':'))
        else {
            return bad("expected kind:pattern:action");
        };
        let Some(pattern) = rest.rsplit_once(':').map(|(p, _)| p) else {
            return bad("expected kind:pattern:action");
        };
        let Some(kind) = Kind::parse(kind) else {
            return bad("the kind must be queue, kv, topic or server");
        };
        let actions = if action == "*" {
            kind.all()
        } else {
            match Action::parse(action) {
                Some(a) if kind.all() & a.bit() != 0 => a.bit(),
                _ => {
                    let valid = match kind {
                        Kind::Queue => "publish, consume, read, admin or *",
                        Kind::Kv => "read, write or *",
                        Kind::Topic => "publish, subscribe or *",
                        Kind::Server => "read or *",
                    };
                    return bad(&format!(
                        "unknown action {action:?} for {} (use {valid})",
                        kind.name()
                    ));
                }
            }
        };
        if pattern.is_empty() {
            return bad("the pattern is empty");
        }
        if synap_core::input::has_control(pattern) {
            return bad("the pattern holds control characters");
        }
        let globs = match kind {
            Kind::Queue => {
                let ok = pattern
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-*".contains(&b));
                if !ok {
                    return bad("a queue pattern holds A-Za-z0-9._:- and *");
                }
                vec![Glob::new(pattern)]
            }
            Kind::Topic => {
                topic_globs(pattern).map_err(|why| format!("permission {text:?}: {why}"))?
            }
            Kind::Kv | Kind::Server => vec![Glob::new(pattern)],
        };
        Ok(Self {
            kind,
            globs,
            actions,
        })
    }

    fn grants(&self, kind: Kind, action: Action, name: &str) -> bool {
        self.kind == kind
            && self.actions & action.bit() != 0
            && self.globs.iter().any(|g| g.matches(name))
    }
}

/// A topic permission pattern as globs: `news.#` is `news` and `news.*`; `#` is `*`.
fn topic_globs(pattern: &str) -> Result<Vec<Glob>, String> {
    if pattern == "#" {
        return Ok(vec![Glob::Any]);
    }
    let (head, tail) = match pattern.strip_suffix(".#") {
        Some(head) => (head, true),
        None => (pattern, false),
    };
    if head.contains('#') {
        return Err("# may only be the last segment of a topic pattern".into());
    }
    Ok(if tail {
        vec![Glob::new(head), Glob::new(&format!("{head}.*"))]
    } else {
        vec![Glob::new(head)]
    })
}

/// A subscription pattern as token strings, each standing for a set of topics (their union is
/// every topic the pattern matches): `*` is a wildcard, a last `#` is either nothing or a dot
/// and a wildcard.
fn subscription_forms(pattern: &str) -> Vec<Vec<Tok>> {
    let toks = |s: &str| -> Vec<Tok> {
        s.bytes()
            .map(|b| if b == b'*' { Tok::Wild } else { Tok::Lit(b) })
            .collect()
    };
    if pattern == "#" {
        return vec![vec![Tok::Wild]];
    }
    match pattern.strip_suffix(".#") {
        Some(head) => {
            let bare = toks(head);
            let mut below = bare.clone();
            below.extend([Tok::Lit(b'.'), Tok::Wild]);
            vec![bare, below]
        }
        // A `#` elsewhere is refused by the engine; as a wildcard here it is never wider than
        // what it could match.
        None => vec![
            toks(pattern)
                .into_iter()
                .map(|t| if t == Tok::Lit(b'#') { Tok::Wild } else { t })
                .collect(),
        ],
    }
}

/// Who is calling and what they may do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The key's or user's name (`anonymous` with auth off).
    pub(crate) name: String,
    /// `None`: full access. Otherwise the parsed grants, with their texts.
    grants: Option<Vec<(String, Grant)>>,
}

/// A shared principal, as requests and connections carry it.
pub(crate) type Caller = Arc<Principal>;

static FULL: LazyLock<Caller> = LazyLock::new(|| {
    Arc::new(Principal {
        name: "anonymous".into(),
        grants: None,
    })
});

impl Principal {
    /// `name` limited to `permissions` (full access when `None`); an invalid permission is an
    /// error naming it.
    pub(crate) fn new(name: &str, permissions: Option<&[String]>) -> Result<Self, String> {
        let grants = permissions
            .map(|list| {
                list.iter()
                    .map(|p| Grant::parse(p).map(|g| (p.clone(), g)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            name: name.to_owned(),
            grants,
        })
    }

    /// Full access under `name`.
    pub(crate) fn full(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            grants: None,
        }
    }

    /// The caller of a server without auth.
    pub(crate) fn anonymous() -> Caller {
        Arc::clone(&FULL)
    }

    /// Whether the caller has full access (no `permissions` list).
    pub(crate) fn full_access(&self) -> bool {
        self.grants.is_none()
    }

    /// The permission texts (`["*"]` for full access).
    pub(crate) fn permission_texts(&self) -> Vec<String> {
        match &self.grants {
            None => vec!["*".into()],
            Some(g) => g.iter().map(|(t, _)| t.clone()).collect(),
        }
    }

    /// Whether the caller may `action` the resource `name` of `kind`.
    pub(crate) fn may(&self, kind: Kind, action: Action, name: &str) -> bool {
        match &self.grants {
            None => true,
            Some(g) => g.iter().any(|(_, g)| g.grants(kind, action, name)),
        }
    }

    /// Whether the caller has any permission on the queue `name` (for `/queue/list`).
    pub(crate) fn sees_queue(&self, name: &str) -> bool {
        match &self.grants {
            None => true,
            Some(g) => g
                .iter()
                .any(|(_, g)| g.kind == Kind::Queue && g.globs.iter().any(|gl| gl.matches(name))),
        }
    }

    /// `may`, as a result naming what is missing.
    pub(crate) fn require(&self, kind: Kind, action: Action, name: &str) -> Result<(), Denied> {
        if self.may(kind, action, name) {
            Ok(())
        } else {
            Err(self.denied(kind, action, name))
        }
    }

    fn denied(&self, kind: Kind, action: Action, name: &str) -> Denied {
        Denied(format!(
            "{:?} may not {} {} {name:?} (needs the permission {}:{name}:{})",
            self.name,
            action.name(),
            kind.name(),
            kind.name(),
            action.name()
        ))
    }

    /// Whether every topic `pattern` can match is matched by one of the caller's
    /// `topic:…:subscribe` grants (each form of the pattern by one grant; see docs/securing.md).
    pub(crate) fn may_subscribe(&self, pattern: &str) -> bool {
        let Some(grants) = &self.grants else {
            return true;
        };
        subscription_forms(pattern).iter().all(|form| {
            grants.iter().any(|(_, g)| {
                g.kind == Kind::Topic
                    && g.actions & Action::Subscribe.bit() != 0
                    && g.globs.iter().any(|gl| gl.covers(form))
            })
        })
    }

    /// Checks subscription patterns.
    pub(crate) fn check_subscribe(&self, patterns: &[String]) -> Result<(), Denied> {
        match patterns.iter().find(|p| !self.may_subscribe(p)) {
            None => Ok(()),
            Some(p) => Err(Denied(format!(
                "{:?} may not subscribe to topic pattern {p:?}: a topic:…:subscribe permission \
                 must match every topic it can match",
                self.name
            ))),
        }
    }

    /// Checks that the caller may run `cmd` (`ListQueues` and `KvKeys` are always allowed;
    /// their replies are filtered by `filter`).
    pub(crate) fn check(&self, cmd: &Command) -> Result<(), Denied> {
        if self.grants.is_none() {
            return Ok(());
        }
        match required(cmd) {
            Need::None => Ok(()),
            Need::One(kind, action, name) => self.require(kind, action, name),
            Need::Each(kind, action, names) => names
                .into_iter()
                .try_for_each(|n| self.require(kind, action, n)),
            Need::Every(kind, action) => {
                // Every name: a grant whose pattern is `*`.
                if self.may_all(kind, action) {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{:?} may not {} every {} (needs the permission {}:*:{})",
                        self.name,
                        action.name(),
                        kind.name(),
                        kind.name(),
                        action.name()
                    )))
                }
            }
            Need::Subscribe(patterns) => self.check_subscribe(patterns),
            Need::Subscriber => {
                if self
                    .grants
                    .iter()
                    .flatten()
                    .any(|(_, g)| g.kind == Kind::Topic && g.actions & Action::Subscribe.bit() != 0)
                {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{:?} may not use subscribers (needs a topic:…:subscribe permission)",
                        self.name
                    )))
                }
            }
        }
    }

    fn may_all(&self, kind: Kind, action: Action) -> bool {
        match &self.grants {
            None => true,
            Some(g) => g.iter().any(|(_, g)| {
                g.kind == kind && g.actions & action.bit() != 0 && g.globs.contains(&Glob::Any)
            }),
        }
    }

    /// Drops from a reply what the caller may not see: queues it has no permission on
    /// (`ListQueues`), keys it may not read (`KvKeys`).
    pub(crate) fn filter(&self, reply: &mut Reply) {
        if self.grants.is_none() {
            return;
        }
        match reply {
            Reply::Queues { queues } => queues.retain(|q| self.sees_queue(q)),
            Reply::KvKeys { keys } => keys.retain(|k| self.may(Kind::Kv, Action::Read, k)),
            _ => {}
        }
    }

    /// Whether the caller may see an engine event on `/events`: queue events need `read` on
    /// their queue, pub/sub events `subscribe` on their topic, key expiries `read` on the key;
    /// events naming no resource only full access.
    pub(crate) fn sees_event(&self, event: &Event) -> bool {
        if self.grants.is_none() {
            return true;
        }
        let queue = |q: &str| self.may(Kind::Queue, Action::Read, q);
        match event {
            Event::Observed(o) => queue(&o.queue),
            Event::Delivered { messages, .. } | Event::Pushed { messages, .. } => {
                messages.iter().all(|d| queue(&d.queue))
            }
            Event::PubSub { message, .. } => {
                self.may(Kind::Topic, Action::Subscribe, &message.topic)
            }
            Event::KeyExpired { key, .. } => self.may(Kind::Kv, Action::Read, key),
            Event::Progress { queue: q, .. } => queue(q),
            Event::JobWaited { job, .. } => queue(&job.queue),
            Event::WaitTimedOut { .. } | Event::SessionEnded { .. } => false,
        }
    }
}

/// A refusal: the message names the caller, the action and the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denied(pub(crate) String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

mod need;
pub(crate) use need::{Need, required};

#[cfg(test)]
mod tests;
