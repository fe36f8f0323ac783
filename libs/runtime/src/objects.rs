//! Operations on each kind of kernel object, as methods of its handle.

use crate::capability::{
    AddressSpace, CSpace, DeviceMemoryControl, Endpoint, Frame, GuestMemory, IoPorts, Irq, IrqControl, Memory,
    Notification, PortControl, Slot, Thread, Vcpu,
};
use crate::syscall::call;
use abi::{Error, ObjectType, Rights, Syscall};

impl Memory {
    fn create(self, object_type: ObjectType, destination: Slot, size: u64) -> Result<(), Error> {
        call(Syscall::Create, &[self.0.0, object_type as u64, destination.0, size]).map(drop)
    }

    /// Makes a thread (stopped, unconfigured, at the caller's priority).
    ///
    /// # Errors
    /// `OutOfMemory` when the pool cannot pay, or a slot error.
    pub fn create_thread(self, destination: Slot) -> Result<Thread, Error> {
        self.create(ObjectType::Thread, destination, 0)
            .map(|()| Thread(destination))
    }

    /// Makes an address space.
    ///
    /// # Errors
    /// As [`Memory::create_thread`].
    pub fn create_address_space(self, destination: Slot) -> Result<AddressSpace, Error> {
        self.create(ObjectType::AddressSpace, destination, 0)
            .map(|()| AddressSpace(destination))
    }

    /// Makes a CSpace of `slots` slots.
    ///
    /// # Errors
    /// As [`Memory::create_thread`]; `InvalidArgument` for a bad size.
    pub fn create_cspace(self, destination: Slot, slots: u64) -> Result<CSpace, Error> {
        self.create(ObjectType::CSpace, destination, slots)
            .map(|()| CSpace(destination))
    }

    /// Makes an endpoint.
    ///
    /// # Errors
    /// As [`Memory::create_thread`].
    pub fn create_endpoint(self, destination: Slot) -> Result<Endpoint, Error> {
        self.create(ObjectType::Endpoint, destination, 0)
            .map(|()| Endpoint(destination))
    }

    /// Makes a notification.
    ///
    /// # Errors
    /// As [`Memory::create_thread`].
    pub fn create_notification(self, destination: Slot) -> Result<Notification, Error> {
        self.create(ObjectType::Notification, destination, 0)
            .map(|()| Notification(destination))
    }

    /// Makes a zeroed 4 KiB frame.
    ///
    /// # Errors
    /// As [`Memory::create_thread`].
    pub fn create_frame(self, destination: Slot) -> Result<Frame, Error> {
        self.create(ObjectType::Frame, destination, 0)
            .map(|()| Frame(destination))
    }

    /// Makes `count` physically consecutive frames (for device DMA) in
    /// slots `first..first + count`; returns the first.
    ///
    /// # Errors
    /// As [`Memory::create_thread`]; `OutOfMemory` also when no run of
    /// free pages is that long.
    pub fn create_contiguous_frames(self, first: Slot, count: u64) -> Result<Frame, Error> {
        self.create(ObjectType::Frame, first, count).map(|()| Frame(first))
    }

    /// Makes an empty guest memory (its nested tables are paid from this
    /// pool as pages are mapped).
    ///
    /// # Errors
    /// As [`Memory::create_thread`]; `NotSupported` without VT-x or AMD-V.
    pub fn create_guest_memory(self, destination: Slot) -> Result<GuestMemory, Error> {
        self.create(ObjectType::GuestMemory, destination, 0)
            .map(|()| GuestMemory(destination))
    }

    /// Makes a vcpu in the x86 reset state.
    ///
    /// # Errors
    /// As [`Memory::create_thread`]; `NotSupported` without VT-x or AMD-V.
    pub fn create_vcpu(self, destination: Slot) -> Result<Vcpu, Error> {
        self.create(ObjectType::Vcpu, destination, 0)
            .map(|()| Vcpu(destination))
    }

    /// Makes a pool of `bytes`, paid for by this one.
    ///
    /// # Errors
    /// As [`Memory::create_thread`].
    pub fn create_pool(self, destination: Slot, bytes: u64) -> Result<Memory, Error> {
        self.create(ObjectType::Memory, destination, bytes)
            .map(|()| Memory(destination))
    }
}

