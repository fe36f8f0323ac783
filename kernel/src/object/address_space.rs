//! AddressSpace: a page-table root whose kernel half is shared with every
//! other address space and whose user half belongs to one process.

use crate::arch::paging;
use crate::memory::frames::{self, KernelFrames};
use crate::memory::layout::USER_END;
use crate::memory::{frame_bytes, physical_to_virtual};
use x86_64::structures::paging::{Mapper, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

/// Why a mapping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Physical memory ran out.
    OutOfMemory,
    /// The address is not in the user half.
    NotUserAddress,
    /// The page is already mapped.
    AlreadyMapped,
}

/// A user address space.
pub struct AddressSpace {
    root: PhysFrame,
}

impl AddressSpace {
    /// A new address space with an empty user half.
    ///
    /// # Errors
    /// [`MapError::OutOfMemory`] when no frame is left for the root table.
    pub fn new() -> Result<Self, MapError> {
        let root = frames::allocate_zeroed().ok_or(MapError::OutOfMemory)?;
        // SAFETY: both frames are live PML4s; `root` is fresh and only this
        // function refers to it; the kernel root is only read.
        unsafe {
            let kernel: &PageTable = &*physical_to_virtual(paging::kernel_root().start_address().as_u64()).as_ptr();
            let new: &mut PageTable = &mut *physical_to_virtual(root.start_address().as_u64()).as_mut_ptr();
            for index in 256..512 {
                new[index] = kernel[index].clone();
            }
        }
        Ok(Self { root })
    }

    /// The root table, for CR3.
    pub fn root(&self) -> PhysFrame {
        self.root
    }

    /// Maps a fresh zeroed frame at `page` with `flags` (plus present and
    /// user) and returns the frame.
    ///
    /// # Errors
    /// [`MapError`] says why; nothing is changed then, except page tables
    /// that were created on the way and stay for later mappings.
    pub fn map_new_page(&mut self, page: Page, flags: PageTableFlags) -> Result<PhysFrame, MapError> {
        if page.start_address().as_u64() >= USER_END {
            return Err(MapError::NotUserAddress);
        }
        let frame = frames::allocate_zeroed().ok_or(MapError::OutOfMemory)?;
        let flags = flags | PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        let parents = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        // SAFETY: this address space owns its root; the frame is fresh.
        let result =
            unsafe { paging::table(self.root).map_to_with_table_flags(page, frame, flags, parents, &mut KernelFrames) };
        match result {
            // Not the current address space's TLB unless it is active; a
            // fresh mapping has no stale entry to flush anyway.
            Ok(flush) => flush.ignore(),
            Err(error) => {
                frames::free(frame);
                return Err(match error {
                    x86_64::structures::paging::mapper::MapToError::PageAlreadyMapped(_) => MapError::AlreadyMapped,
                    _ => MapError::OutOfMemory,
                });
            }
        }
        Ok(frame)
    }

    /// Widens a mapped page's access to include what `flags` allow: write
    /// if either allows it, execute unless both forbid it.
    pub fn widen_access(&mut self, page: Page, flags: PageTableFlags) {
        if let Some((_, mut current)) = paging::translate(self.root, page.start_address()) {
            current |= flags & PageTableFlags::WRITABLE;
            if !flags.contains(PageTableFlags::NO_EXECUTE) {
                current.remove(PageTableFlags::NO_EXECUTE);
            }
            // SAFETY: this address space owns its root; only flags change.
            if let Ok(flush) = unsafe { paging::table(self.root).update_flags(page, current) } {
                flush.ignore();
            }
        }
    }

    /// The physical address behind a user address if it is mapped user
    /// accessible, with write access when `write` is set.
    pub fn user_physical(&self, address: VirtAddr, write: bool) -> Option<PhysAddr> {
        if address.as_u64() >= USER_END {
            return None;
        }
        let (physical, flags) = paging::translate(self.root, address)?;
        let needed = PageTableFlags::PRESENT
            | PageTableFlags::USER_ACCESSIBLE
            | if write {
                PageTableFlags::WRITABLE
            } else {
                PageTableFlags::empty()
            };
        flags.contains(needed).then_some(physical)
    }

