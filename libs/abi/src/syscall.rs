//! Syscall numbers and what each one takes.
//!
//! Arguments are numbered in the order of the register convention in the
//! crate documentation (argument 0 is `rdi`). "Slot" arguments are indices
//! into the caller's CSpace; slot 0 is the null slot and never holds a
//! capability. Each syscall decodes and checks every argument before it
//! changes anything, and names the first bad one in its error.

macro_rules! syscalls {
    ($($(#[$doc:meta])* $name:ident = $number:literal,)*) => {
        /// A syscall number, passed in `rax`.
        ///
        /// Zero is never a syscall, so a thread that enters the kernel with
        /// cleared registers gets [`ErrorKind::UnknownSyscall`](crate::ErrorKind::UnknownSyscall).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u64)]
        pub enum Syscall {
            $($(#[$doc])* $name = $number,)*
        }

        impl Syscall {
            /// Every syscall, in number order.
            pub const ALL: &[Syscall] = &[$(Syscall::$name,)*];

            /// Decodes a syscall number; `None` for a number that names no syscall.
            pub const fn from_number(number: u64) -> Option<Self> {
                match number {
                    $($number => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

syscalls! {
    /// Writes bytes to the kernel's debug console (bring-up only).
    /// 0 = address, 1 = length (at most [`DEBUG_WRITE_MAX`]).
    DebugWrite = 1,
    /// Ends the calling thread; 0 = exit status. Does not return. A thread
    /// with a fault endpoint is reported there first, as a fault with
    /// vector [`fault::EXITED`](crate::fault::EXITED), and stays stopped.
    Exit = 2,
    /// Gives up the rest of the time slice to threads of equal priority.
    Yield = 3,
    /// Reads the clock: timer ticks since boot in `rdi`, ticks per second
    /// in `rsi`.
    Clock = 4,
    /// Sleeps for 0 = ticks (1 ..= [`MAX_SLEEP_TICKS`]); other threads,
    /// of any priority, run meanwhile.
    Sleep = 5,

    /// Sends a message on an endpoint, blocking until a receiver takes it.
    /// 0 = endpoint slot (needs write), 1 = [`MessageTag`](crate::MessageTag),
    /// then message words in the message registers.
    Send = 10,
    /// [`Send`](Syscall::Send) that fails with `WouldBlock` instead of blocking.
    SendNonBlocking = 11,
    /// Receives a message: 0 = endpoint slot (needs read). Returns the
    /// sender's badge in `rdi`, the tag in `rsi`, words in the message
    /// registers.
    Receive = 12,
    /// [`Receive`](Syscall::Receive) that fails with `WouldBlock` instead of blocking.
    ReceiveNonBlocking = 13,
    /// Sends and waits for the reply, which returns as a receive does.
    /// Arguments as [`Send`](Syscall::Send). Fails with `PeerDied` if the
    /// endpoint or the replying thread dies first.
    Call = 14,
    /// Replies to the thread whose call this thread received last (a
    /// one-shot reply right). 1 = tag, words as for send. Never blocks.
    Reply = 15,
    /// [`Reply`](Syscall::Reply), then [`Receive`](Syscall::Receive) on
    /// 0 = endpoint slot: the server loop in one syscall.
    ReplyReceive = 16,

    /// Sets the notification's word to word | badge of the capability.
    /// 0 = notification slot (needs write).
    Signal = 20,
    /// Blocks until the notification's word is non-zero, returns it in
    /// `rdi` and clears it. 0 = notification slot (needs read).
    Wait = 21,
    /// Returns and clears the word without blocking (0 if none).
    Poll = 22,

    /// Copies a capability: 0 = source slot, 1 = destination CSpace slot
    /// (0 for the caller's own), 2 = destination index.
    CapabilityCopy = 30,
    /// Copies with fewer rights and a badge: arguments as copy, then
    /// 3 = rights mask, 4 = badge (0 keeps the source's).
    CapabilityMint = 31,
    /// Moves a capability: arguments as copy.
    CapabilityMove = 32,
    /// Deletes a capability: 0 = CSpace slot (0 for own), 1 = index. The
    /// last capability to a CSpace that still holds many goes in steps
    /// (the syscall restarts itself between them, and the caller may be
    /// preempted there): meanwhile other threads may see the CSpace partly
    /// emptied, and the caller sees one delete.
    CapabilityDelete = 33,
    /// Deletes every capability derived from one (not the one itself):
    /// arguments as delete.
    CapabilityRevoke = 34,
    /// Describes a capability: 0 = slot. Returns the object type in `rdi`,
    /// rights in `rsi`, badge in `rdx`, for a memory pool the bytes it has
    /// left in `r10`, and for a frame its physical address in `r8` (for
    /// device DMA); 0 where these do not apply.
    CapabilityIdentify = 35,

    /// Creates an object from a memory pool: 0 = memory slot, 1 =
    /// [`ObjectType`](crate::ObjectType), 2 = destination slot, 3 = size
    /// (slots of a CSpace, bytes of a sub-pool, and for frames a count:
    /// more than one makes that many physically consecutive frames, for
    /// device DMA, in as many consecutive slots from the destination).
    Create = 40,
    /// Maps a frame: 0 = address-space slot, 1 = frame slot, 2 = virtual
    /// address (page-aligned, user half), 3 = rights (read, and optionally
    /// write and execute; at most the frame capability's). A frame may be
    /// mapped in several places; it stays allocated while its capabilities
    /// exist, and its mappings go with it.
    Map = 41,
    /// Unmaps the frame at an address: 0 = address-space slot, 1 = virtual
    /// address.
    Unmap = 42,

    /// Sets a thread's CSpace, address space, IPC buffer and fault endpoint:
    /// 0 = thread slot, 1 = CSpace slot, 2 = address-space slot, 3 = IPC
    /// buffer address (page-aligned), 4 = fault endpoint slot (0 = none).
    ThreadConfigure = 50,
    /// Sets a stopped thread's registers: 0 = thread, 1 = rip, 2 = rsp,
    /// 3 = rdi, 4 = rsi.
    ThreadWriteRegisters = 51,
    /// Reads a thread's registers: 0 = thread. Returns rip in `rdi`, rsp in
    /// `rsi`, rflags in `rdx`, and the thread's `rdi` and `rsi` in `r10` and `r8`.
    ThreadReadRegisters = 52,
    /// Makes a configured, stopped thread runnable: 0 = thread.
    ThreadStart = 53,
    /// Stops a thread (blocked operations are abandoned): 0 = thread.
    ThreadStop = 54,
    /// Sets a thread's priority: 0 = thread, 1 = priority (at most the
    /// caller's own).
    ThreadSetPriority = 55,

    /// Makes an interrupt signal a notification with the notification
    /// capability's badge: 0 = irq slot, 1 = notification slot (badged:
    /// the badge is the bit the interrupt sets, so an unbadged one is
    /// refused).
    IrqBind = 60,
    /// Unmasks the irq's line after the driver has handled it: 0 = irq slot.
    IrqAcknowledge = 61,
    /// Reads a port: 0 = I/O-ports slot, 1 = port, 2 = width in bytes (1, 2, 4).
    /// The value returns in `rdi`.
    PortRead = 62,
    /// Writes a port: as read, then 3 = value.
    PortWrite = 63,
    /// Makes an irq capability for one interrupt line: 0 = irq-control
    /// slot, 1 = line (global system interrupt), 2 = destination slot.
    IrqCreate = 64,
    /// Makes an I/O-ports capability: 0 = port-control slot, 1 = first
    /// port, 2 = number of ports, 3 = destination slot.
    PortsCreate = 65,
    /// Makes a frame capability for device memory (mapped uncached):
    /// 0 = device-memory-control slot, 1 = physical address (page-aligned,
    /// not RAM), 2 = destination slot.
    DeviceFrameCreate = 66,
    /// Reads one port over and over into the caller's memory (x86's INS),
    /// as a device's data register is drained: 0 = I/O-ports slot, 1 =
    /// port, 2 = width in bytes (1, 2, 4), 3 = address of the buffer
    /// (mapped user-writable), 4 = its length in bytes (a multiple of the
    /// width, at most [`PORT_STRING_MAX`]). The buffer is checked before
    /// the first read, so a refused call has read nothing.
    PortReadString = 67,
    /// Writes the caller's buffer to one port, an item of the width at a
    /// time (x86's OUTS): arguments as [`PortReadString`](Self::PortReadString),
    /// the buffer mapped user-readable.
    PortWriteString = 68,
    /// Maps one of the caller's RAM frames into a guest memory: 0 = guest
    /// memory slot (needs write), 1 = frame slot, 2 = guest-physical address
    /// (page-aligned, below [`GUEST_PHYSICAL_END`](crate::vcpu::GUEST_PHYSICAL_END)),
    /// 3 = [`Rights`](crate::Rights) the guest gets (read, and optionally
    /// write and execute; at most the frame capability's).
    GuestMap = 70,
    /// Unmaps the page at a guest-physical address: 0 = guest memory slot
    /// (needs write), 1 = guest-physical address. Every vcpu running in it
    /// forgets the old translation before it next enters the guest.
    GuestUnmap = 71,
    /// Binds a vcpu to its guest memory and its state page: 0 = vcpu slot
    /// (needs write), 1 = guest memory slot, 2 = RAM frame slot (needs
    /// write) that holds the [`VcpuState`](crate::vcpu::VcpuState). The
    /// kernel writes the vcpu's current state into the page. A vcpu is
    /// bound once.
    VcpuConfigure = 72,
    /// Runs a bound vcpu until the guest exits: 0 = vcpu slot (needs
    /// write). Returns the [`ExitKind`](crate::vcpu::ExitKind) number in
    /// `rdi`; the details are in the state page. The calling thread is the
    /// guest's host thread meanwhile: it is preempted and scheduled as
    /// usual.
    VcpuRun = 73,
}

/// I/O ports the kernel keeps for itself, as (first, count): the PIC pair,
/// the PIT and speaker gate, QEMU's exit device and Bochs' shutdown port.
/// PortsCreate refuses them, and the system description may not list them.
pub const KERNEL_PORTS: [(u16, u16); 6] = [
    (0x20, 2),
    (0xa0, 2),
    (0x40, 4),
    (0x61, 1),
    (crate::debug_exit::PORT, 4),
    (crate::debug_exit::BOCHS_SHUTDOWN_PORT, 1),
];

/// The most bytes one [`Syscall::PortReadString`] or
/// [`Syscall::PortWriteString`] moves: two ATA sectors. Bounds the time the
/// kernel spends in one call, as a port access on real hardware may take a
/// microsecond.
pub const PORT_STRING_MAX: usize = 1024;

/// The longest one [`Syscall::Sleep`] may ask for: ten minutes at 100 Hz.
pub const MAX_SLEEP_TICKS: u64 = 60_000;

/// The most bytes one [`Syscall::DebugWrite`] takes; longer writes are split
/// by the caller. Bounds the time the kernel spends in one call.
pub const DEBUG_WRITE_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_are_unique() {
        for (index, syscall) in Syscall::ALL.iter().enumerate() {
            assert_eq!(Syscall::from_number(*syscall as u64), Some(*syscall));
            assert!(
                Syscall::ALL[..index]
                    .iter()
                    .all(|other| *other as u64 != *syscall as u64)
            );
        }
    }

    #[test]
    fn zero_and_unknown_numbers_are_not_syscalls() {
        assert_eq!(Syscall::from_number(0), None);
        assert_eq!(Syscall::from_number(6), None);
        assert_eq!(Syscall::from_number(u64::MAX), None);
    }
}
