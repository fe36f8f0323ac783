//! AddressSpace: a page-table root whose kernel half is shared with every
//! other address space and whose user half belongs to one process.
//!
//! It records what each user page maps: a page the loader gave it (owned,
//! freed with the address space) or a frame object (owned by the frame,
//! which outlives its mappings). Page tables are charged to the pool that
//! paid for the address space.

use super::memory::{PAGE_TABLE_COST, Pools};
use crate::arch::paging;
use crate::memory::frames::{self, KernelFrames};
use crate::memory::layout::USER_END;
use crate::memory::{frame_bytes, physical_to_virtual};
use alloc::collections::BTreeMap;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{Mapper, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

/// Why a mapping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Physical memory or the pool ran out.
    OutOfMemory,
    /// The address is not a page in the user half.
    NotUserAddress,
    /// The page is already mapped.
    AlreadyMapped,
}

/// What a user page maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapped {
    /// A page the loader allocated; freed with the address space.
    Owned(PhysFrame),
    /// A frame object, by id.
    Frame(u32),
    /// Kernel memory lent read-only (the boot archive); never freed.
    Borrowed,
}

/// A user address space.
pub struct AddressSpace {
    root: PhysFrame,
    pages: BTreeMap<u64, Mapped>,
    pool: Option<u32>,
    /// Bytes charged to `pool`: the root and every page table since.
    charged: u64,
}

impl AddressSpace {
    /// A new address space with an empty user half, paid for by `pool`
    /// (`None`: the kernel's own, for init).
    ///
    /// # Errors
    /// [`MapError::OutOfMemory`] when the pool or physical memory is short.
    pub fn new(pools: &mut Pools, pool: Option<u32>) -> Result<Self, MapError> {
        if let Some(pool) = pool {
            pools.charge(pool, PAGE_TABLE_COST).map_err(|_| MapError::OutOfMemory)?;
        }
        let Some(root) = frames::allocate_zeroed() else {
            pools.refund(pool, PAGE_TABLE_COST);
            return Err(MapError::OutOfMemory);
        };
        // SAFETY: both frames are live PML4s; `root` is fresh and only this
        // function refers to it; the kernel root is only read.
        unsafe {
            let kernel: &PageTable = &*physical_to_virtual(paging::kernel_root().start_address().as_u64()).as_ptr();
            let new: &mut PageTable = &mut *physical_to_virtual(root.start_address().as_u64()).as_mut_ptr();
            for index in 256..512 {
                new[index] = kernel[index].clone();
            }
        }
        Ok(Self {
            root,
            pages: BTreeMap::new(),
            pool,
            charged: PAGE_TABLE_COST,
        })
    }

    /// The root table, for CR3.
    pub fn root(&self) -> PhysFrame {
        self.root
    }

    /// The pool that pays for it.
    pub fn pool(&self) -> Option<u32> {
        self.pool
    }

    /// Bytes charged to the pool, refunded when it goes.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// Every (address, frame id) mapping of a frame object.
    pub fn frame_mappings(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.pages.iter().filter_map(|(&address, mapped)| match mapped {
            Mapped::Frame(frame) => Some((address, *frame)),
            Mapped::Owned(_) | Mapped::Borrowed => None,
        })
    }

    /// Whether `page` is mapped.
    pub fn is_mapped(&self, page: Page) -> bool {
        self.pages.contains_key(&page.start_address().as_u64())
    }

    /// Maps `frame` at `page` with `flags` (plus present and user), paying
    /// for new page tables from the pool (the kernel pays for init's).
    fn install(
        &mut self,
        pools: &mut Pools,
        page: Page,
        frame: PhysFrame,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        if page.start_address().as_u64() >= USER_END {
            return Err(MapError::NotUserAddress);
        }
        if self.is_mapped(page) {
            return Err(MapError::AlreadyMapped);
        }
        // At most three new tables (PDPT, PD, PT) per mapping: charge for
        // them up front, then refund what was not needed.
        let worst = 3 * PAGE_TABLE_COST;
        if let Some(pool) = self.pool {
            pools.charge(pool, worst).map_err(|_| MapError::OutOfMemory)?;
        }
        let flags = flags | PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        let parents = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        let mut new_tables = KernelFrames::default();
        // SAFETY: this address space owns its root; the frame is the
        // caller's to map; the page is unmapped (checked above).
        let result =
            unsafe { paging::table(self.root).map_to_with_table_flags(page, frame, flags, parents, &mut new_tables) };
        let tables = new_tables.allocated * PAGE_TABLE_COST;
        self.charged += tables;
        if self.pool.is_some() {
            pools.refund(self.pool, worst - tables);
        }
        match result {
            // A page that was not mapped has no TLB entry to flush.
            Ok(flush) => flush.ignore(),
            Err(MapToError::PageAlreadyMapped(_) | MapToError::ParentEntryHugePage) => {
                return Err(MapError::AlreadyMapped);
            }
            Err(MapToError::FrameAllocationFailed) => return Err(MapError::OutOfMemory),
        }
        Ok(())
    }