    /// Copies user memory at `address` into `out`, after checking that every
    /// byte is mapped user-readable. Copies nothing when a check fails.
    ///
    /// # Errors
    /// [`MapError::NotUserAddress`] if some byte is not user-readable.
    pub fn read_user(&self, address: VirtAddr, out: &mut [u8]) -> Result<(), MapError> {
        self.check_user(address, out.len(), false)?;
        self.for_each_chunk(address, out.len(), |page, done| {
            let len = page.len();
            out[done..done + len].copy_from_slice(page);
        })
    }

    /// Copies `bytes` into user memory at `address`, after checking that
    /// every byte is mapped user-accessible (write permission is not
    /// needed: the loader fills read-only pages). Copies nothing when a
    /// check fails.
    ///
    /// # Errors
    /// [`MapError::NotUserAddress`] if some byte is not user-accessible.
    pub fn write_user(&mut self, address: VirtAddr, bytes: &[u8]) -> Result<(), MapError> {
        self.check_user(address, bytes.len(), false)?;
        self.for_each_chunk(address, bytes.len(), |page, done| {
            let len = page.len();
            page.copy_from_slice(&bytes[done..done + len]);
        })
    }

    fn check_user(&self, address: VirtAddr, len: usize, write: bool) -> Result<(), MapError> {
        let end = address
            .as_u64()
            .checked_add(len as u64)
            .ok_or(MapError::NotUserAddress)?;
        if end > USER_END {
            return Err(MapError::NotUserAddress);
        }
        let mut page = address.align_down(4096u64).as_u64();
        while page < end {
            self.user_physical(VirtAddr::new(page), write)
                .ok_or(MapError::NotUserAddress)?;
            page += 4096;
        }
        Ok(())
    }

    /// Calls `visit` with each page-sized piece of `[address, address+len)`
    /// (as kernel-accessible bytes) and the offset of that piece.
    fn for_each_chunk(
        &self,
        address: VirtAddr,
        len: usize,
        mut visit: impl FnMut(&mut [u8], usize),
    ) -> Result<(), MapError> {
        let mut done = 0;
        while done < len {
            let target = address + done as u64;
            let physical = self.user_physical(target, false).ok_or(MapError::NotUserAddress)?;
            let offset = (physical.as_u64() % 4096) as usize;
            let chunk = (4096 - offset).min(len - done);
            // SAFETY: the frame is mapped in this address space's user half,
            // so it is RAM owned by the process; the kernel runs with
            // interrupts off on one CPU, so no user thread touches it now.
            let page = unsafe { frame_bytes(PhysFrame::containing_address(physical)) };
            visit(&mut page[offset..offset + chunk], done);
            done += chunk;
        }
        Ok(())
    }
}

impl Drop for AddressSpace {
    /// Frees every frame and table of the user half, then the root.
    fn drop(&mut self) {
        // SAFETY: the address space is being destroyed and is not active
        // (the scheduler switches away first); its tables are reached only
        // through this root.
        unsafe { free_table(self.root, 4, 0..256) };
        frames::free(self.root);
    }
}

/// Frees the frames under entries `range` of a table at `level`, then the
/// tables themselves (the caller frees `table`).
///
/// # Safety
/// `table` must be a page table at `level` reachable only by the caller.
unsafe fn free_table(table: PhysFrame, level: u8, range: core::ops::Range<usize>) {
    // SAFETY: per the contract, the caller owns the table.
    let entries: &mut PageTable = unsafe { &mut *physical_to_virtual(table.start_address().as_u64()).as_mut_ptr() };
    for index in range {
        let entry = &mut entries[index];
        let Ok(frame) = entry.frame() else { continue };
        let frame: PhysFrame<Size4KiB> = frame;
        if level > 1 {
            // SAFETY: a present non-leaf entry of an owned table points to an
            // owned table one level down (the user half maps no huge pages).
            unsafe { free_table(frame, level - 1, 0..512) };
        }
        frames::free(frame);
        entry.set_unused();
    }
}
