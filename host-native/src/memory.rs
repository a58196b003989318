//! The process's memory: the allocator (jemalloc, which gives freed memory back to the OS
//! with its background purging thread, where glibc's malloc kept the peak of a load for good)
//! and the default memory budget, a share of the machine's memory. The engine only gets the
//! resulting limit (`Limits::max_held_bytes`); it never reads the OS.

/// The allocator of every Rust allocation in the server.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Share of the machine's memory the default budget lets messages hold, in percent.
pub(crate) const DEFAULT_BUDGET_PERCENT: u64 = 40;

/// Starts jemalloc's background threads, which return freed pages to the OS on their decay
/// schedule (about 10 s) even while the server is quiet.
pub(crate) fn start_purging() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "jemalloc background purging is off");
    }
}

/// Bytes of memory the machine has (`MemTotal` of /proc/meminfo), if it can be read.
pub(crate) fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

/// `MemTotal:  24576000 kB` → bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The default budget: [`DEFAULT_BUDGET_PERCENT`] of `machine` bytes, or `fallback` (the
/// engine's own default) when the machine's memory is unknown.
pub(crate) fn default_budget(machine: Option<u64>, fallback: u64) -> u64 {
    machine.map_or(fallback, |m| m / 100 * DEFAULT_BUDGET_PERCENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: x kB\n"), None);
    }

    #[test]
    fn the_default_budget_is_a_share_of_the_machine() {
        assert_eq!(default_budget(Some(1000), 7), 400);
        assert_eq!(default_budget(None, 7), 7);
        assert!(
            machine_memory().is_some_and(|m| m > 0),
            "Linux has /proc/meminfo"
        );
    }
}
