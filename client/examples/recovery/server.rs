//! The server under test: `target/release/synap-server --bind 127.0.0.1:0` (in memory unless
//! told otherwise), found
//! next to this example's binary (`target/release/examples/recovery`), stopped by its PID when the
//! guard drops (on error or panic too).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `synap-server`; dropping it kills that process (by PID) and reaps it.
pub(crate) struct Server(Child);

impl Server {
    /// Starts the server in memory and returns it with its base URL once it logs its address.
    pub(crate) fn start() -> Result<(Self, String), String> {
        Self::start_with(&["--in-memory"])
    }

    /// Starts the server with `args` (storage options) and returns it with its base URL.
    pub(crate) fn start_with(args: &[&str]) -> Result<(Self, String), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let bin = exe.parent().and_then(|examples| examples.parent());
        let bin = bin.map(|dir| dir.join("synap-server")).unwrap_or_default();
        if !bin.is_file() {
            return Err(format!(
                "{} not found: build it first with `cargo build --release -p synap-server` \
                 (or pass --url of a running server)",
                bin.display()
            ));
        }
        let mut child = Command::new(&bin)
            .args(["--bind", "127.0.0.1:0", "--rpc-bind", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let server = Self(child);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Keep draining the log so the server never blocks on a full pipe, and pass on anything
        // that is not routine: that is what a benchmark run should surface.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = line
                    .split_once("synap-server listening")
                    .map(|(_, rest)| rest);
                match addr.and_then(|rest| rest.split_once("addr=")) {
                    Some((_, addr)) => drop(tx.send(addr.split_whitespace().take(1).collect())),
                    None if !line.contains(" INFO ") => eprintln!("server: {line}"),
                    None => {}
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| "synap-server did not log `synap-server listening addr=…` within 15 s")?;
        Ok((server, format!("http://{addr}")))
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this PID; `wait` reaps it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
