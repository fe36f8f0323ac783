//! The physical frame allocator: one bit per 4 KiB frame.
//!
//! Built once from the boot memory map. A set bit means the frame is free.
//! The bitmap itself lives in memory the caller carves out of a usable
//! region ([`bitmap_placement`]), so the allocator needs no heap and can be
//! the first thing the kernel sets up.

use core::ops::Range;

/// Size of one physical frame.
pub const FRAME_SIZE: u64 = 4096;

/// Bytes of bitmap needed to track physical memory below `end`.
pub const fn bitmap_bytes(end: u64) -> u64 {
    end.div_ceil(FRAME_SIZE).div_ceil(64) * 8
}

/// Finds a frame-aligned place for a bitmap of `bytes` bytes inside one of
/// the `usable` regions, and returns its physical start address.
pub fn bitmap_placement(usable: impl Iterator<Item = Range<u64>>, bytes: u64) -> Option<u64> {
    usable.into_iter().find_map(|region| {
        let start = region.start.checked_next_multiple_of(FRAME_SIZE)?;
        let end = start.checked_add(bytes)?;
        (end <= region.end).then_some(start)
    })
}

/// Why a frame could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The address is not frame-aligned.
    Misaligned,
    /// The frame is beyond the memory the allocator tracks.
    OutOfRange,
    /// The frame is already free: a double free.
    AlreadyFree,
}

/// A bitmap allocator of 4 KiB physical frames.
pub struct FrameAllocator<'a> {
    /// Bit `i` of word `w` set: frame `w * 64 + i` is free.
    bitmap: &'a mut [u64],
    /// The word where the next search starts; every word below it is empty.
    next_word: usize,
    free_frames: u64,
    total_frames: u64,
}

impl<'a> FrameAllocator<'a> {
    /// Builds an allocator over `usable` regions, using `bitmap` for its
    /// bookkeeping, and keeps `reserved` (the bitmap's own frames, say)
    /// allocated. Partial frames at region edges are left out; memory beyond
    /// what `bitmap` can describe is ignored.
    pub fn new(bitmap: &'a mut [u64], usable: impl Iterator<Item = Range<u64>>, reserved: Range<u64>) -> Self {
        bitmap.fill(0);
        let mut allocator = Self {
            bitmap,
            next_word: 0,
            free_frames: 0,
            total_frames: 0,
        };
        let limit = allocator.bitmap.len() as u64 * 64;
        for region in usable {
            let first = region.start.div_ceil(FRAME_SIZE);
            let end = (region.end / FRAME_SIZE).min(limit);
            for frame in first..end {
                let address = frame * FRAME_SIZE;
                if reserved.contains(&address) || allocator.is_free(frame) {
                    continue;
                }
                allocator.set_free(frame, true);
                allocator.free_frames += 1;
                allocator.total_frames += 1;
            }
        }
        allocator
    }

    /// Allocates one frame and returns its physical address, or `None` when
    /// memory is exhausted.
    pub fn allocate(&mut self) -> Option<u64> {
        let word_index = self.next_word + self.bitmap.get(self.next_word..)?.iter().position(|&word| word != 0)?;
        self.next_word = word_index;
        let word = self.bitmap.get(word_index)?;
        let frame = word_index as u64 * 64 + u64::from(word.trailing_zeros());
        self.set_free(frame, false);
        self.free_frames -= 1;
        Some(frame * FRAME_SIZE)
    }

    /// Allocates `count` physically consecutive frames (for device DMA) and
    /// returns the first one's address; `None` if no run that long is free.
    /// First fit: O(frames tracked).
    pub fn allocate_contiguous(&mut self, count: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let limit = self.bitmap.len() as u64 * 64;
        let mut start = 0;
        let mut run = 0;
        for frame in 0..limit {
            if self.is_free(frame) {
                if run == 0 {
                    start = frame;
                }
                run += 1;
                if run == count {
                    for taken in start..start + count {
                        self.set_free(taken, false);
                    }
                    self.free_frames -= count;
                    return Some(start * FRAME_SIZE);
                }
            } else {
                run = 0;
            }
        }
        None
    }

    /// Returns a frame to the allocator.
    ///
    /// # Errors
    /// Refuses a misaligned address, an address beyond the tracked memory,
    /// and a frame that is already free, leaving the allocator unchanged.
    pub fn free(&mut self, address: u64) -> Result<(), FreeError> {
        if !address.is_multiple_of(FRAME_SIZE) {
            return Err(FreeError::Misaligned);
        }
        let frame = address / FRAME_SIZE;
        if frame >= self.bitmap.len() as u64 * 64 {
            return Err(FreeError::OutOfRange);
        }
        if self.is_free(frame) {
            return Err(FreeError::AlreadyFree);
        }
        self.set_free(frame, true);
        self.free_frames += 1;
        self.next_word = self.next_word.min((frame / 64) as usize);
        Ok(())
    }

    /// Frames free now.
    pub fn free_frames(&self) -> u64 {
        self.free_frames
    }

    /// Frames the allocator manages, free or not.
    pub fn total_frames(&self) -> u64 {
        self.total_frames
    }

    fn is_free(&self, frame: u64) -> bool {
        let word = self.bitmap.get((frame / 64) as usize).copied().unwrap_or(0);
        word & (1 << (frame % 64)) != 0
    }

