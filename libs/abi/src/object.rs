//! Kernel object types, as `Create` and `CapabilityIdentify` name them.

/// A type of kernel object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u64)]
pub enum ObjectType {
    /// A thread.
    Thread = 1,
    /// An address space (a page-table root).
    AddressSpace = 2,
    /// A CSpace: a table of capability slots.
    CSpace = 3,
    /// An IPC endpoint.
    Endpoint = 4,
    /// A notification: a word of signal bits.
    Notification = 5,
    /// A 4 KiB page of memory.
    Frame = 6,
    /// A memory pool that pays for objects; `Create` of one moves budget
    /// from the parent pool.
    Memory = 7,
    /// One interrupt line (made with `IrqCreate`).
    Irq = 8,
    /// A range of I/O ports (made with `PortsCreate`).
    IoPorts = 9,
    /// Authority to make irq capabilities.
    IrqControl = 10,
    /// Authority to make I/O-port capabilities.
    PortControl = 11,
    /// Authority to make device-memory frames.
    DeviceMemoryControl = 12,
    /// A guest-physical address space (nested page tables) made of frames
    /// the VMM maps into it.
    GuestMemory = 13,
    /// A virtual CPU (a VMCS or VMCB with its guest state). `Create` fails
    /// with `NotSupported` where the CPU has neither VT-x nor AMD-V.
    Vcpu = 14,
}

impl ObjectType {
    /// Decodes a type number.
    pub const fn from_number(number: u64) -> Option<Self> {
        Some(match number {
            1 => Self::Thread,
            2 => Self::AddressSpace,
            3 => Self::CSpace,
            4 => Self::Endpoint,
            5 => Self::Notification,
            6 => Self::Frame,
            7 => Self::Memory,
            8 => Self::Irq,
            9 => Self::IoPorts,
            10 => Self::IrqControl,
            11 => Self::PortControl,
            12 => Self::DeviceMemoryControl,
            13 => Self::GuestMemory,
            14 => Self::Vcpu,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for number in 1..=14 {
            assert_eq!(ObjectType::from_number(number).map(|kind| kind as u64), Some(number));
        }
        assert_eq!(ObjectType::from_number(0), None);
        assert_eq!(ObjectType::from_number(15), None);
    }
}
