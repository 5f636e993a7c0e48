//! The allocator setting that keeps a training loop's freed memory for its next step.

/// Blocks up to this size come from the heap after [`keep_freed_memory`]: glibc's upper
/// limit for the setting (32 MiB on 64-bit systems).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Asks the C library's allocator to keep freed memory for reuse rather than hand it back to
/// the system; returns whether it took (false where the C library is not glibc, where the call
/// does nothing).
///
/// Every training step allocates and frees the same tensors. By default glibc gives each
/// block above a threshold (128 KiB, raised at run time up to 32 MiB) a mapping of its own and
/// unmaps it when freed, and returns the heap's free top to the system, so the next step
/// faults in and zeroes the same pages again: the max pool of the small CNN's first stage at
/// batch 64 (1.6 MB out) took 4.4 ms in a training step, 1.6 ms of it pooling. After this
/// call blocks up to 32 MiB come from the heap and the heap is not trimmed (below 2 GiB free),
/// so the process's resident memory stays near its peak instead.
///
/// It is process-wide, so a library does not call it on its own: the `strata` command line and
/// the benchmarks call it first thing, and a program that trains can too. PyTorch gains from
/// the same setting (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:`
/// `glibc.malloc.trim_threshold=2147483647`); the benchmarks set it on both sides.
///
/// ```
/// // First thing in `main`, before the tensors are made.
/// strata_kernels::keep_freed_memory();
/// ```
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Floats per task of [`zeroed`]: 1 MiB.
const ZERO_PART: usize = 1 << 18;

/// `len` zeros, written on rayon's threads when `len` spans several parts.
///
/// A large `vec![0.0; len]` is one thread's `memset` (the allocator reuses freed memory after
/// [`keep_freed_memory`], so it must clear it), while the other threads wait: a recurrent
/// layer's workspace (11 MiB in the character LM's benchmark) took 1.5% of a training step
/// that way, on the step's critical path.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let mut v = Vec::<f32>::with_capacity(len);
    let spare = &mut v.spare_capacity_mut()[..len];
    if len < 2 * ZERO_PART || crate::gemm::on_worker() || rayon::current_num_threads() < 2 {
        spare.fill(MaybeUninit::new(0.0));
    } else {
        spare
            .par_chunks_mut(ZERO_PART)
            .for_each(|part| part.fill(MaybeUninit::new(0.0)));
    }
    // SAFETY: the first `len` elements were all written just above, and `len` is within the
    // capacity.
    unsafe { v.set_len(len) };
    v
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_setting() {
        assert!(super::keep_freed_memory());
        // Memory still comes and goes as before.
        let v = vec![1.0f32; 1 << 20];
        assert_eq!(v.iter().sum::<f32>(), (1 << 20) as f32);
    }

    #[test]
    fn zeroed_is_all_zeros_at_every_size() {
        for len in [
            0,
            1,
            super::ZERO_PART - 1,
            2 * super::ZERO_PART + 3,
            9 * super::ZERO_PART,
        ] {
            // Dirty freed memory first, so that reused memory would show.
            drop(vec![7.0f32; len]);
            let v = super::zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0), "len {len}");
        }
    }
}