impl GuestMemory {
    /// Maps `frame` at guest-physical `address` with `rights` (read, plus
    /// write and execute as wanted).
    ///
    /// # Errors
    /// `InvalidAddress`, `AlreadyMapped`, `InsufficientRights`, `OutOfMemory`.
    pub fn map(self, frame: Frame, address: u64, rights: Rights) -> Result<(), Error> {
        call(
            Syscall::GuestMap,
            &[self.0.0, frame.0.0, address, u64::from(rights.bits())],
        )
        .map(drop)
    }

    /// Unmaps the page at guest-physical `address`.
    ///
    /// # Errors
    /// `NotMapped`.
    pub fn unmap(self, address: u64) -> Result<(), Error> {
        call(Syscall::GuestUnmap, &[self.0.0, address]).map(drop)
    }
}

impl Vcpu {
    /// Binds the vcpu to `memory` and to the state page `page` (a frame the
    /// caller also maps to read and write the [`abi::vcpu::VcpuState`]).
    ///
    /// # Errors
    /// `InvalidState` if it is bound already; capability errors.
    pub fn configure(self, memory: GuestMemory, page: Frame) -> Result<(), Error> {
        call(Syscall::VcpuConfigure, &[self.0.0, memory.0.0, page.0.0]).map(drop)
    }

    /// Runs the guest until it exits; returns the exit kind's number (the
    /// details are in the state page).
    ///
    /// # Errors
    /// `InvalidState` if it is not bound (or what it was bound to is gone).
    pub fn run(self) -> Result<u32, Error> {
        call(Syscall::VcpuRun, &[self.0.0]).map(|[kind, ..]| kind as u32)
    }
}

impl AddressSpace {
    /// Maps `frame` at `address` with `rights` (read, plus write and
    /// execute as wanted).
    ///
    /// # Errors
    /// `AlreadyMapped`, `InvalidAddress`, `InsufficientRights`, ...
    pub fn map(self, frame: Frame, address: u64, rights: Rights) -> Result<(), Error> {
        call(Syscall::Map, &[self.0.0, frame.0.0, address, u64::from(rights.bits())]).map(drop)
    }

    /// Unmaps the frame at `address`.
    ///
    /// # Errors
    /// `NotMapped` if no frame is mapped there.
    pub fn unmap(self, address: u64) -> Result<(), Error> {
        call(Syscall::Unmap, &[self.0.0, address]).map(drop)
    }
}

/// A thread's registers as `ThreadReadRegisters` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadRegisters {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// First argument register.
    pub rdi: u64,
    /// Second argument register.
    pub rsi: u64,
}

impl Thread {
    /// Sets the thread's CSpace, address space, IPC buffer address (0 for
    /// none) and fault endpoint.
    ///
    /// # Errors
    /// `InvalidState` unless the thread is stopped; capability errors.
    pub fn configure(
        self,
        cspace: CSpace,
        address_space: AddressSpace,
        ipc_buffer: u64,
        fault_endpoint: Option<Endpoint>,
    ) -> Result<(), Error> {
        let fault = fault_endpoint.map_or(0, |endpoint| endpoint.0.0);
        call(
            Syscall::ThreadConfigure,
            &[self.0.0, cspace.0.0, address_space.0.0, ipc_buffer, fault],
        )
        .map(drop)
    }

    /// Sets a stopped thread's instruction and stack pointers and its
    /// first two argument registers.
    ///
    /// # Errors
    /// `InvalidState` unless stopped; `InvalidAddress` for kernel addresses.
    pub fn write_registers(self, rip: u64, rsp: u64, rdi: u64, rsi: u64) -> Result<(), Error> {
        call(Syscall::ThreadWriteRegisters, &[self.0.0, rip, rsp, rdi, rsi]).map(drop)
    }

    /// Reads the thread's registers.
    ///
    /// # Errors
    /// Capability errors.
    pub fn read_registers(self) -> Result<ThreadRegisters, Error> {
        let [rip, rsp, rflags, rdi, rsi] = call(Syscall::ThreadReadRegisters, &[self.0.0])?;
        Ok(ThreadRegisters {
            rip,
            rsp,
            rflags,
            rdi,
            rsi,
        })
    }

    /// Makes a configured, stopped thread run.
    ///
    /// # Errors
    /// `InvalidState` if it is not configured or not stopped.
    pub fn start(self) -> Result<(), Error> {
        call(Syscall::ThreadStart, &[self.0.0]).map(drop)
    }

