//! How the process's C heap treats the large tensors libtorch frees every step.
//!
//! libtorch takes CPU tensors from glibc's malloc, which serves blocks of more
//! than 32 MB (and, until its threshold adapts, of more than 128 KB) with a
//! fresh `mmap` and unmaps them again on `free`. A training step allocates and
//! frees the same activations every time, so the kernel maps and zeroes the
//! same tens of megabytes step after step: in a BERT fine-tune that was 8-10%
//! of the CPU time (`perf`: `clear_page_erms`). Keeping freed memory in the
//! heap lets the next step reuse it. The price is that the process holds on to
//! its peak heap until it exits, as PyTorch's GPU caching allocator does with
//! device memory: for a MiniLM fine-tune, 1.57 GB of peak memory against 1.45
//! GB, the same after 1 epoch or 4 (the heap does not creep with the batches'
//! varying lengths).
//!
//! `HPCML_HEAP_CACHE=0`, or malloc settings of the user's own in
//! `GLIBC_TUNABLES`, leave glibc's defaults alone.

/// From here on, large blocks come from the heap and freed memory stays there.
/// Returns whether the setting was made (not on other C libraries, nor when
/// the user opted out).
pub fn keep_freed_memory() -> bool {
    if crate::cli::switched_off("HPCML_HEAP_CACHE")
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.malloc."))
    {
        return false;
    }
    set_glibc_malloc()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_glibc_malloc() -> bool {
    // SAFETY: mallopt only changes malloc's parameters; glibc serialises it
    // with allocations in other threads.
    unsafe {
        // No block is mmap-ed on its own; the heap grows instead (glibc still
        // falls back to mmap if it cannot).
        let no_mmap = libc::mallopt(libc::M_MMAP_MAX, 0) == 1;
        // Free memory at the top of the heap is returned to the kernel only
        // past 2 GB, so the next step's allocations find it mapped.
        let no_trim = libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1;
        no_mmap && no_trim
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_glibc_malloc() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Alone in a process of its own: the other tests' threads allocate and
    /// free in the same heap at the same time, and could take the freed block.
    #[test]
    fn large_blocks_come_from_the_heap_and_stay_there() {
        const CHILD: &str = "HPCML_HEAP_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "device::host_memory::tests::large_blocks_come_from_the_heap_and_stay_there";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .env_remove("HPCML_HEAP_CACHE")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        assert!(keep_freed_memory(), "HPCML_HEAP_CACHE or GLIBC_TUNABLES is set in the test environment");
        const BIG: usize = 48 << 20;
        // black_box: the optimiser may drop an allocation nothing reads.
        let block = std::hint::black_box(vec![1u8; BIG]);
        // SAFETY: mallinfo2 only reads malloc's statistics.
        let during = unsafe { libc::mallinfo2() };
        assert!(
            during.hblkhd < BIG,
            "a {BIG}-byte block was mmap-ed on its own ({} bytes in mmap-ed blocks)",
            during.hblkhd
        );
        drop(block);
        let after = unsafe { libc::mallinfo2() };
        // The freed block is still part of the heap, ready for the next step.
        assert!(after.arena >= BIG, "the heap shrank to {} bytes after the free", after.arena);
        assert!(after.fordblks >= BIG, "only {} bytes free in the heap after freeing {BIG}", after.fordblks);
    }
}
