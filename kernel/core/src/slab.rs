//! Slabs: small heap blocks allocated and freed in constant time.
//!
//! The kernel makes and destroys objects by the ten thousand (a guest's
//! RAM is one frame object per page, each with its records), and a
//! first-fit list allocator pays for every release with a walk of its
//! free list: giving 40,960 frames back took minutes. Here each block
//! size up to [`MAX_BLOCK`] bytes has its own slabs, one page each, and
//! a block comes from and goes back to its slab in O(1).
//!
//! A slab starts with a header: how many of its blocks are in use, its
//! own list of free blocks, and its place in its class's list of slabs
//! with a free block. A block's slab is found by rounding its
//! address down to the page. A slab whose blocks are all free goes back
//! to the [`Pages`] it came from, unless it is the only slab its class
//! has left (so one block allocated and freed in a loop does not take
//! and give back a page each time). The heap's footprint thus follows
//! what is in use rather than its peak.
//!
//! Larger blocks, and blocks aligned to more than [`MAX_ALIGN`], are not
//! served here ([`Slabs::serves`]).

use core::alloc::Layout;
use core::ptr::NonNull;

/// The size and alignment of a slab.
pub const PAGE: usize = 4096;
/// The largest block a slab holds.
pub const MAX_BLOCK: usize = 1024;
/// The largest alignment a slab block is guaranteed.
pub const MAX_ALIGN: usize = 16;

/// Block sizes: multiples of [`MAX_ALIGN`], from 32 on about 1.5 apart,
/// so a block above 32 bytes wastes at most a third of itself.
const CLASSES: [usize; 12] = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024];

/// Bytes at the start of each slab for its [`Header`], rounded up so the
/// first block is [`MAX_ALIGN`]-aligned.
const HEADER_BYTES: usize = size_of::<Header>().next_multiple_of(MAX_ALIGN);

/// Where slabs come from and where empty ones go.
///
/// # Safety
/// An implementation's [`Pages::allocate`] returns the start of [`PAGE`]
/// writable bytes, aligned to [`PAGE`], that nothing else uses until they
/// are handed to [`Pages::free`].
pub unsafe trait Pages {
    /// A fresh page, or `None` when memory is exhausted.
    fn allocate(&mut self) -> Option<NonNull<u8>>;

    /// Takes back a page [`Pages::allocate`] gave.
    ///
    /// # Safety
    /// `page` came from [`Pages::allocate`] of this source and nothing
    /// uses it any more.
    unsafe fn free(&mut self, page: NonNull<u8>);
}

/// The start of every slab.
struct Header {
    /// Blocks handed out and not yet freed.
    used: usize,
    /// Freed blocks, each holding the next one's address.
    free: Option<NonNull<FreeBlock>>,
    /// Offset of the first block never handed out: a slab is carved as it
    /// is used, so a new slab is not written all over.
    untouched: usize,
    /// Neighbours in the class's list of slabs with a free block.
    previous: Option<NonNull<Header>>,
    next: Option<NonNull<Header>>,
}

/// A free block: the link to the next free block of its slab.
struct FreeBlock {
    next: Option<NonNull<FreeBlock>>,
}

/// Every class's slabs that have a free block. Full slabs are in no list:
/// a block freed into one puts it back.
pub struct Slabs {
    available: [Option<NonNull<Header>>; CLASSES.len()],
    /// Slabs taken from [`Pages`] and not given back.
    pages: usize,
}

// SAFETY: `Slabs` owns the slabs its pointers reach; whoever holds it (the
// kernel's heap, behind a lock) is the only one that touches them.
unsafe impl Send for Slabs {}

impl Default for Slabs {
    fn default() -> Self {
        Self::new()
    }
}

impl Slabs {
    /// No slabs yet.
    pub const fn new() -> Self {
        Self {
            available: [None; CLASSES.len()],
            pages: 0,
        }
    }

    /// Whether blocks of `layout` come from slabs.
    pub fn serves(layout: Layout) -> bool {
        class_of(layout).is_some()
    }

