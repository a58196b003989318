//! The file-system interface the command log and the snapshots (and a cluster node's Raft
//! storage, `cluster::storage`) are written through.
//!
//! `RealFs` is the operating system's file system; `FaultyFs` wraps it and injects the faults
//! storage must survive: short writes, failed fsyncs, a full disk (switched off again to show
//! that writes resume), a write that fails from some point on, and a directory that refuses
//! new files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// A second handle on an open file that only syncs it, so one thread can sync while another
/// goes on appending through the file's own handle.
pub(crate) trait FsSync: Send + Sync {
    /// Flushes the file's data to stable storage (fdatasync).
    fn sync(&self) -> io::Result<()>;
}

/// An open file the log appends to.
pub(crate) trait FsFile: Send {
    /// Writes some of `buf` at the end of the file; returns how much was written.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Flushes the file's data to stable storage (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (later writes append from there).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// A handle that syncs this file from another thread.
    fn syncer(&self) -> io::Result<Arc<dyn FsSync>>;

    /// Writes all of `buf`, continuing after short writes.
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The operations storage needs from a file system.
pub(crate) trait Fs: Send + Sync {
    /// Opens `path` for appending, creating it if missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Cuts a file to `len` bytes.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the entries of `dir` (new, renamed and removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RealFs;

struct RealFile(File);

impl FsSync for File {
    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
}

impl FsFile for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn syncer(&self) -> io::Result<Arc<dyn FsSync>> {
        Ok(Arc::new(self.0.try_clone()?))
    }
}

impl Fs for RealFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // On Unix a directory opened read-only can be fsynced; elsewhere this is a no-op.
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(test)]
pub(crate) use faulty::{Faults, FaultyFs};

/// A file system that injects faults (tests only).
#[cfg(test)]
mod faulty {
    use std::fs::OpenOptions;
    use std::io;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::{Fs, FsFile, FsSync, RealFile, RealFs};

    /// Switches for the faults `FaultyFs` injects; shared, so a test flips them while a writer runs.
    #[derive(Debug, Default)]
    pub(crate) struct Faults {
        /// The next this-many writes write only half their buffer (a legal short write).
        pub(crate) short_writes: AtomicU32,
        /// Every fsync fails with an I/O error.
        pub(crate) fail_sync: AtomicBool,
        /// Writes store half their buffer, then fail with ENOSPC, until switched off.
        pub(crate) disk_full: AtomicBool,
        /// When n > 0: the n-th write from now and every one after it fail (writing nothing)
        /// until switched off with 0, as if the process died there, in the middle of an
        /// update made of several writes.
        pub(crate) fail_from_write: AtomicU32,
        /// Creating files is refused (an unwritable directory).
        pub(crate) read_only: AtomicBool,
        /// Syncs (those not failed) return without reaching the disk. For tests that crash
        /// processes, never the machine: what was written survives them anyway, and a real
        /// fsync costs milliseconds.
        pub(crate) no_real_sync: AtomicBool,
    }

