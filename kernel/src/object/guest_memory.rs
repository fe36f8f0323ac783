//! GuestMemory: a guest-physical address space, as the nested page tables
//! (AMD NPT or Intel EPT) that translate a guest's physical addresses to
//! frames the VMM owns.
//!
//! Only frame objects are ever mapped, so a guest reaches no memory but the
//! frames its VMM gave it; an address with no frame exits to the VMM. The
//! tables are charged to the pool that paid for the guest memory, like an
//! address space's.

use super::memory::{PAGE_TABLE_COST, Pools};
use crate::arch::virt::TableFormat;
use crate::memory::frames;
use crate::memory::physical_to_virtual;
use abi::vcpu::GUEST_PHYSICAL_END;
use alloc::collections::BTreeMap;
use x86_64::structures::paging::PhysFrame;

/// Bits of a table entry's physical address.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Why a guest mapping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMapError {
    /// Physical memory or the pool ran out.
    OutOfMemory,
    /// The address is not page-aligned or is past [`GUEST_PHYSICAL_END`].
    BadAddress,
    /// Something is mapped there already.
    AlreadyMapped,
}

/// What the guest may do with a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAccess {
    /// Writes allowed.
    pub write: bool,
    /// Instruction fetches allowed.
    pub execute: bool,
}

/// A guest's physical memory.
pub struct GuestMemory {
    root: PhysFrame,
    format: TableFormat,
    /// Guest-physical page address to the frame object mapped there.
    pages: BTreeMap<u64, u32>,
    pool: u32,
    charged: u64,
    /// Counts unmaps: a vcpu that last entered at an older generation
    /// flushes its cached translations first.
    generation: u64,
}

impl GuestMemory {
    /// An empty guest memory whose tables `pool` pays for.
    ///
    /// # Errors
    /// [`GuestMapError::OutOfMemory`].
    pub fn new(pools: &mut Pools, pool: u32, format: TableFormat) -> Result<Self, GuestMapError> {
        let root = new_table(pools, pool)?;
        Ok(Self {
            root,
            format,
            pages: BTreeMap::new(),
            pool,
            charged: PAGE_TABLE_COST,
            generation: 0,
        })
    }

    /// The top-level table, for the nested-paging pointer.
    pub fn root(&self) -> PhysFrame {
        self.root
    }

    /// The pool that pays for it.
    pub fn pool(&self) -> u32 {
        self.pool
    }

    /// Bytes charged to the pool.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// Changes on every unmap.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every (guest-physical address, frame id) mapping.
    pub fn frame_mappings(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.pages.iter().map(|(&address, &frame)| (address, frame))
    }

    /// Maps frame object `frame` (at `physical`) at `address` with `access`.
    ///
    /// # Errors
    /// A bad or used address, or no memory for tables.
    pub fn map(
        &mut self,
        pools: &mut Pools,
        address: u64,
        frame: u32,
        physical: PhysFrame,
        access: GuestAccess,
    ) -> Result<(), GuestMapError> {
        if address % 4096 != 0 || address >= GUEST_PHYSICAL_END {
            return Err(GuestMapError::BadAddress);
        }
        if self.pages.contains_key(&address) {
            return Err(GuestMapError::AlreadyMapped);
        }
        let mut table = self.root;
        for level in (2..=4).rev() {
            let entry = entry_mut(table, index(address, level));
            if *entry == 0 {
                let child = new_table(pools, self.pool)?;
                self.charged += PAGE_TABLE_COST;
                *entry = self.format.table(child.start_address().as_u64());
            }
            table = PhysFrame::containing_address(x86_64::PhysAddr::new(*entry & ADDRESS_MASK));
        }
        *entry_mut(table, index(address, 1)) = self.format.leaf(physical.start_address().as_u64(), access);
        self.pages.insert(address, frame);
        Ok(())
    }

    /// Unmaps the page at `address`; returns the frame object that was
    /// there. The tables stay (they are freed with the guest memory).
    pub fn unmap(&mut self, address: u64) -> Option<u32> {
        let frame = self.pages.remove(&address)?;
        let mut table = self.root;
        for level in (2..=4).rev() {
            let entry = *entry_mut(table, index(address, level));
            table = PhysFrame::containing_address(x86_64::PhysAddr::new(entry & ADDRESS_MASK));
        }
        *entry_mut(table, index(address, 1)) = 0;
        self.generation += 1;
        Some(frame)
    }
}

impl Drop for GuestMemory {
    /// Frees every table; the frames mapped belong to their frame objects.
    fn drop(&mut self) {
        free_tables(self.root, 4);
    }
}

/// The table index of `address` at `level` (4 is the top).
fn index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// A zeroed table page paid for by `pool`.
fn new_table(pools: &mut Pools, pool: u32) -> Result<PhysFrame, GuestMapError> {
    pools
        .charge(pool, PAGE_TABLE_COST)
        .map_err(|_| GuestMapError::OutOfMemory)?;
    frames::allocate_zeroed().ok_or_else(|| {
        pools.refund(Some(pool), PAGE_TABLE_COST);
        GuestMapError::OutOfMemory
    })
}

/// Entry `index` of the table in `table`.
fn entry_mut(table: PhysFrame, index: usize) -> &'static mut u64 {
    let entries: *mut u64 = physical_to_virtual(table.start_address().as_u64()).as_mut_ptr();
    // SAFETY: `table` is a table page this guest memory allocated and owns,
    // reached through the kernel's map of all physical memory; `index` is
    // below 512 (`index()` masks it); the kernel runs one CPU with the big
    // lock held, so no other reference to the entry is live.
    unsafe { &mut *entries.add(index & 0x1ff) }
}

/// Frees the tables under `table` (at `level`), then `table` itself.
fn free_tables(table: PhysFrame, level: u32) {
    if level > 1 {
        for slot in 0..512 {
            let entry = *entry_mut(table, slot);
            if entry != 0 {
                free_tables(
                    PhysFrame::containing_address(x86_64::PhysAddr::new(entry & ADDRESS_MASK)),
                    level - 1,
                );
            }
        }
    }
    frames::free(table);
}