    /// Maps a fresh zeroed page the address space owns (the loader's).
    ///
    /// # Errors
    /// [`MapError`] says why; nothing is mapped then.
    pub fn map_new_page(&mut self, pools: &mut Pools, page: Page, flags: PageTableFlags) -> Result<(), MapError> {
        let frame = frames::allocate_zeroed().ok_or(MapError::OutOfMemory)?;
        if let Err(error) = self.install(pools, page, frame, flags) {
            frames::free(frame);
            return Err(error);
        }
        self.pages.insert(page.start_address().as_u64(), Mapped::Owned(frame));
        Ok(())
    }

    /// Maps kernel memory that the kernel keeps for good (the boot
    /// archive) at `page`, read-only.
    ///
    /// # Errors
    /// [`MapError`] says why; nothing is mapped then.
    pub fn map_borrowed(&mut self, pools: &mut Pools, page: Page, frame: PhysFrame) -> Result<(), MapError> {
        self.install(pools, page, frame, PageTableFlags::NO_EXECUTE)?;
        self.pages.insert(page.start_address().as_u64(), Mapped::Borrowed);
        Ok(())
    }

    /// Maps frame object `id` (page `frame`) at `page`.
    ///
    /// # Errors
    /// [`MapError`] says why; nothing is mapped then.
    pub fn map_frame(
        &mut self,
        pools: &mut Pools,
        page: Page,
        id: u32,
        frame: PhysFrame,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        self.install(pools, page, frame, flags)?;
        self.pages.insert(page.start_address().as_u64(), Mapped::Frame(id));
        Ok(())
    }

    /// Removes the frame-object mapping at `address`; returns the frame id,
    /// or `None` if no frame object is mapped there.
    pub fn unmap_frame(&mut self, address: u64) -> Option<u32> {
        let Some(&Mapped::Frame(id)) = self.pages.get(&address) else {
            return None;
        };
        self.pages.remove(&address);
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(address));
        // SAFETY: this address space owns its root; the page was mapped.
        if let Ok((_, flush)) = unsafe { paging::table(self.root) }.unmap(page) {
            if Cr3::read().0 == self.root {
                flush.flush();
            } else {
                // Not loaded: its TLB entries go when CR3 is next written.
                flush.ignore();
            }
        }
        Some(id)
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
            if let Some(target) = out.get_mut(done..done + page.len()) {
                target.copy_from_slice(page);
            }
        })
    }

    /// Copies `bytes` into user memory at `address`. With `need_write`,
    /// every byte must be mapped user-writable (IPC into a buffer); without,
    /// user-accessible is enough (the loader filling read-only pages).
    /// Copies nothing when a check fails.
    ///
    /// # Errors
    /// [`MapError::NotUserAddress`] if some byte lacks the access.
    pub fn write_user(&mut self, address: VirtAddr, bytes: &[u8], need_write: bool) -> Result<(), MapError> {
        self.check_user(address, bytes.len(), need_write)?;
        self.for_each_chunk(address, bytes.len(), |page, done| {
            if let Some(source) = bytes.get(done..done + page.len()) {
                page.copy_from_slice(source);
            }
        })
    }

    /// Checks that every byte of `[address, address+len)` is mapped
    /// user-accessible (and user-writable with `write`), as `read_user` and
    /// `write_user` do before they copy: for a syscall that must not start
    /// an operation it could not finish.
    pub fn check_user(&self, address: VirtAddr, len: usize, write: bool) -> Result<(), MapError> {
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
            // so it is RAM or device memory owned by the process; the kernel
            // runs with interrupts off on one CPU, so no user thread touches
            // it now.
            let page = unsafe { frame_bytes(PhysFrame::containing_address(physical)) };
            if let Some(piece) = page.get_mut(offset..offset + chunk) {
                visit(piece, done);
            }
            done += chunk;
        }
        Ok(())
    }
}

impl Drop for AddressSpace {
    /// Frees the pages it owns, then every table of the user half, then
    /// the root. Frame objects keep their pages.
    fn drop(&mut self) {
        for mapped in self.pages.values() {
            if let Mapped::Owned(frame) = mapped {
                frames::free(*frame);
            }
        }
        // SAFETY: the address space is being destroyed and is not loaded
        // (the scheduler switches away first); its tables are reached only
        // through this root.
        unsafe { free_tables(self.root, 4, 0..256) };
        frames::free(self.root);
    }
}

/// Frees the page tables under entries `range` of a table at `level` (not
/// the pages they map: those belong to the address space's records).
///
/// # Safety
/// `table` must be a page table at `level` reachable only by the caller.
unsafe fn free_tables(table: PhysFrame, level: u8, range: core::ops::Range<usize>) {
    if level == 1 {
        return;
    }
    // SAFETY: per the contract, the caller owns the table.
    let entries: &mut PageTable = unsafe { &mut *physical_to_virtual(table.start_address().as_u64()).as_mut_ptr() };
    for index in range {
        let entry = &mut entries[index];
        let Ok(child) = entry.frame() else { continue };
        // SAFETY: a present entry above level 1 points to a table one level
        // down, owned like this one (the user half maps no huge pages).
        unsafe { free_tables(child, level - 1, 0..512) };
        frames::free(child);
        entry.set_unused();
    }
}