    /// `RealFs` with injected faults.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct FaultyFs {
        /// The switches.
        pub(crate) faults: Arc<Faults>,
    }

    struct FaultyFile {
        inner: RealFile,
        faults: Arc<Faults>,
    }

    /// A sync handle that fails while `fail_sync` is on.
    struct FaultySync {
        inner: Arc<dyn FsSync>,
        faults: Arc<Faults>,
    }

    /// Fails a sync under `fail_sync`; else whether to run the real one.
    fn injected_sync_failure(faults: &Faults) -> io::Result<bool> {
        if faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(!faults.no_real_sync.load(Ordering::SeqCst))
    }

    impl FsSync for FaultySync {
        fn sync(&self) -> io::Result<()> {
            if injected_sync_failure(&self.faults)? {
                self.inner.sync()?;
            }
            Ok(())
        }
    }

    /// The error a full disk gives.
    pub(crate) fn enospc() -> io::Error {
        #[cfg(unix)]
        return io::Error::from_raw_os_error(28);
        #[cfg(not(unix))]
        io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
    }

    impl FsFile for FaultyFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let half = buf.len().div_ceil(2);
            let failing = self
                .faults
                .fail_from_write
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n > 1).then(|| n - 1)
                })
                .is_err_and(|n| n == 1);
            if failing {
                return Err(io::Error::other("injected write failure"));
            }
            if self.faults.disk_full.load(Ordering::SeqCst) {
                // A full disk typically takes part of a write before refusing the rest.
                if half > 1 {
                    self.inner.write(&buf[..half / 2])?;
                }
                return Err(enospc());
            }
            let short = self
                .faults
                .short_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if short {
                return self.inner.write(&buf[..half]);
            }
            self.inner.write(buf)
        }
        fn sync(&mut self) -> io::Result<()> {
            if injected_sync_failure(&self.faults)? {
                self.inner.sync()?;
            }
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn syncer(&self) -> io::Result<Arc<dyn FsSync>> {
            Ok(Arc::new(FaultySync {
                inner: self.inner.syncer()?,
                faults: Arc::clone(&self.faults),
            }))
        }
    }

    impl Fs for FaultyFs {
        fn open_append(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
            if self.faults.read_only.load(Ordering::SeqCst) && !path.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "injected: directory not writable",
                ));
            }
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            Ok(Box::new(FaultyFile {
                inner: RealFile(f),
                faults: Arc::clone(&self.faults),
            }))
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            RealFs.read(path)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            RealFs.list(dir)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            RealFs.rename(from, to)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            RealFs.remove(path)
        }
        fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
            RealFs.truncate(path, len)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            if injected_sync_failure(&self.faults)? {
                RealFs.sync_dir(dir)?;
            }
            Ok(())
        }
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            if self.faults.read_only.load(Ordering::SeqCst) && !dir.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "injected: directory not writable",
                ));
            }
            RealFs.create_dir_all(dir)
        }
    }
}

/// True for the errors of a full disk (or quota), which clear when space returns.
pub(crate) fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Holds the data directory's lock file for as long as it lives: a second server on the same
/// directory fails to take it and refuses to start.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` (its `LOCK` file).
    pub(crate) fn acquire(dir: &Path) -> Result<Self, String> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "data directory {} is in use by another synap-server (lock file {} is held)",
                dir.display(),
                path.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn short_writes_are_completed_by_write_all() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::default();
        fs.faults.short_writes.store(3, Ordering::SeqCst);
        let path = dir.path().join("f");
        let mut f = fs.open_append(&path).unwrap();
        f.write_all(b"0123456789").unwrap();
        assert_eq!(fs.read(&path).unwrap(), b"0123456789");
        assert_eq!(fs.faults.short_writes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_full_disk_refuses_writes_until_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::default();
        let path = dir.path().join("f");
        let mut f = fs.open_append(&path).unwrap();
        fs.faults.disk_full.store(true, Ordering::SeqCst);
        let e = f.write_all(b"0123456789").unwrap_err();
        assert!(is_full(&e), "{e}");
        fs.faults.disk_full.store(false, Ordering::SeqCst);
        f.set_len(0).unwrap();
        f.write_all(b"ok").unwrap();
        assert_eq!(fs.read(&path).unwrap(), b"ok");
    }

    #[test]
    fn writes_fail_from_the_nth_until_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::default();
        let path = dir.path().join("f");
        let mut f = fs.open_append(&path).unwrap();
        fs.faults.fail_from_write.store(2, Ordering::SeqCst);
        f.write_all(b"ok").unwrap();
        assert!(f.write_all(b"lost").is_err());
        assert!(f.write_all(b"lost").is_err());
        fs.faults.fail_from_write.store(0, Ordering::SeqCst);
        f.write_all(b"!").unwrap();
        assert_eq!(fs.read(&path).unwrap(), b"ok!");
    }

    #[test]
    fn a_second_lock_on_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err();
        assert!(e.contains("in use"), "{e}");
        drop(first);
        DirLock::acquire(dir.path()).expect("free again once released");
    }
}
