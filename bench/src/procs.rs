//! The servers under test: `synap-server` (the release binary beside this one), Debian's
//! `beanstalkd` and `nats-server`, each on free loopback ports with its own temporary data
//! directory. Dropping a `Proc` kills exactly its PID, reaps it and removes the directory.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_WAIT: Duration = Duration::from_secs(15);

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("synap-bench-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process; dropping it stops that PID and removes its directories (data, config).
pub(crate) struct Proc {
    child: Child,
    name: &'static str,
    _dirs: Vec<TempDir>,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this PID; `wait` reaps it before the directory goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How Synap keeps its state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Durability {
    /// `--in-memory`.
    Memory,
    /// `--fsync interval` (every 10 ms).
    Interval,
    /// `--fsync always` (fsync before each reply, shared by concurrent turns).
    Always,
}

impl Durability {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Memory => "in-memory",
            Self::Interval => "fsync interval",
            Self::Always => "fsync always",
        }
    }
    /// The peers' counterpart: memory storage, or fsync on every write.
    pub(crate) fn durable(self) -> bool {
        self != Self::Memory
    }
}

/// The release `synap-server` next to this binary (`target/release/`).
pub(crate) fn synap_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin = exe
        .parent()
        .map(|dir| dir.join("synap-server"))
        .unwrap_or_default();
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build it first with `cargo build --release -p synap-server`",
            bin.display()
        ))
    }
}

/// How the benchmark's clients authenticate to `synap-server` (`--auth`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Auth {
    /// No auth: the server has no key (the default).
    None,
    /// One API key with full access (a plain string in `server.api_keys`).
    Key,
    /// One API key limited to the benchmark's queues ([`SCOPED_PERMISSION`]), so every
    /// command also goes through the permission check.
    Scoped,
}

/// The scoped key's one permission: every action on the queues the benchmark names
/// (`bench-<pid>-<run>-<tag>`, created by the benchmark itself, so `admin` is needed too).
pub(crate) const SCOPED_PERMISSION: &str = "queue:bench-*:*";

impl Auth {
    /// The key the clients send (Bearer on HTTP, `AUTH` on SynapRPC), if any: random per
    /// process, so no fixed secret is ever configured.
    pub(crate) fn key(self) -> Option<&'static str> {
        static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        (self != Self::None).then(|| {
            KEY.get_or_init(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!("bench-key-{}-{nanos:x}", std::process::id())
            })
            .as_str()
        })
    }

    /// The `--config` file for this mode, if any: the key as the only `server.api_keys`
    /// entry.
    pub(crate) fn config(self) -> Option<String> {
        let key = self.key()?;
        Some(match self {
            Self::None => unreachable!("no key without auth"),
            Self::Key => format!("server:\n  api_keys:\n    - \"{key}\"\n"),
            Self::Scoped => format!(
                "server:\n  api_keys:\n    - {{ name: bench, key: \"{key}\", permissions: [\"{SCOPED_PERMISSION}\"] }}\n"
            ),
        })
    }

    /// How the run is described in the report.
    pub(crate) fn label(self) -> String {
        match self {
            Self::None => "no auth".into(),
            Self::Key => "one API key with full access (Bearer / AUTH)".into(),
            Self::Scoped => {
                format!("one scoped API key, permissions [{SCOPED_PERMISSION}] (Bearer / AUTH)")
            }
        }
    }
}

/// A running Synap server with its HTTP and SynapRPC addresses.
pub(crate) struct Synap {
    pub(crate) proc: Proc,
    pub(crate) http: SocketAddr,
    pub(crate) rpc: SocketAddr,
}

/// The `--data-dir`/`--fsync` flags of `mode` (with `dir`), or `--in-memory`.
pub(crate) fn mode_args(mode: Durability, dir: Option<&Path>) -> Vec<std::ffi::OsString> {
    match (mode, dir) {
        (Durability::Memory, _) | (_, None) => vec!["--in-memory".into()],
        (m, Some(d)) => {
            let policy = if m == Durability::Always {
                "always"
            } else {
                "interval"
            };
            vec![
                "--data-dir".into(),
                d.as_os_str().to_owned(),
                "--fsync".into(),
                policy.into(),
            ]
        }
    }
}