    fn set_free(&mut self, frame: u64, free: bool) {
        if let Some(word) = self.bitmap.get_mut((frame / 64) as usize) {
            let bit = 1 << (frame % 64);
            if free { *word |= bit } else { *word &= !bit }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    fn bitmap_for(end: u64) -> Vec<u64> {
        vec![0; (bitmap_bytes(end) / 8) as usize]
    }

    #[test]
    fn bitmap_size_covers_every_frame() {
        assert_eq!(bitmap_bytes(0), 0);
        assert_eq!(bitmap_bytes(FRAME_SIZE), 8);
        assert_eq!(bitmap_bytes(64 * FRAME_SIZE), 8);
        assert_eq!(bitmap_bytes(64 * FRAME_SIZE + 1), 16);
        assert_eq!(bitmap_bytes(512 << 20), 16 * 1024);
    }

    #[test]
    fn placement_is_aligned_and_inside_a_region() {
        let regions = [0x1000..0x1800, 0x2100..0x9000];
        assert_eq!(bitmap_placement(regions.iter().cloned(), 0x1000), Some(0x3000));
        assert_eq!(bitmap_placement(regions.iter().cloned(), 0x7000), None);
    }

    #[test]
    fn allocates_only_usable_whole_frames() {
        let mut bitmap = bitmap_for(0x10_0000);
        let regions = [0x0800..0x3000, 0x8000..0xa800];
        let mut allocator = FrameAllocator::new(&mut bitmap, regions.iter().cloned(), 0..0);
        assert_eq!(allocator.total_frames(), 4); // 0x1000, 0x2000, 0x8000, 0x9000
        let mut got = Vec::new();
        while let Some(frame) = allocator.allocate() {
            got.push(frame);
        }
        assert_eq!(got, [0x1000, 0x2000, 0x8000, 0x9000]);
        assert_eq!(allocator.free_frames(), 0);
    }

    #[test]
    fn reserved_frames_are_never_handed_out() {
        let mut bitmap = bitmap_for(0x10_0000);
        let mut allocator = FrameAllocator::new(&mut bitmap, core::iter::once(0..0x5000), 0x1000..0x3000);
        let mut got = Vec::new();
        while let Some(frame) = allocator.allocate() {
            got.push(frame);
        }
        assert_eq!(got, [0, 0x3000, 0x4000]);
    }

    #[test]
    fn freed_frames_come_back_and_double_free_is_refused() {
        let mut bitmap = bitmap_for(0x100_0000);
        let mut allocator = FrameAllocator::new(&mut bitmap, core::iter::once(0..0x100_0000), 0..0);
        let frames: Vec<u64> = (0..200).map(|_| allocator.allocate().unwrap()).collect();
        assert_eq!(allocator.free_frames(), 4096 - 200);
        allocator.free(frames[70]).unwrap();
        assert_eq!(allocator.free(frames[70]), Err(FreeError::AlreadyFree));
        assert_eq!(allocator.allocate(), Some(frames[70]));
        assert_eq!(allocator.allocate(), Some(200 * FRAME_SIZE));
    }

    #[test]
    fn contiguous_runs_skip_holes_and_come_back() {
        let mut bitmap = bitmap_for(0x10_0000);
        let regions = [0x0..0x3000, 0x4000..0x9000];
        let mut allocator = FrameAllocator::new(&mut bitmap, regions.iter().cloned(), 0..0);
        assert_eq!(
            allocator.allocate_contiguous(4),
            Some(0x4000),
            "the first run of 4 is after the hole"
        );
        assert_eq!(allocator.free_frames(), 4);
        assert_eq!(allocator.allocate_contiguous(4), None);
        assert_eq!(allocator.allocate_contiguous(0), None);
        assert_eq!(allocator.allocate_contiguous(3), Some(0x0));
        for frame in [0x4000, 0x5000, 0x6000, 0x7000] {
            allocator.free(frame).unwrap();
        }
        assert_eq!(allocator.allocate_contiguous(5), Some(0x4000));
        assert_eq!(allocator.free_frames(), 0);
    }

    #[test]
    fn bad_frees_change_nothing() {
        let mut bitmap = bitmap_for(0x10_0000);
        let mut allocator = FrameAllocator::new(&mut bitmap, core::iter::once(0..0x10_0000), 0..0);
        let frame = allocator.allocate().unwrap();
        let free_before = allocator.free_frames();
        assert_eq!(allocator.free(frame + 1), Err(FreeError::Misaligned));
        assert_eq!(allocator.free(0x10_0000), Err(FreeError::OutOfRange));
        assert_eq!(allocator.free(!0xfff), Err(FreeError::OutOfRange));
        assert_eq!(allocator.free_frames(), free_before);
    }

    #[test]
    fn overlapping_regions_are_counted_once() {
        let mut bitmap = bitmap_for(0x10_0000);
        let allocator = FrameAllocator::new(&mut bitmap, [0..0x4000, 0x2000..0x6000].into_iter(), 0..0);
        assert_eq!(allocator.total_frames(), 6);
    }

    #[test]
    fn memory_beyond_the_bitmap_is_ignored() {
        let mut bitmap = vec![0u64; 1]; // 64 frames
        let mut allocator = FrameAllocator::new(&mut bitmap, core::iter::once(0..0x100_0000), 0..0);
        assert_eq!(allocator.total_frames(), 64);
        let mut count = 0;
        while allocator.allocate().is_some() {
            count += 1;
        }
        assert_eq!(count, 64);
    }
}
