//! The `scalekit-mcp` binary's memory setting (the binary and the bench examples declare mimalloc
//! as their global allocator themselves; a library must leave that choice to its users).
//!
//! mimalloc rather than the system allocator: under load, glibc's malloc and free were about a
//! tenth of `serve`'s CPU (perf, `bench/run`). Version 2 of mimalloc, without its own request
//! for transparent huge pages (`no_thp`): version 3 commits its arenas eagerly, and on a kernel
//! with THP set to `always` each touched arena region became a 2 MiB page (idle RSS 12 → 16 MiB,
//! the ceiling example 3 → 7 MiB). [`disable_huge_pages`] turns THP off for the rest of the
//! process's life as well, for the same reason.

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing to do). Called
/// first thing in `main`, before the runtime's threads start touching memory.
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // Best effort: a kernel without THP, or a sandbox refusing prctl, just keeps its default.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