/// Starts `synap-server` on free ports in `mode` (with `threads` worker threads, if given, and
/// a config file holding the key of `auth`), and waits until it logs both addresses.
pub(crate) fn start_synap(
    bin: &Path,
    mode: Durability,
    threads: Option<usize>,
    auth: Auth,
) -> Result<Synap, String> {
    let dir = match mode {
        Durability::Memory => None,
        _ => Some(TempDir::new("synap")?),
    };
    let mut args: Vec<std::ffi::OsString> = ["--bind", "127.0.0.1:0", "--rpc-bind", "127.0.0.1:0"]
        .map(Into::into)
        .to_vec();
    // The config file lives in its own directory: the data directory is the server's.
    let config_dir = match auth.config() {
        None => None,
        Some(yaml) => {
            let d = TempDir::new("config")?;
            let file = d.path().join("synap.yaml");
            std::fs::write(&file, yaml).map_err(|e| format!("{}: {e}", file.display()))?;
            args.push("--config".into());
            args.push(file.into_os_string());
            Some(d)
        }
    };
    if let Some(n) = threads {
        args.push("--threads".into());
        args.push(n.to_string().into());
    }
    args.extend(mode_args(mode, dir.as_ref().map(TempDir::path)));
    spawn_synap(bin, &args, dir.into_iter().chain(config_dir).collect())
}

/// Spawns `synap-server` with `args` and waits until it logs its HTTP and SynapRPC addresses;
/// the process owns `dirs` (removed when it is dropped).
pub(crate) fn spawn_synap(
    bin: &Path,
    args: &[std::ffi::OsString],
    dirs: Vec<TempDir>,
) -> Result<Synap, String> {
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("SYNAP_API_KEY")
        .env_remove("SYNAP_CLUSTER_SECRET")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let proc = Proc {
        child,
        name: "synap-server",
        _dirs: dirs,
    };
    let (tx, rx) = std::sync::mpsc::channel::<(bool, SocketAddr)>();
    // Keep draining the log so the server never blocks on a full pipe; pass on what is not
    // routine, since a benchmark run should surface it.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            if let Some(a) = field(&line, "rpc=").filter(|_| line.contains("SynapRPC")) {
                let _ = tx.send((false, a));
            } else if let Some(a) = field(&line, "addr=").filter(|_| line.contains("listening")) {
                let _ = tx.send((true, a));
            } else if !line.contains(" INFO ") {
                eprintln!("\nsynap-server: {line}");
            }
        }
    });
    let (mut http, mut rpc) = (None, None);
    let until = Instant::now() + START_WAIT;
    while http.is_none() || rpc.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, a)) => http = Some(a),
            Ok((false, a)) => rpc = Some(a),
            Err(_) => return Err("synap-server did not log its addresses within 15 s".into()),
        }
    }
    Ok(Synap {
        proc,
        http: http.expect("set above"),
        rpc: rpc.expect("set above"),
    })
}