    /// Stops the thread.
    ///
    /// # Errors
    /// Capability errors.
    pub fn stop(self) -> Result<(), Error> {
        call(Syscall::ThreadStop, &[self.0.0]).map(drop)
    }

    /// Sets its priority (at most the caller's).
    ///
    /// # Errors
    /// `PriorityTooHigh`.
    pub fn set_priority(self, priority: u8) -> Result<(), Error> {
        call(Syscall::ThreadSetPriority, &[self.0.0, u64::from(priority)]).map(drop)
    }
}

impl IrqControl {
    /// Makes an irq capability for interrupt `line`.
    ///
    /// # Errors
    /// `AlreadyBound` if the line is taken, `InvalidArgument` if it does not exist.
    pub fn create(self, line: u8, destination: Slot) -> Result<Irq, Error> {
        call(Syscall::IrqCreate, &[self.0.0, u64::from(line), destination.0]).map(|_| Irq(destination))
    }
}

impl Irq {
    /// Makes the line signal `notification` (with its badge); unmasks it.
    ///
    /// # Errors
    /// Capability errors.
    pub fn bind(self, notification: Notification) -> Result<(), Error> {
        call(Syscall::IrqBind, &[self.0.0, notification.0.0]).map(drop)
    }

    /// Unmasks the line after handling an interrupt.
    ///
    /// An edge that arrives on an edge-triggered (ISA) line while it is
    /// masked is lost, so acknowledge before looking at the device for more
    /// work, not after.
    ///
    /// # Errors
    /// `InvalidState` if it is not bound.
    pub fn acknowledge(self) -> Result<(), Error> {
        call(Syscall::IrqAcknowledge, &[self.0.0]).map(drop)
    }
}

impl PortControl {
    /// Makes a capability for ports `first..first + count`.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty range, one past 0xffff, or one
    /// touching the kernel's own ports.
    pub fn create(self, first: u16, count: u16, destination: Slot) -> Result<IoPorts, Error> {
        call(
            Syscall::PortsCreate,
            &[self.0.0, u64::from(first), u64::from(count), destination.0],
        )
        .map(|_| IoPorts(destination))
    }
}

impl IoPorts {
    /// Reads `width` (1, 2 or 4) bytes from `port`.
    ///
    /// # Errors
    /// `InvalidArgument` for a port outside the range or a bad width.
    pub fn read(self, port: u16, width: u8) -> Result<u64, Error> {
        call(Syscall::PortRead, &[self.0.0, u64::from(port), u64::from(width)]).map(|[value, ..]| value)
    }

    /// Writes `width` bytes of `value` to `port`.
    ///
    /// # Errors
    /// As [`IoPorts::read`].
    pub fn write(self, port: u16, width: u8, value: u64) -> Result<(), Error> {
        call(
            Syscall::PortWrite,
            &[self.0.0, u64::from(port), u64::from(width), value],
        )
        .map(drop)
    }

    /// Reads `port` once for each `width`-byte item of `items` (x86's
    /// INS): a device's data register drained in one call.
    ///
    /// # Errors
    /// As [`IoPorts::read`]; `InvalidLength` for a length that is not a
    /// multiple of `width` or is over [`abi::PORT_STRING_MAX`].
    pub fn read_string(self, port: u16, width: u8, items: &mut [u8]) -> Result<(), Error> {
        call(
            Syscall::PortReadString,
            &[self.0.0, u64::from(port), u64::from(width), items.as_mut_ptr() as u64, items.len() as u64],
        )
        .map(drop)
    }

    /// Writes each `width`-byte item of `items` to `port` in turn (x86's
    /// OUTS).
    ///
    /// # Errors
    /// As [`IoPorts::read_string`].
    pub fn write_string(self, port: u16, width: u8, items: &[u8]) -> Result<(), Error> {
        call(
            Syscall::PortWriteString,
            &[self.0.0, u64::from(port), u64::from(width), items.as_ptr() as u64, items.len() as u64],
        )
        .map(drop)
    }
}

impl DeviceMemoryControl {
    /// Makes a frame for the device registers at physical `address`.
    ///
    /// # Errors
    /// `InvalidAddress` for RAM or a misaligned address.
    pub fn create(self, address: u64, destination: Slot) -> Result<Frame, Error> {
        call(Syscall::DeviceFrameCreate, &[self.0.0, address, destination.0]).map(|_| Frame(destination))
    }
}
