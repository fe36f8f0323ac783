//! A fixed ring of freed pages that must wait before reuse, oldest first.
//!
//! Without an IOMMU a device keeps writing to the pages its driver gave
//! it until somebody resets it; a driver that dies with a request in
//! flight cannot. The kernel therefore holds such pages back for a while
//! after they are freed. The ring needs no heap, so it can be used from
//! inside the frame allocator.

/// Up to `N` page addresses with the tick each was freed at.
pub struct Quarantine<const N: usize> {
    pages: [(u64, u64); N],
    oldest: usize,
    count: usize,
}

impl<const N: usize> Quarantine<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            pages: [(0, 0); N],
            oldest: 0,
            count: 0,
        }
    }

    /// Adds page `address` freed at tick `now`. When the ring is full the
    /// oldest page leaves early and is returned.
    pub fn push(&mut self, address: u64, now: u64) -> Option<u64> {
        let evicted = if self.count == N { self.pop() } else { None };
        if let Some(slot) = self.pages.get_mut((self.oldest + self.count) % N) {
            *slot = (address, now);
            self.count += 1;
        }
        evicted
    }

    /// Takes the oldest page if it was freed at or before tick `before`.
    pub fn pop_freed_by(&mut self, before: u64) -> Option<u64> {
        match self.pages.get(self.oldest) {
            Some(&(_, freed)) if self.count > 0 && freed <= before => self.pop(),
            _ => None,
        }
    }

    fn pop(&mut self) -> Option<u64> {
        let &(address, _) = self.pages.get(self.oldest).filter(|_| self.count > 0)?;
        self.oldest = (self.oldest + 1) % N;
        self.count -= 1;
        Some(address)
    }
}

impl<const N: usize> Default for Quarantine<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Quarantine;

    #[test]
    fn pages_leave_oldest_first_once_their_time_is_up() {
        let mut ring = Quarantine::<4>::new();
        assert_eq!(ring.push(0x1000, 10), None);
        assert_eq!(ring.push(0x2000, 20), None);
        assert_eq!(ring.pop_freed_by(9), None);
        assert_eq!(ring.pop_freed_by(15), Some(0x1000));
        assert_eq!(ring.pop_freed_by(15), None);
        assert_eq!(ring.pop_freed_by(20), Some(0x2000));
        assert_eq!(ring.pop_freed_by(u64::MAX), None);
    }

    #[test]
    fn a_full_ring_lets_its_oldest_page_go_early() {
        let mut ring = Quarantine::<3>::new();
        for (index, address) in [0x1000, 0x2000, 0x3000].into_iter().enumerate() {
            assert_eq!(ring.push(address, index as u64), None);
        }
        // Wrapping around the end of the array keeps the order.
        assert_eq!(ring.push(0x4000, 3), Some(0x1000));
        assert_eq!(ring.push(0x5000, 4), Some(0x2000));
        let drained: alloc::vec::Vec<u64> = core::iter::from_fn(|| ring.pop_freed_by(u64::MAX)).collect();
        assert_eq!(drained, [0x3000, 0x4000, 0x5000]);
    }
}