/// The address after `key` in a log line.
fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(key)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `line` without terminal colour escapes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A port free on loopback right now (the OS picks it; the peer binds it next).
pub(crate) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Where a program is on `PATH`, with the usual sbin folders added (Debian puts
/// `nats-server` in /usr/sbin).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Spawns a peer listening on `port` and waits until it accepts connections.
fn spawn_peer(
    name: &'static str,
    bin: &Path,
    args: &[String],
    port: u16,
    dir: Option<TempDir>,
) -> Result<(Proc, SocketAddr), String> {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let proc = Proc {
        child,
        name,
        _dirs: dir.into_iter().collect(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + START_WAIT;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > until {
            return Err(format!(
                "{name} did not accept connections on {addr} within 15 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, addr))
}

/// Starts `beanstalkd` in memory, or with a binlog fsynced after every write (`-b DIR -f 0`).
pub(crate) fn start_beanstalkd(bin: &Path, durable: bool) -> Result<(Proc, SocketAddr), String> {
    let port = free_port()?;
    let mut args = vec![
        "-l".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    let dir = if durable {
        let d = TempDir::new("beanstalkd")?;
        args.extend([
            "-b".into(),
            d.path().display().to_string(),
            "-f".into(),
            "0".into(),
        ]);
        Some(d)
    } else {
        None
    };
    spawn_peer("beanstalkd", bin, &args, port, dir)
}

/// Starts `nats-server` with JetStream, its store in a temporary directory.
pub(crate) fn start_nats(bin: &Path) -> Result<(Proc, SocketAddr), String> {
    let port = free_port()?;
    let dir = TempDir::new("nats")?;
    let args = vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-js".into(),
        "-sd".into(),
        dir.path().display().to_string(),
    ];
    spawn_peer("nats-server", bin, &args, port, Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_addresses_parse_with_or_without_colours() {
        let rpc = "2026-12-01T00:00:00Z  INFO synap_server: SynapRPC accepting connections rpc=127.0.0.1:4000";
        assert_eq!(
            field(rpc, "rpc="),
            Some(SocketAddr::from(([127, 0, 0, 1], 4000)))
        );
        let coloured = "\u{1b}[32m INFO\u{1b}[0m synap_server: synap-server listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4001";
        let plain = strip_ansi(coloured);
        assert_eq!(
            field(&plain, "addr="),
            Some(SocketAddr::from(([127, 0, 0, 1], 4001)))
        );
        assert_eq!(field("no address here", "addr="), None);
    }

    #[test]
    fn auth_modes_give_their_config() {
        assert_eq!(Auth::None.key(), None);
        assert_eq!(Auth::None.config(), None);
        let key = Auth::Key.key().expect("a key");
        assert_eq!(Auth::Scoped.key(), Some(key), "one key per process");
        let full = Auth::Key.config().expect("config");
        assert!(full.contains(&format!("- \"{key}\"")), "{full}");
        assert!(!full.contains("permissions"), "{full}");
        let scoped = Auth::Scoped.config().expect("config");
        assert!(
            scoped.contains(&format!("permissions: [\"{SCOPED_PERMISSION}\"]")),
            "{scoped}"
        );
    }

    /// Starts the `synap-server` built beside this test binary (`target/debug` or
    /// `target/release`) with a scoped key, when there is one, and checks the key is needed
    /// and accepted on the benchmark's queues only.
    #[test]
    fn a_scoped_server_takes_the_key_on_bench_queues_only() {
        let Some(bin) = std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.join("synap-server")))
            .filter(|b| b.is_file())
        else {
            eprintln!("synap-server is not built; skipped");
            return;
        };
        let s = start_synap(&bin, Durability::Memory, Some(1), Auth::Scoped).expect("start");
        let key = Auth::Scoped.key().expect("key");
        let post = |path: &str, key: Option<&str>| -> u16 {
            let auth = key.map(|k| format!("authorization: Bearer {k}\r\n"));
            let req = format!(
                "POST {path} HTTP/1.1\r\nhost: {}\r\n{}content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
                s.http,
                auth.unwrap_or_default()
            );
            let mut tcp = TcpStream::connect(s.http).expect("connect");
            std::io::Write::write_all(&mut tcp, req.as_bytes()).expect("write");
            let mut answer = String::new();
            std::io::Read::read_to_string(&mut tcp, &mut answer).expect("read");
            answer
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(post("/queue/bench-1-0-c", None), 401);
        assert_eq!(post("/queue/bench-1-0-c", Some(key)), 200);
        assert_eq!(post("/queue/other", Some(key)), 403);
    }

    #[test]
    fn a_temp_dir_goes_away_on_drop() {
        let d = TempDir::new("test").expect("temp dir");
        let path = d.path().to_path_buf();
        std::fs::write(path.join("f"), b"x").expect("write");
        drop(d);
        assert!(!path.exists());
    }
}