    /// Pages held as slabs now.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// A block for `layout`, or `None` if `layout` is not served here or
    /// `pages` has none left.
    pub fn allocate(&mut self, layout: Layout, pages: &mut impl Pages) -> Option<NonNull<u8>> {
        let class = class_of(layout)?;
        let slab = match *self.available.get(class)? {
            Some(slab) => slab,
            None => self.new_slab(class, pages)?,
        };
        let size = *CLASSES.get(class)?;
        // SAFETY: `slab` is in the class's list, so it is a live slab this
        // structure owns, with a free block (full slabs leave the list).
        let header = unsafe { &mut *slab.as_ptr() };
        let block = match header.free {
            Some(free) => {
                // SAFETY: a block on a slab's free list is free and holds
                // the link written when it was freed.
                header.free = unsafe { free.as_ref() }.next;
                free.cast::<u8>()
            }
            None => {
                let offset = header.untouched;
                header.untouched += size;
                // SAFETY: a slab with no freed block but in the list has
                // untouched blocks: `offset + size <= PAGE`.
                unsafe { slab.cast::<u8>().add(offset) }
            }
        };
        header.used += 1;
        if header.used == capacity(size) {
            self.unlink(class, slab);
        }
        Some(block)
    }

    /// Gives back a block [`Slabs::allocate`] returned.
    ///
    /// # Safety
    /// `block` came from [`Slabs::allocate`] of this structure with the
    /// same `layout`, is not used any more, and `pages` is the source
    /// the slabs came from.
    pub unsafe fn free(&mut self, block: NonNull<u8>, layout: Layout, pages: &mut impl Pages) {
        let Some(class) = class_of(layout) else { return };
        let Some(&size) = CLASSES.get(class) else { return };
        let page = block.as_ptr().map_addr(|address| address & !(PAGE - 1));
        // SAFETY: per the contract the block lies in a slab, which starts
        // with its header at the page boundary below it.
        let slab = unsafe { NonNull::new_unchecked(page.cast::<Header>()) };
        let (was_full, empty) = {
            // SAFETY: the slab is live (one of its blocks was in use) and
            // owned by this structure; the reference ends in this block,
            // before the list operations below touch the header.
            let header = unsafe { &mut *slab.as_ptr() };
            let was_full = header.used == capacity(size);
            let freed = block.cast::<FreeBlock>();
            // SAFETY: the block is free now and at least 16 bytes, aligned
            // to 16: room for the link.
            unsafe { freed.write(FreeBlock { next: header.free }) };
            header.free = Some(freed);
            header.used -= 1;
            (was_full, header.used == 0)
        };
        if was_full {
            self.link(class, slab);
        }
        let head = self.available.get(class).copied().flatten();
        // SAFETY: as above; nothing else refers to the header now.
        let alone = head == Some(slab) && unsafe { (*slab.as_ptr()).next }.is_none();
        if empty && !alone {
            self.unlink(class, slab);
            self.pages -= 1;
            // SAFETY: the slab came from `pages` (the contract), and none of
            // its blocks is in use; no list names it any more.
            unsafe { pages.free(slab.cast()) };
        }
    }

    /// A fresh slab for `class`, at the head of its list.
    fn new_slab(&mut self, class: usize, pages: &mut impl Pages) -> Option<NonNull<Header>> {
        let slab = pages.allocate()?.cast::<Header>();
        // SAFETY: `Pages` hands out PAGE-aligned pages nothing else uses,
        // large enough for the header.
        unsafe {
            slab.write(Header {
                used: 0,
                free: None,
                untouched: HEADER_BYTES,
                previous: None,
                next: None,
            });
        }
        self.pages += 1;
        self.link(class, slab);
        Some(slab)
    }

    /// Puts `slab` at the head of `class`'s list.
    fn link(&mut self, class: usize, slab: NonNull<Header>) {
        let Some(head) = self.available.get_mut(class) else { return };
        let next = head.replace(slab);
        // SAFETY: `slab` and the old head are live slabs of this structure;
        // no other reference to their headers is held across this.
        unsafe {
            if let Some(next) = next {
                (*next.as_ptr()).previous = Some(slab);
            }
            let header = &mut *slab.as_ptr();
            header.previous = None;
            header.next = next;
        }
    }

