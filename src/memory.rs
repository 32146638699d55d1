//! glibc malloc settings for the long-running controller process.
//!
//! By default glibc gives every thread its own arena, and memory freed after the start-up burst
//! (initial lists, the first reconcile of every object) stays in those arenas; large buffers also
//! raise glibc's dynamic mmap threshold, so later ones are carved from the heap and fragment it.
//! Measured with 1,000 rollouts: the heap held 30 MB from the system for 10 MB in use; with one
//! arena and a fixed 64 KiB mmap threshold it held 16 MB. Per-thread caches (tcache) keep the single
//! arena from becoming a point of contention at a controller's allocation rate. A value an operator
//! sets in the environment (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_) wins.

/// Applies the settings; call before any other thread starts.
pub fn tune_allocator_for_controller() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ARENAS: libc::c_int = 1;
        const MMAP_THRESHOLD: libc::c_int = 64 * 1024;
        for (variable, parameter, value) in [
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENAS),
            ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ] {
            if std::env::var_os(variable).is_none() {
                // SAFETY: mallopt only changes allocator parameters; it is called before other threads exist.
                unsafe { libc::mallopt(parameter, value) };
            }
        }
    }
}

/// How often the heap's free space is looked at.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Free heap below this is left alone: trimming it would buy little and cost page faults later.
pub const TRIM_FLOOR_BYTES: usize = 8 * 1024 * 1024;

/// Hands memory freed after a burst back to the system.
///
/// With one arena, what a burst allocated and freed (a wave of reconciles: watch events, patches,
/// plans) stays in the heap as free chunks between live ones; glibc returns only the top of the
/// heap by itself, so the process keeps its peak RSS for good (`sluice bench wave` shows the RSS
/// after a wave against the RSS of a restarted controller on the same objects).
/// `malloc_trim(0)` releases the free pages inside the heap too (madvise). It is
/// called only when the free heap is both above [`TRIM_FLOOR_BYTES`] and above a quarter of what is
/// in use, which a controller at rest never reaches, and has grown by the floor since the last trim,
/// so it runs about once per burst.
pub async fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Trimming leaves the free chunks free (their pages are handed back, they stay in the
        // counters), so the lowest free size seen since the last trim is kept: only free space a
        // new burst left behind trims again.
        let mut free_low = 0;
        loop {
            tokio::time::sleep(TRIM_EVERY).await;
            // SAFETY: mallinfo2 only reads the allocator's counters.
            let info = unsafe { libc::mallinfo2() };
            free_low = free_low.min(info.fordblks);
            if !should_trim(info.fordblks, info.uordblks, free_low) {
                continue;
            }
            free_low = info.fordblks;
            // SAFETY: malloc_trim is thread-safe (it takes the arena locks) and frees nothing in use.
            let released = unsafe { libc::malloc_trim(0) };
            tracing::debug!(
                free_bytes = info.fordblks,
                in_use_bytes = info.uordblks,
                released = released == 1,
                "trimmed the heap"
            );
        }
    }
}

/// Whether `free` bytes of heap beside `in_use` are worth giving back, given the lowest free size
/// seen since the last trim (0: never trimmed): it must have grown by more than the floor since.
pub fn should_trim(free: usize, in_use: usize, free_low_since_trim: usize) -> bool {
    free > TRIM_FLOOR_BYTES && free > in_use / 4 && free > free_low_since_trim.saturating_add(TRIM_FLOOR_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_a_large_free_heap() {
        assert!(!should_trim(TRIM_FLOOR_BYTES, 0, 0), "at the floor");
        assert!(should_trim(TRIM_FLOOR_BYTES + 1, 4 * TRIM_FLOOR_BYTES, 0));
        assert!(
            !should_trim(20 << 20, 100 << 20, 0),
            "a fifth of the heap free is normal churn"
        );
        assert!(should_trim(60 << 20, 40 << 20, 0), "after a burst");
        assert!(
            !should_trim(60 << 20, 40 << 20, 60 << 20),
            "already trimmed: its pages are back"
        );
        assert!(should_trim(90 << 20, 40 << 20, 60 << 20), "a new burst since");
        assert!(!should_trim(usize::MAX, 0, usize::MAX), "no overflow");
        assert!(!should_trim(0, usize::MAX, 0));
    }
}
