//! Memory pools: who pays for kernel memory.
//!
//! Every object and page table is charged, in bytes, to the pool it was
//! made from, and refunded when it goes. init's pool holds all memory the
//! kernel does not keep for itself; a pool made from another moves budget
//! out of it. So no process can use more kernel memory than its pool, and
//! the pools together never promise more than the machine has.

use kernel_core::arena::Arena;

/// What a thread costs (its registers, FPU state and bookkeeping).
pub const THREAD_COST: u64 = 8192;
/// What an endpoint costs.
pub const ENDPOINT_COST: u64 = 256;
/// What a notification costs.
pub const NOTIFICATION_COST: u64 = 256;
/// What a pool record costs.
pub const POOL_COST: u64 = 256;
/// What a frame costs.
pub const FRAME_COST: u64 = 4096;
/// What one page of page table costs.
pub const PAGE_TABLE_COST: u64 = 4096;
/// What a vcpu costs: its control block, FPU area and bookkeeping (its
/// guest memory pays for its own tables).
pub const VCPU_COST: u64 = 12288;
/// What a CSpace costs: a base plus this much per slot.
pub const CSPACE_SLOT_COST: u64 = 64;
/// Base cost of a CSpace.
pub const CSPACE_BASE_COST: u64 = 256;

/// One pool.
struct Pool {
    budget: u64,
    used: u64,
    parent: Option<u32>,
    /// Its last capability is gone; it only waits for its charges to be
    /// refunded, which then go on to the parent.
    destroyed: bool,
}

/// The pool would go over its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

/// Every pool.
pub struct Pools(Arena<Pool>);

impl Pools {
    /// No pools.
    pub const fn new() -> Self {
        Self(Arena::new())
    }

    /// The root pool, with `budget` bytes.
    pub fn create_root(&mut self, budget: u64) -> Option<u32> {
        self.0.insert(Pool {
            budget,
            used: 0,
            parent: None,
            destroyed: false,
        })
    }

    /// A pool of `budget` bytes, paid for by `parent` (plus the record).
    ///
    /// # Errors
    /// [`OutOfMemory`] if the parent cannot pay.
    pub fn create_child(&mut self, parent: u32, budget: u64) -> Result<u32, OutOfMemory> {
        let cost = budget.checked_add(POOL_COST).ok_or(OutOfMemory)?;
        self.charge(parent, cost)?;
        match self.0.insert(Pool {
            budget,
            used: 0,
            parent: Some(parent),
            destroyed: false,
        }) {
            Some(id) => Ok(id),
            None => {
                self.refund(Some(parent), cost);
                Err(OutOfMemory)
            }
        }
    }

    /// Bytes a pool has left.
    pub fn available(&self, pool: u32) -> u64 {
        self.0.get(pool).map_or(0, |pool| pool.budget - pool.used)
    }

    /// Takes `bytes` from a pool.
    ///
    /// # Errors
    /// [`OutOfMemory`] if it does not have them (or is gone).
    pub fn charge(&mut self, pool: u32, bytes: u64) -> Result<(), OutOfMemory> {
        let pool = self.0.get_mut(pool).filter(|pool| !pool.destroyed).ok_or(OutOfMemory)?;
        let used = pool
            .used
            .checked_add(bytes)
            .filter(|&used| used <= pool.budget)
            .ok_or(OutOfMemory)?;
        pool.used = used;
        Ok(())
    }

    /// Gives `bytes` back to the pool that paid them. A destroyed pool
    /// passes them up to its parent once it has them back.
    pub fn refund(&mut self, pool: Option<u32>, bytes: u64) {
        let Some(mut id) = pool else { return };
        let mut bytes = bytes;
        while let Some(pool) = self.0.get_mut(id) {
            pool.used = pool.used.saturating_sub(bytes);
            if !pool.destroyed {
                return;
            }
            // A destroyed pool returns to its parent what it no longer needs:
            // its whole budget once nothing is charged to it any more.
            let parent = pool.parent;
            if pool.used == 0 {
                bytes = pool.budget + POOL_COST;
                self.0.remove(id);
            } else {
                return;
            }
            match parent {
                Some(parent) => id = parent,
                None => return,
            }
        }
    }

    /// The pool's last capability went: it takes no new charges, and its
    /// budget goes back to its parent as its charges are refunded.
    pub fn destroy(&mut self, id: u32) {
        if let Some(pool) = self.0.get_mut(id) {
            pool.destroyed = true;
            self.refund(Some(id), 0);
        }
    }
}