    /// Takes `slab` out of `class`'s list.
    fn unlink(&mut self, class: usize, slab: NonNull<Header>) {
        // SAFETY: `slab` is a live slab in the list, and so are its
        // neighbours; no other reference to their headers is held.
        unsafe {
            let header = &mut *slab.as_ptr();
            let (previous, next) = (header.previous.take(), header.next.take());
            if let Some(next) = next {
                (*next.as_ptr()).previous = previous;
            }
            match previous {
                Some(previous) => (*previous.as_ptr()).next = next,
                None => {
                    if let Some(head) = self.available.get_mut(class) {
                        *head = next;
                    }
                }
            }
        }
    }
}

/// The class whose blocks hold `layout`, if any.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > MAX_ALIGN {
        return None;
    }
    CLASSES.iter().position(|&size| size >= layout.size())
}

/// Blocks of `size` bytes in one slab.
const fn capacity(size: usize) -> usize {
    (PAGE - HEADER_BYTES) / size
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::test_random::Random;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    /// Pages from the host's allocator, counted.
    #[derive(Default)]
    struct HostPages {
        live: BTreeSet<usize>,
        handed_out: usize,
    }

    const PAGE_LAYOUT: Layout = match Layout::from_size_align(PAGE, PAGE) {
        Ok(layout) => layout,
        Err(_) => panic!("a page is a valid layout"),
    };

    // SAFETY: pages come from the host allocator with PAGE size and
    // alignment, and go back to it once.
    unsafe impl Pages for HostPages {
        fn allocate(&mut self) -> Option<NonNull<u8>> {
            // SAFETY: the layout has a non-zero size.
            let page = NonNull::new(unsafe { std::alloc::alloc(PAGE_LAYOUT) })?;
            self.live.insert(page.as_ptr() as usize);
            self.handed_out += 1;
            Some(page)
        }

        unsafe fn free(&mut self, page: NonNull<u8>) {
            assert!(self.live.remove(&(page.as_ptr() as usize)), "a page freed twice or never given");
            // SAFETY: the page came from `alloc` with this layout.
            unsafe { std::alloc::dealloc(page.as_ptr(), PAGE_LAYOUT) };
        }
    }

    impl Drop for HostPages {
        fn drop(&mut self) {
            for &page in &self.live {
                // SAFETY: still allocated with this layout; the test is over.
                unsafe { std::alloc::dealloc(page as *mut u8, PAGE_LAYOUT) };
            }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn large_or_overaligned_blocks_are_not_served() {
        assert!(Slabs::serves(layout(1, 1)));
        assert!(Slabs::serves(layout(0, 1)));
        assert!(Slabs::serves(layout(MAX_BLOCK, 8)));
        assert!(!Slabs::serves(layout(MAX_BLOCK + 1, 8)));
        assert!(!Slabs::serves(layout(64, 64)));
        let mut slabs = Slabs::new();
        let mut pages = HostPages::default();
        assert_eq!(slabs.allocate(layout(4096, 8), &mut pages), None);
        assert_eq!(pages.handed_out, 0);
    }

    #[test]
    fn blocks_are_aligned_inside_their_slab_and_do_not_overlap() {
        let mut slabs = Slabs::new();
        let mut pages = HostPages::default();
        for &size in &CLASSES {
            let wanted = layout(size, 16);
            let blocks: Vec<usize> = (0..3 * capacity(size))
                .map(|_| slabs.allocate(wanted, &mut pages).unwrap().as_ptr() as usize)
                .collect();
            let mut sorted = blocks.clone();
            sorted.sort_unstable();
            for pair in sorted.windows(2) {
                assert!(pair[0] + size <= pair[1], "blocks of {size} overlap");
            }
            for &block in &blocks {
                assert_eq!(block % MAX_ALIGN, 0);
                let offset = block % PAGE;
                assert!(offset >= HEADER_BYTES && offset + size <= PAGE, "block of {size} at offset {offset}");
                assert!(pages.live.contains(&(block - offset)));
            }
            for block in blocks {
                // SAFETY: allocated just above with this layout.
                unsafe { slabs.free(NonNull::new(block as *mut u8).unwrap(), wanted, &mut pages) };
            }
        }
    }

    #[test]
    fn freed_blocks_are_reused_and_empty_slabs_go_back_but_one() {
        let mut slabs = Slabs::new();
        let mut pages = HostPages::default();
        let wanted = layout(40, 8);
        let per_slab = capacity(48);
        let blocks: Vec<NonNull<u8>> = (0..10 * per_slab)
            .map(|_| slabs.allocate(wanted, &mut pages).unwrap())
            .collect();
        assert_eq!(slabs.pages(), 10);
        // A block freed from a full slab is the next one handed out.
        // SAFETY: allocated above with this layout, freed once.
        unsafe { slabs.free(blocks[5], wanted, &mut pages) };
        assert_eq!(slabs.allocate(wanted, &mut pages), Some(blocks[5]));
        assert_eq!(pages.handed_out, 10);
        let (last, rest) = blocks.split_last().unwrap();
        // SAFETY: as above.
        unsafe { slabs.free(*last, wanted, &mut pages) };
        for &block in &rest[..per_slab] {
            // SAFETY: as above.
            unsafe { slabs.free(block, wanted, &mut pages) };
        }
        assert_eq!(slabs.pages(), 9, "an emptied slab goes back while another has room");
        for &block in &rest[per_slab..] {
            // SAFETY: as above.
            unsafe { slabs.free(block, wanted, &mut pages) };
        }
        assert_eq!(slabs.pages(), 1, "the class keeps one empty slab");
        assert_eq!(pages.live.len(), 1);
        // Allocating and freeing one block in a loop takes no new pages.
        let handed_out = pages.handed_out;
        for _ in 0..100 {
            let block = slabs.allocate(wanted, &mut pages).unwrap();
            // SAFETY: as above.
            unsafe { slabs.free(block, wanted, &mut pages) };
        }
        assert_eq!(pages.handed_out, handed_out);
    }

    #[test]
    fn running_out_of_pages_is_reported() {
        struct NoPages;
        // SAFETY: hands out nothing.
        unsafe impl Pages for NoPages {
            fn allocate(&mut self) -> Option<NonNull<u8>> {
                None
            }
            unsafe fn free(&mut self, _: NonNull<u8>) {
                unreachable!("no page was given");
            }
        }
        assert_eq!(Slabs::new().allocate(layout(8, 8), &mut NoPages), None);
    }

    #[test]
    fn random_use_keeps_every_block_intact() {
        let mut slabs = Slabs::new();
        let mut pages = HostPages::default();
        let mut random = Random(7);
        // Live blocks, each filled with a byte derived from its address.
        let mut live: Vec<(NonNull<u8>, Layout)> = Vec::new();
        let fill = |block: NonNull<u8>, wanted: Layout| (block.as_ptr() as usize / 16) as u8 ^ wanted.size() as u8;
        for _ in 0..50_000 {
            if live.is_empty() || random.below(3) > 0 {
                let wanted = layout(1 + random.below(MAX_BLOCK as u64) as usize, 1 << random.below(5));
                let block = slabs.allocate(wanted, &mut pages).unwrap();
                // SAFETY: the block holds `wanted.size()` bytes for us.
                unsafe { block.as_ptr().write_bytes(fill(block, wanted), wanted.size()) };
                live.push((block, wanted));
            } else {
                let (block, wanted) = live.swap_remove(random.below(live.len() as u64) as usize);
                // SAFETY: the block is live and holds `wanted.size()` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(block.as_ptr(), wanted.size()) };
                assert!(bytes.iter().all(|&byte| byte == fill(block, wanted)), "a block was overwritten");
                // SAFETY: allocated with this layout, freed once.
                unsafe { slabs.free(block, wanted, &mut pages) };
            }
        }
        for (block, wanted) in live.drain(..) {
            // SAFETY: as above.
            unsafe { slabs.free(block, wanted, &mut pages) };
        }
        assert!(slabs.pages() <= CLASSES.len(), "{} slabs left with nothing in use", slabs.pages());
        assert_eq!(pages.live.len(), slabs.pages());
    }
}
