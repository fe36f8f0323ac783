//! Mapped memory shared with a device or another process: a [`Region`] is
//! a run of frames mapped at a fresh address, read and written by offset
//! with bounds checks, so drivers and servers need no unsafe code.
//!
//! The other side (a device doing DMA, a client) may change the bytes at
//! any time, so nothing hands out references: bulk copies are for bytes the
//! other side is done with (a completed transfer), and single words
//! ([`Region::load`], [`Region::store`]) are volatile.

use crate::capability::{AddressSpace, Frame};
use abi::{Error, Rights};
use core::sync::atomic::{AtomicU64, Ordering};

/// Where the next region is mapped; regions never move or reuse addresses.
static NEXT_ADDRESS: AtomicU64 = AtomicU64::new(0x0000_3000_0000_0000);
/// An unmapped page between regions, so an overrun faults.
const GAP: u64 = 4096;
const PAGE: usize = 4096;

/// An access outside a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds;

/// A run of frames mapped at consecutive addresses in this process.
#[derive(Debug)]
pub struct Region {
    address: u64,
    length: usize,
}

impl Region {
    /// Maps `frames`, in order, at a fresh address of `address_space` (this
    /// process's own) with `rights`.
    ///
    /// # Errors
    /// A failed map (not a frame, too few rights, out of memory).
    pub fn map(
        address_space: AddressSpace,
        frames: impl ExactSizeIterator<Item = Frame>,
        rights: Rights,
    ) -> Result<Self, Error> {
        let region = Self::reserve(frames.len());
        for (index, frame) in frames.enumerate() {
            region.map_page(address_space, frame, index, rights)?;
        }
        Ok(region)
    }

    /// Takes a fresh address range of `pages` pages and maps nothing yet:
    /// for a region built a page at a time with [`Region::map_page`].
    /// Touching a page not mapped yet faults.
    pub fn reserve(pages: usize) -> Self {
        let length = pages * PAGE;
        let address = NEXT_ADDRESS.fetch_add(length as u64 + GAP, Ordering::Relaxed);
        Self { address, length }
    }

    /// Maps `frame` as page `index` of the region.
    ///
    /// # Errors
    /// `InvalidArgument` for an index past the end; a failed map.
    pub fn map_page(
        &self,
        address_space: AddressSpace,
        frame: Frame,
        index: usize,
        rights: Rights,
    ) -> Result<(), Error> {
        if index >= self.length / PAGE {
            return Err(Error::new(abi::ErrorKind::InvalidArgument));
        }
        address_space.map(frame, self.address + (index * PAGE) as u64, rights)
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Where it is mapped (for the typed views in this crate).
    pub(crate) fn address(&self) -> u64 {
        self.address
    }

    /// Whether it has no pages.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    fn checked(&self, offset: usize, length: usize) -> Result<*mut u8, OutOfBounds> {
        match offset.checked_add(length) {
            Some(end) if end <= self.length => Ok((self.address as usize + offset) as *mut u8),
            _ => Err(OutOfBounds),
        }
    }

    /// Copies `into.len()` bytes from `offset`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if they are not all inside the region.
    pub fn read(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        let start = self.checked(offset, into.len())?;
        // SAFETY: `checked` put the whole range inside the region, which `map`
        // mapped readable and which stays mapped as long as `self`; `into`
        // is ordinary memory, so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(start, into.as_mut_ptr(), into.len()) };
        Ok(())
    }

    /// Copies `from` to `offset`.
    ///
    /// # Errors
    /// [`OutOfBounds`] if it does not fit inside the region.
    pub fn write(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        let start = self.checked(offset, from.len())?;
        // SAFETY: as in `read`; a region mapped read-only faults here, which
        // is the caller's bug and reported as a fault.
        unsafe { core::ptr::copy_nonoverlapping(from.as_ptr(), start, from.len()) };
        Ok(())
    }

    /// Copies `length` bytes from `source` at `source_offset` to `offset`
    /// (between a client's shared page and DMA memory, without a bounce).
    ///
    /// # Errors
    /// [`OutOfBounds`] if either range is not inside its region.
    pub fn copy_from(
        &self,
        offset: usize,
        source: &Region,
        source_offset: usize,
        length: usize,
    ) -> Result<(), OutOfBounds> {
        let destination = self.checked(offset, length)?;
        let start = source.checked(source_offset, length)?;
        // SAFETY: both ranges were checked to lie in mapped regions; regions
        // never share addresses (each `map` takes a fresh range), so the two
        // cannot overlap unless they are the same region, which `copy`
        // (unlike `copy_nonoverlapping`) allows.
        unsafe { core::ptr::copy(start, destination, length) };
        Ok(())
    }

    /// Reads the little-endian `T` at `offset`, which must be aligned to
    /// its size, in one access (device registers, ring indices).
    ///
    /// # Errors
    /// [`OutOfBounds`] outside the region or unaligned.
    pub fn load<T: Word>(&self, offset: usize) -> Result<T, OutOfBounds> {
        let pointer = self.checked(offset, size_of::<T>())?;
        if !offset.is_multiple_of(size_of::<T>()) {
            return Err(OutOfBounds);
        }
        // SAFETY: inside the region (`checked`) and aligned (the region
        // starts on a page); `T` is a plain integer.
        Ok(unsafe { pointer.cast::<T>().read_volatile() })
    }

    /// Writes `value` at `offset` in one aligned access.
    ///
    /// # Errors
    /// [`OutOfBounds`] outside the region or unaligned.
    pub fn store<T: Word>(&self, offset: usize, value: T) -> Result<(), OutOfBounds> {
        let pointer = self.checked(offset, size_of::<T>())?;
        if !offset.is_multiple_of(size_of::<T>()) {
            return Err(OutOfBounds);
        }
        // SAFETY: as in `load`.
        unsafe { pointer.cast::<T>().write_volatile(value) };
        Ok(())
    }
}

/// The integers [`Region::load`] and [`Region::store`] move in one access.
pub trait Word: Copy + private::Sealed {}
impl Word for u8 {}
impl Word for u16 {}
impl Word for u32 {}
impl Word for u64 {}

mod private {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}
