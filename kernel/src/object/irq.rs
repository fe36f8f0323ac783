//! Irq: authority over one interrupt line, and the notification it signals.
//!
//! The kernel masks a line when it fires and signals the bound
//! notification; the line stays masked until the driver acknowledges (an
//! edge on an edge-triggered line while it is masked is lost: drivers
//! acknowledge before they look at the device again). The
//! binding holds its own copy of the notification capability (in a CSpace
//! private to this table), so the notification lives while it is bound.

use super::ObjectRef;
use crate::arch::apic;
use alloc::vec::Vec;
use kernel_core::capability_table::{CSpaceId, CapabilityTable, SlotRef};
use kernel_core::ipc::NotificationId;

/// Interrupt lines the kernel hands out (one I/O APIC's worth).
pub const LINES: u8 = 24;

/// Line states and bindings.
pub struct IrqTable {
    /// Slot `line + 1` holds the bound notification's capability.
    bindings: Option<CSpaceId>,
    bound: [Option<(NotificationId, u64)>; LINES as usize],
}

impl IrqTable {
    /// No bindings.
    pub const fn new() -> Self {
        Self {
            bindings: None,
            bound: [None; LINES as usize],
        }
    }

    fn slot(&mut self, capabilities: &mut CapabilityTable<ObjectRef>, line: u8) -> SlotRef {
        let cspace = *self
            .bindings
            .get_or_insert_with(|| capabilities.create_cspace(u32::from(LINES) + 1));
        SlotRef::new(cspace, u32::from(line) + 1)
    }

    /// Binds `line` to the notification capability in `source` (copied);
    /// the line is unmasked. Returns objects released by replacing an
    /// earlier binding.
    pub fn bind(
        &mut self,
        capabilities: &mut CapabilityTable<ObjectRef>,
        line: u8,
        source: SlotRef,
        notification: NotificationId,
        badge: u64,
    ) -> Vec<ObjectRef> {
        let released = self.release(capabilities, line);
        let slot = self.slot(capabilities, line);
        if capabilities.copy(source, slot).is_ok() {
            if let Some(entry) = self.bound.get_mut(usize::from(line)) {
                *entry = Some((notification, badge));
            }
            apic::set_line_masked(line, false);
        }
        released
    }

    /// The line's binding, if it has one.
    pub fn binding(&self, line: u8) -> Option<(NotificationId, u64)> {
        self.bound.get(usize::from(line)).copied().flatten()
    }

    /// Forgets the bindings to `notification`, which is being destroyed:
    /// its last capability went, the binding's copy included (a revoke of
    /// an ancestor takes that copy too). Each such line stays masked until
    /// it is bound again, so an interrupt never signals a later
    /// notification that reuses the id.
    pub fn forget_notification(&mut self, notification: NotificationId) {
        for (line, entry) in (0u8..).zip(self.bound.iter_mut()) {
            if entry.is_some_and(|(bound, _)| bound == notification) {
                *entry = None;
                apic::set_line_masked(line, true);
            }
        }
    }

    /// Masks the line and drops its binding; returns what that releases.
    pub fn release(&mut self, capabilities: &mut CapabilityTable<ObjectRef>, line: u8) -> Vec<ObjectRef> {
        apic::set_line_masked(line, true);
        let Some(entry) = self.bound.get_mut(usize::from(line)) else {
            return Vec::new();
        };
        if entry.take().is_none() {
            return Vec::new();
        }
        let slot = self.slot(capabilities, line);
        capabilities.delete(slot).ok().flatten().into_iter().collect()
    }
}
