//! A global allocator for programs that train large batches: every allocation of at least
//! [`LARGE`] bytes is placed on 2 MiB boundaries, rounded up to whole 2 MiB pages, and (on Linux)
//! marked for transparent huge pages (`madvise(MADV_HUGEPAGE)`), which kernels that ship
//! transparent huge pages in `madvise` mode give only to memory marked so. The activations,
//! gradients and weights of a training step then sit on a few hundred 2 MiB pages instead of tens
//! of thousands of 4 KiB ones. Smaller allocations go to the system allocator unchanged.
//!
//! Install it in a binary: `#[global_allocator] static A: HugePageAlloc = HugePageAlloc::new();`
//! (the `ferroflow` tool does). [`HugePageAlloc::set_advise`]`(false)` keeps the placement and skips
//! the `madvise`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Allocations from this size on are placed on huge pages.
pub const LARGE: usize = 1 << 20;

/// The size of a huge page.
const HUGE: usize = 1 << 21;

/// The system allocator, with large allocations on transparent huge pages (see the module).
#[derive(Debug)]
pub struct HugePageAlloc {
    /// Whether large blocks are marked for transparent huge pages (on by default).
    advise: AtomicBool,
}

impl HugePageAlloc {
    /// The allocator, marking large blocks for huge pages.
    pub const fn new() -> Self {
        HugePageAlloc {
            advise: AtomicBool::new(true),
        }
    }

    /// Whether later large blocks are marked for huge pages (they stay on 2 MiB boundaries either
    /// way).
    pub fn set_advise(&self, on: bool) {
        self.advise.store(on, Ordering::Relaxed);
    }
}

impl Default for HugePageAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// The layout a large allocation takes: 2 MiB aligned, a whole number of 2 MiB pages.
fn placed(layout: Layout) -> Option<Layout> {
    if layout.size() < LARGE {
        return None;
    }
    let size = layout.size().checked_next_multiple_of(HUGE)?;
    Layout::from_size_align(size, layout.align().max(HUGE)).ok()
}

// SAFETY: every call is passed to `System` with a valid layout; a block is freed with the layout it
// was allocated with (`placed` depends on the requested layout only, which the caller passes back
// unchanged).
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(big) = placed(layout) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: `big` has a non-zero size.
        let p = unsafe { System.alloc(big) };
        #[cfg(target_os = "linux")]
        if !p.is_null() && self.advise.load(Ordering::Relaxed) {
            // SAFETY: `p` starts a block of `big.size()` bytes this allocation owns, aligned to a
            // page. The advice only changes how the kernel backs the pages; a failure is harmless.
            unsafe { libc::madvise(p.cast(), big.size(), libc::MADV_HUGEPAGE) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout, hence from `System` with `placed`'s.
        unsafe { System.dealloc(ptr, placed(layout).unwrap_or(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if placed(layout).is_none() && placed(new).is_none() {
            // SAFETY: small before and after: the system's block, passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new` has a non-zero size (at least `LARGE`, or the old block is large and is
        // copied in part); the old block holds `layout.size()` bytes.
        unsafe {
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large blocks start on 2 MiB boundaries and keep their bytes through growing and shrinking
    /// across the threshold; small ones are the system's.
    #[test]
    fn large_blocks_sit_on_huge_page_boundaries_and_keep_their_bytes() {
        let a = HugePageAlloc::new();
        let small = Layout::from_size_align(1000, 8).unwrap();
        let large = Layout::from_size_align(3 << 20, 8).unwrap();
        unsafe {
            let s = a.alloc(small);
            assert!(!s.is_null());
            for i in 0..1000 {
                *s.add(i) = i as u8;
            }
            // Small to large: copied, on a boundary.
            let l = a.realloc(s, small, large.size());
            assert_eq!(l as usize % HUGE, 0);
            assert!((0..1000).all(|i| *l.add(i) == i as u8));
            *l.add(large.size() - 1) = 7;
            // Large to larger, then back to small.
            let bigger = Layout::from_size_align(5 << 20, 8).unwrap();
            let l2 = a.realloc(l, large, bigger.size());
            assert_eq!(l2 as usize % HUGE, 0);
            assert_eq!(*l2.add(large.size() - 1), 7);
            assert_eq!(*l2.add(999), (999 % 256) as u8);
            let s2 = a.realloc(l2, bigger, 10);
            assert!((0..10).all(|i| *s2.add(i) == i as u8));
            a.dealloc(s2, Layout::from_size_align(10, 8).unwrap());
        }
        assert_eq!(placed(small), None);
        assert_eq!(
            placed(large).map(|p| (p.size(), p.align())),
            Some((4 << 20, HUGE))
        );
    }
}
