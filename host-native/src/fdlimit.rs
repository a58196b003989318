//! The process's open-file limit (`RLIMIT_NOFILE`) and the connection caps under it.
//!
//! Every connection is a file descriptor. Many systems start processes with a soft limit of
//! 1,024 while allowing far more (the hard limit), so at start the server raises its soft
//! limit to the hard one, as NATS and nginx do. If even the hard limit cannot hold the
//! connection caps plus the server's own files (listeners, runtime, the data directory), the
//! caps are lowered to fit: past a cap a client gets a clean refusal (HTTP 503
//! `too_many_connections`, a SynapRPC error frame), whereas past the file limit `accept`
//! fails and the client is left waiting in the listen queue.

use std::path::Path;

use tracing::{info, warn};

/// Descriptors kept for everything but client connections: standard streams, the runtime's
/// poller and wake-ups, signal pipes, both listeners, and the files storage opens while it
/// runs (the active log segment, a snapshot being written and the segments it reads, the
/// directory synced).
pub(crate) const RESERVED_FDS: u64 = 64;

/// The connection caps the server runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Most HTTP connections (WebSockets included).
    pub(crate) http: usize,
    /// Most SynapRPC connections, when SynapRPC is on.
    pub(crate) rpc: Option<usize>,
}

/// The open-file limits before and after raising.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileLimits {
    /// The soft limit the process started with.
    pub(crate) soft_before: u64,
    /// The soft limit now in force.
    pub(crate) soft: u64,
    /// The hard limit.
    pub(crate) hard: u64,
}

/// Raises the soft open-file limit to the hard limit (capped by the OS's per-process
/// maximum); `None` where the platform has no such limit or it cannot be read.
pub(crate) fn raise() -> Option<FileLimits> {
    let resource = rlimit::Resource::NOFILE;
    if !resource.is_supported() {
        return None;
    }
    let (soft_before, hard) = match resource.get() {
        Ok(limits) => limits,
        Err(e) => {
            warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let soft = match rlimit::increase_nofile_limit(hard) {
        Ok(soft) => soft,
        Err(e) => {
            warn!(error = %e, soft = soft_before, hard, "cannot raise the open-file limit");
            soft_before
        }
    };
    Some(FileLimits {
        soft_before,
        soft,
        hard,
    })
}

/// Descriptors the server needs besides its connections: `RESERVED_FDS`, the connections
/// being refused at once (each is accepted, answered and closed), and the files of the data
/// directory (`data_files`, none in memory).
pub(crate) fn overhead(refusing: usize, data_files: u64) -> u64 {
    RESERVED_FDS + refusing as u64 + data_files
}

/// Fits the caps under `limit` descriptors, `overhead` of them taken already. When both
/// fit, they are kept; otherwise SynapRPC gets at most a quarter of what is left (its own
/// cap if that is smaller) and HTTP the rest, each at least 1.
pub(crate) fn fit(limit: u64, overhead: u64, wanted: Caps) -> Caps {
    let room = usize::try_from(limit.saturating_sub(overhead)).unwrap_or(usize::MAX);
    let need = wanted.http.saturating_add(wanted.rpc.unwrap_or(0));
    if need <= room {
        return wanted;
    }
    let rpc = wanted.rpc.map(|n| n.min(room / 4).max(1));
    let http = wanted
        .http
        .min(room.saturating_sub(rpc.unwrap_or(0)))
        .max(1);
    Caps { http, rpc }
}

/// Files in the data directory and its subfolders (0 when it does not exist yet).
pub(crate) fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

/// Raises the open-file limit, logs it, and lowers `wanted` to fit under it (logging why).
pub(crate) fn apply(wanted: Caps, refusing: usize, data_dir: Option<&Path>) -> Caps {
    let Some(limits) = raise() else {
        return wanted;
    };
    info!(
        soft = limits.soft,
        soft_at_start = limits.soft_before,
        hard = limits.hard,
        "open-file limit (RLIMIT_NOFILE)"
    );
    let data_files = data_dir.map_or(0, count_files);
    let overhead = overhead(refusing, data_files);
    let caps = fit(limits.soft, overhead, wanted);
    if caps != wanted {
        warn!(
            limit = limits.soft,
            reserved = overhead,
            max_connections = caps.http,
            rpc_max_connections = caps.rpc,
            wanted_max_connections = wanted.http,
            wanted_rpc_max_connections = wanted.rpc,
            "the open-file limit cannot hold the connection caps: caps lowered to fit \
             (raise the hard limit, e.g. `ulimit -Hn` or systemd's LimitNOFILE)"
        );
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept() {
        let wanted = Caps {
            http: 10_000,
            rpc: Some(1024),
        };
        assert_eq!(fit(1 << 20, overhead(64, 10), wanted), wanted);
    }

    #[test]
    fn caps_that_do_not_fit_are_lowered_under_the_limit() {
        let wanted = Caps {
            http: 10_000,
            rpc: Some(1024),
        };
        let over = overhead(64, 6);
        let caps = fit(256, over, wanted);
        assert_eq!(caps.rpc, Some((256 - over as usize) / 4));
        assert_eq!(caps.http + caps.rpc.unwrap(), 256 - over as usize);
        let no_rpc = fit(
            256,
            over,
            Caps {
                http: 10_000,
                rpc: None,
            },
        );
        assert_eq!(no_rpc.http, 256 - over as usize);
        // A small RPC cap is kept; HTTP takes the rest.
        let small = fit(
            1024,
            over,
            Caps {
                http: 10_000,
                rpc: Some(8),
            },
        );
        assert_eq!(small.rpc, Some(8));
        assert_eq!(small.http, 1024 - over as usize - 8);
    }

    #[test]
    fn a_limit_below_the_overhead_still_leaves_one_connection_each() {
        let caps = fit(
            16,
            200,
            Caps {
                http: 100,
                rpc: Some(10),
            },
        );
        assert_eq!(
            caps,
            Caps {
                http: 1,
                rpc: Some(1)
            }
        );
    }

    #[test]
    fn files_are_counted_in_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"").unwrap();
        assert_eq!(count_files(dir.path()), 2);
        assert_eq!(count_files(&dir.path().join("missing")), 0);
    }
}
