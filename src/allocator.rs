//! The `scalekit-mcp` binary's memory setting (the binary and the bench examples declare mimalloc
//! as their global allocator themselves; a library must leave that choice to its users).
//!
//! mimalloc rather than the system allocator: under load, glibc's malloc and free were about a
//! tenth of `serve`'s CPU (perf, `bench/run`). Version 2 of mimalloc, without its own request
//! for transparent huge pages (`no_thp`): version 3 commits its arenas eagerly, and on a kernel
//! with THP set to `always` each touched arena region became a 2 MiB page (idle RSS 12 → 16 MiB,
//! the ceiling example 3 → 7 MiB). [`disable_huge_pages`] turns THP off for the rest of the
//! process's life as well, for the same reason.
//!
//! mimalloc also keeps the pages it frees until the thread that freed them allocates again (its
//! purge delay, 10 ms, is only checked then). A server whose sessions have all ended goes idle,
//! so their memory stayed with the process: RSS idle + 28–32 MiB after 3,000 sessions were
//! closed (`bench/sessions.py`). With a purge delay of 0 it goes back as it is freed: idle +
//! 4.4 MiB, with no cost measured (sessions opened per second 1,515 against 1,516; throughput
//! on one session 1.02 of the default, median of 8 pairs). mimalloc reads its options from the
//! environment as the process starts, before `main`, and setting one from code needs its C API,
//! which is unsafe; so `serve` restarts itself once, in place ([`purge_freed_memory_promptly`]).
//!
//! Only a `serve` that holds sessions in rmcp does (the CLI decides, `holds_sessions_of_rmcp`):
//! `--stateless` and the gateway in front of an HTTP upstream hold none worth giving back, and
//! there giving every freed page back at once showed in perf as a tenth of the gateway's CPU
//! (`madvise` and the page faults that bring the pages back), about 1.1× its throughput in
//! paired runs (docs/performance.md).

/// The environment variable mimalloc reads its purge delay from.
pub const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Set next to [`PURGE_DELAY`] when this crate set it, so that the gateway's upstream commands
/// do not inherit it (they get the environment the user gave, without the gateway's own
/// `SCALEKIT_MCP_` variables).
pub const PURGE_DELAY_SET_HERE: &str = "SCALEKIT_MCP_PURGE_DELAY_SET";

/// Makes mimalloc give freed memory back at once (see the module documentation): when the
/// environment does not set its purge delay, this process becomes itself again (`exec`: same
/// pid, arguments and environment) with `MIMALLOC_PURGE_DELAY=0`. Linux only, for `serve`
/// only; when `exec` fails, the process goes on with mimalloc's default.
pub fn purge_freed_memory_promptly() {
    #[cfg(target_os = "linux")]
    if std::env::var_os(PURGE_DELAY).is_none() {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let name = args.next().unwrap_or_default();
        // /proc/self/exe: this executable even if its file was replaced since it started.
        let _failed = std::process::Command::new("/proc/self/exe")
            .arg0(name)
            .args(args)
            .env(PURGE_DELAY, "0")
            .env(PURGE_DELAY_SET_HERE, "1")
            .exec();
    }
}

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing to do). Called
/// first thing in `main`, before the runtime's threads start touching memory.
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // Best effort: a kernel without THP, or a sandbox refusing prctl, just keeps its default.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
