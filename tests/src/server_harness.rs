//! Starts the real `synap-server` binary for end-to-end tests and stops it by its PID.
//!
//! The binary is built once per test process with `cargo build -p synap-server` (so tests never
//! run a stale server), then each `Server` runs it on `127.0.0.1:0` (HTTP and SynapRPC, unless
//! the test's arguments choose otherwise) and reads the bound addresses from its log. Dropping a `Server` kills its process; `terminate` sends SIGTERM for shutdown
//! tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The target directory holding this test executable (`<target>/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path to a freshly built `synap-server`.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = profile_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "synap-server", "--bin", "synap-server"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p synap-server");
        assert!(status.success(), "cargo build -p synap-server failed");
        let bin = dir.join(format!("synap-server{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// A running server.
pub struct Server {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The SynapRPC address, unless SynapRPC is off.
    pub rpc_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Options for `Server::start_with`.
#[derive(Default)]
pub struct Options<'a> {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// `SYNAP_API_KEY`.
    pub api_key: Option<&'a str>,
    /// YAML config file contents (written to a temporary file).
    pub config_yaml: Option<&'a str>,
    /// Persist to this data directory (instead of `--in-memory`).
    pub data_dir: Option<&'a Path>,
    /// Start under these open-file limits `(soft, hard)` (bash's `ulimit -Sn`/`-Hn`, which
    /// then `exec`s the server, so the PID is still the server's). `None` for the hard limit
    /// keeps it.
    pub nofile: Option<(u64, Option<u64>)>,
}

/// Writes `text` to a fresh temporary file and returns its path.
pub fn temp_file(ext: &str, text: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("synap-test-{}-{n}.{ext}", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}

impl Server {
    /// An in-memory server with default settings.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// A server with extra options.
    pub fn start_with(opts: Options<'_>) -> Self {
        let mut cmd = match opts.nofile {
            None => Command::new(server_binary()),
            Some((soft, hard)) => {
                // The soft limit first: a hard limit below the soft one is refused.
                let hard = hard
                    .map(|h| format!("ulimit -Hn {h} && "))
                    .unwrap_or_default();
                let mut bash = Command::new("bash");
                bash.arg("-c")
                    .arg(format!("ulimit -Sn {soft} && {hard}exec \"$0\" \"$@\""))
                    .arg(server_binary());
                bash
            }
        };
        cmd.args(["--bind", "127.0.0.1:0"]);
        match opts.data_dir {
            Some(dir) => cmd.arg("--data-dir").arg(dir),
            None => cmd.arg("--in-memory"),
        };
        let rpc_chosen = opts
            .args
            .iter()
            .any(|a| a.starts_with("--rpc-bind") || a == "--no-rpc");
        if !rpc_chosen {
            cmd.args(["--rpc-bind", "127.0.0.1:0"]);
        }
        cmd.args(&opts.args)
            .env("RUST_LOG", "info")
            .env_remove("SYNAP_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(key) = opts.api_key {
            cmd.env("SYNAP_API_KEY", key);
        }
        if let Some(yaml) = opts.config_yaml {
            cmd.arg("--config").arg(temp_file("yaml", yaml));
        }
        let mut child = cmd.spawn().expect("spawn synap-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        let rpc_addr = Arc::new(Mutex::new(None));
        let rpc_seen = Arc::clone(&rpc_addr);
        // The server's log must be drained for its whole life, or a full pipe would block it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the HTTP address, so it is known once that one is.
                if let Some(addr) = rpc_line_addr(&line) {
                    *rpc_seen.lock().unwrap() = Some(addr);
                }
                // Kept before the address is announced, so the log holds every line up to
                // the listening one when `start_with` returns.
                let addr = listening_addr(&line);
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start: {:?}", log.lock().unwrap());
            }
        };
        let rpc_addr = *rpc_addr.lock().unwrap();
        Self {
            child,
            addr,
            rpc_addr,
            log,
        }
    }

    /// `synap://127.0.0.1:port` of the SynapRPC listener (panics when it is off).
    pub fn rpc_url(&self) -> String {
        format!("synap://{}", self.rpc_addr.expect("SynapRPC is on"))
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:port{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The server process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM to this server's PID and waits (up to 30 s) for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not exit within 30 s of SIGTERM");
    }
}

impl Server {
    /// Kills this server's PID with SIGKILL (a crash: no shutdown code runs) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The address in the server's `listening` log line, e.g. `... listening addr=127.0.0.1:4321`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let rest = &line[line.find("addr=")? + 5..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The address in the SynapRPC line, e.g. `... SynapRPC accepting connections rpc=127.0.0.1:4322`.
fn rpc_line_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("SynapRPC accepting connections") {
        return None;
    }
    let rest = &line[line.find("rpc=")? + 4..];
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_parses() {
        let line =
            "2025-01-01T00:00:00Z  INFO synap_server: synap-server listening addr=127.0.0.1:4321";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(listening_addr("other line"), None);
        let rpc = "2025-01-01T00:00:00Z  INFO synap_server: SynapRPC accepting connections rpc=127.0.0.1:4322";
        assert_eq!(rpc_line_addr(rpc), Some("127.0.0.1:4322".parse().unwrap()));
        assert_eq!(listening_addr(rpc), None);
    }
}
