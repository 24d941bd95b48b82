//! Giving the memory of large requests back to the system when they end.
//!
//! glibc's allocator serves an allocation from its heaps unless it is larger than a threshold,
//! and raises the threshold to the size of each large block freed, up to 32 MiB: after the first
//! large request, bodies and tensors come from the heaps, whose freed memory stays resident.
//! Fixing the threshold keeps every allocation of [`MAP_ON_ITS_OWN`] or more in pages of its
//! own, unmapped when it is freed. In the test
//! `serve::concurrent_large_bodies_are_bounded_in_memory_and_it_goes_back` (16 concurrent JSON
//! bodies of 5 MiB, within the receive budget) the server's resident memory went from 66 MiB to
//! 78 MiB and stayed there without this; with it, from 59 MiB to a peak of 66 MiB and back to
//! 60 MiB. `malloc_trim(0)` after each large request, tried instead, gave back a third of what
//! stayed (a larger burst: 57 MiB, 86 MiB at the peak, 77 MiB after), so it is not used.

/// Allocations of this many bytes or more are mapped on their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAP_ON_ITS_OWN: libc::c_int = 256 << 10;

/// Sets the allocator up so that large blocks go back to the system when freed (glibc; a no-op
/// elsewhere). It applies to the whole process, once.
pub(crate) fn give_back_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt(3) only sets a parameter of the allocator; it is called once,
            // before the server allocates its buffers.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_ON_ITS_OWN);
            }
        });
    }
}
