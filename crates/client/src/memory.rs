//! An opt-in tuning of the C library's allocator for programs that move
//! large objects.

/// Buffers up to this size come from the allocator's heaps, not from
/// mappings of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Free memory at the top of a heap is handed back past this size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// Makes the C library's allocator keep buffers of up to 4 MiB in its
/// heaps, for a program that uploads or downloads large objects
/// ([`Client::upload_file`](crate::Client::upload_file),
/// [`Client::download_file`](crate::Client::download_file)).
///
/// By default glibc maps each buffer over 128 KiB on its own and unmaps it
/// when it is freed, so every 1 MiB piece of a transfer costs 256 page
/// faults and the zeroing of fresh pages: about a quarter of a download's
/// CPU time. A library should not change the process's allocator, so this
/// is the program's choice: call it once at the start of `main`, before
/// the program starts threads of its own (glibc reads these parameters
/// without a lock). `baa-log` does. It does nothing with another C
/// library.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` sets two of the allocator's parameters under its
    // lock; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
