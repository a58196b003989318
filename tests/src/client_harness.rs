//! What the client tests need beyond `server_harness`: the `synap-client` example binaries
//! (built once) and a guard for the processes they run, killed by PID when it drops, with
//! SIGINT for graceful-shutdown checks. Servers come from [`crate::server_harness`].

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The target directory holding this test executable (`<target>/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Runs `cargo build <args>` once per distinct `args` in this test process. Tests in one binary
/// run in parallel, so the lock also keeps them from starting the same build twice.
///
/// # Panics
/// If the build fails.
pub fn build_once(args: &[&str]) {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let key = args.join(" ");
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if built.contains(&key) {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .args(args)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {key} failed");
    built.push(key);
}

/// A child process killed by its PID when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd`; the guard owns the process from here on.
    ///
    /// # Panics
    /// If the process cannot be spawned.
    #[must_use]
    pub fn spawn(cmd: &mut Command) -> Self {
        Self {
            child: cmd.spawn().expect("spawn child process"),
        }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (as Ctrl-C would) to this process only.
    ///
    /// # Panics
    /// If `kill` cannot be run.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this PID; reaping it avoids a zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a `synap-client` example binary, building the examples once.
#[must_use]
pub fn client_example(name: &str) -> PathBuf {
    build_once(&["-p", "synap-client", "--examples"]);
    profile_dir().join("examples").join(name)
}
