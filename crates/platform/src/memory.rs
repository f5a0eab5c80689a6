//! Giving freed memory back to the system. glibc's allocator keeps what a burst freed (a
//! backlog of deliveries, a large batch) in per-thread arenas for reuse, so a long-running
//! process's RSS would settle at the largest burst it ever met rather than at what it holds.
//! Trimming now and then returns those free pages; what the process still uses stays.

/// Returns the allocator's free memory to the system where it keeps it (glibc on Linux).
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free pages of glibc's own heaps; it takes no
        // pointers and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}
