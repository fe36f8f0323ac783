//! The vcpu state page, read and written as a whole [`VcpuState`] so a VMM
//! needs no unsafe code.

use crate::capability::{AddressSpace, Frame};
use crate::memory::Region;
use abi::Rights;
use abi::vcpu::VcpuState;

/// A state page mapped in this process.
#[derive(Debug)]
pub struct StatePage(Region);

impl StatePage {
    /// Maps `frame` (the one given to `Vcpu::configure`) read-write.
    ///
    /// # Errors
    /// A failed map.
    pub fn map(address_space: AddressSpace, frame: Frame) -> Result<Self, abi::Error> {
        Region::map(address_space, core::iter::once(frame), Rights::READ | Rights::WRITE).map(Self)
    }

    /// The state the kernel left there.
    pub fn read(&self) -> VcpuState {
        // SAFETY: the region is one mapped page, page-aligned, larger than
        // `VcpuState` (checked at compile time in `abi`), whose fields are
        // plain integers, so any bytes are a valid value. The kernel writes
        // the page only inside `VcpuRun`, which this thread is not in.
        unsafe { core::ptr::read_volatile(self.0.address() as *const VcpuState) }
    }

    /// Writes `state` for the kernel to take at the next run.
    pub fn write(&self, state: &VcpuState) {
        // SAFETY: as in `read`; the page is mapped writable.
        unsafe { core::ptr::write_volatile(self.0.address() as *mut VcpuState, *state) }
    }
}
