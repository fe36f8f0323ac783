//! Syscalls: decode the number and arguments from the caller's saved
//! registers, check every one, then act.
//!
//! Each handler first looks up and checks all its capabilities and values,
//! returning an error that names the first bad argument, and only then
//! changes anything, in steps that cannot fail.

mod capability;
mod device;

pub use device::interrupt as device_interrupt;
pub mod ipc;
mod memory;
mod thread;
mod virt;

use crate::object::{Cap, ObjectRef, Objects};
use abi::{DEBUG_WRITE_MAX, Error, ErrorKind, Rights, Syscall};
use kernel_core::capability_table::{CSpaceId, CapabilityError, SlotRef};
use kernel_core::scheduler::ThreadId;
use x86_64::VirtAddr;

/// How a syscall finished, for the caller's registers.
pub enum Completion {
    /// Success with no results: `rax` = 0, other registers kept.
    Done,
    /// Success with results for `rdi`, `rsi`, `rdx`, `r10`, `r8`.
    Values([u64; 5]),
    /// The caller's registers were already written (a message arrived) or
    /// will be when it wakes (it blocked), or it is gone.
    Handled,
    /// A long operation made progress and left everything consistent: the
    /// caller goes back over its SYSCALL instruction, with its registers
    /// as they were, so an interrupt pending meanwhile is taken (and may
    /// preempt it) before the same syscall runs on. seL4's preemption
    /// points work the same way.
    Restart,
}

/// The length of the SYSCALL instruction (0f 05), which a restarted
/// syscall's caller goes back over.
const SYSCALL_LENGTH: u64 = 2;

/// The arguments of a syscall, as the register convention lists them.
#[derive(Clone, Copy)]
pub struct Arguments([u64; 6]);

impl Arguments {
    /// Argument `index` (0..6).
    pub fn get(&self, index: u8) -> u64 {
        self.0.get(usize::from(index)).copied().unwrap_or(0)
    }
}

/// Handles the syscall the current thread just made.
pub fn dispatch(objects: &mut Objects, caller: ThreadId) {
    let Some(thread) = objects.threads.get(caller.0) else {
        return;
    };
    let context = &thread.context;
    let number = context.rax;
    let arguments = Arguments([
        context.rdi,
        context.rsi,
        context.rdx,
        context.r10,
        context.r8,
        context.r9,
    ]);
    let result = match Syscall::from_number(number) {
        None => Err(Error::new(ErrorKind::UnknownSyscall)),
        Some(syscall) => run(objects, caller, syscall, arguments),
    };
    let Some(thread) = objects.threads.get_mut(caller.0) else {
        return;
    };
    let context = &mut thread.context;
    match result {
        Ok(Completion::Handled) => {}
        Ok(Completion::Restart) => context.rip = context.rip.wrapping_sub(SYSCALL_LENGTH),
        Ok(Completion::Done) => context.rax = 0,
        Ok(Completion::Values([rdi, rsi, rdx, r10, r8])) => {
            context.rax = 0;
            (context.rdi, context.rsi, context.rdx, context.r10, context.r8) = (rdi, rsi, rdx, r10, r8);
        }
        Err(error) => context.rax = error.to_status(),
    }
}

fn run(objects: &mut Objects, caller: ThreadId, syscall: Syscall, arguments: Arguments) -> Result<Completion, Error> {
    use Syscall::*;
    match syscall {
        DebugWrite => debug_write(objects, caller, arguments),
        Exit => thread::exit(objects, caller, arguments),
        Clock => {
            let ticks = crate::arch::apic::TICKS.load(core::sync::atomic::Ordering::Relaxed);
            Ok(Completion::Values([ticks, crate::arch::apic::TICK_HZ, 0, 0, 0]))
        }
        Sleep => {
            let ticks = arguments.get(0);
            if !(1..=abi::MAX_SLEEP_TICKS).contains(&ticks) {
                return Err(Error::in_argument(ErrorKind::InvalidArgument, 0));
            }
            let now = crate::arch::apic::TICKS.load(core::sync::atomic::Ordering::Relaxed);
            objects
                .ipc
                .sleep(caller, now + ticks)
                .map_err(|_| Error::new(ErrorKind::InvalidState))?;
            // Status 0 now: nothing changes it before the thread wakes.
            Ok(Completion::Done)
        }
        Yield => {
            objects.ipc.scheduler.yield_current();
            Ok(Completion::Done)
        }
        Send | SendNonBlocking | Call => ipc::send(objects, caller, syscall, arguments),
        Receive | ReceiveNonBlocking => ipc::receive(objects, caller, syscall == Receive, arguments),
        Reply => ipc::reply(objects, caller, arguments),
        ReplyReceive => ipc::reply_receive(objects, caller, arguments),
        Signal => ipc::signal(objects, caller, arguments),
        Wait | Poll => ipc::wait(objects, caller, syscall == Wait, arguments),
        CapabilityCopy | CapabilityMint | CapabilityMove => capability::transfer(objects, caller, syscall, arguments),
        CapabilityDelete | CapabilityRevoke => capability::remove(objects, caller, syscall, arguments),
        CapabilityIdentify => capability::identify(objects, caller, arguments),
        Create => memory::create(objects, caller, arguments),
        Map => memory::map(objects, caller, arguments),
        Unmap => memory::unmap(objects, caller, arguments),
        ThreadConfigure => thread::configure(objects, caller, arguments),
        ThreadWriteRegisters => thread::write_registers(objects, caller, arguments),
        ThreadReadRegisters => thread::read_registers(objects, caller, arguments),
        ThreadStart => thread::start(objects, caller, arguments),
        ThreadStop => thread::stop(objects, caller, arguments),
        ThreadSetPriority => thread::set_priority(objects, caller, arguments),
        IrqBind => device::irq_bind(objects, caller, arguments),
        IrqAcknowledge => device::irq_acknowledge(objects, caller, arguments),
        PortRead => device::port_read(objects, caller, arguments),
        PortWrite => device::port_write(objects, caller, arguments),
        PortReadString => device::port_read_string(objects, caller, arguments),
        PortWriteString => device::port_write_string(objects, caller, arguments),
        IrqCreate => device::irq_create(objects, caller, arguments),
        PortsCreate => device::ports_create(objects, caller, arguments),
        DeviceFrameCreate => device::device_frame_create(objects, caller, arguments),
        GuestMap => virt::guest_map(objects, caller, arguments),
        GuestUnmap => virt::guest_unmap(objects, caller, arguments),
        VcpuConfigure => virt::vcpu_configure(objects, caller, arguments),
        VcpuRun => virt::vcpu_run(objects, caller, arguments),
    }
}

fn debug_write(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let length = usize::try_from(arguments.get(1))
        .ok()
        .filter(|&length| length <= DEBUG_WRITE_MAX)
        .ok_or(Error::in_argument(ErrorKind::InvalidLength, 1))?;
    let address = VirtAddr::try_new(arguments.get(0)).map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 0))?;
    let mut buffer = [0u8; DEBUG_WRITE_MAX];
    let bytes = buffer
        .get_mut(..length)
        .ok_or(Error::in_argument(ErrorKind::InvalidLength, 1))?;
    let space = address_space_of(objects, caller).ok_or(Error::new(ErrorKind::InvalidState))?;
    space
        .read_user(address, bytes)
        .map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 0))?;
    crate::log::write_raw(bytes);
    Ok(Completion::Done)
}

/// The address space the thread runs in.
pub fn address_space_of(objects: &Objects, thread: ThreadId) -> Option<&crate::object::address_space::AddressSpace> {
    let id = objects.threads.get(thread.0)?.address_space?;
    objects.address_spaces.get(id)
}

/// The address space the thread runs in, to write to.
pub fn address_space_of_mut(
    objects: &mut Objects,
    thread: ThreadId,
) -> Option<&mut crate::object::address_space::AddressSpace> {
    let id = objects.threads.get(thread.0)?.address_space?;
    objects.address_spaces.get_mut(id)
}

/// The slot `index` of the caller's CSpace, checked to exist (argument
/// `argument` is named in the error).
pub fn slot(objects: &Objects, caller: ThreadId, index: u64, argument: u8) -> Result<SlotRef, Error> {
    let thread = objects
        .threads
        .get(caller.0)
        .ok_or(Error::new(ErrorKind::InvalidState))?;
    let cspace = thread
        .cspace
        .ok_or(Error::in_argument(ErrorKind::InvalidSlot, argument))?;
    slot_in(objects, cspace, index, argument)
}

/// Slot `index` of `cspace`, checked to exist (argument `argument` is
/// named in the error).
pub fn slot_in(objects: &Objects, cspace: CSpaceId, index: u64, argument: u8) -> Result<SlotRef, Error> {
    let slots = objects
        .capabilities
        .slot_count(cspace)
        .map_err(|_| Error::new(ErrorKind::InvalidState))?;
    match u32::try_from(index) {
        Ok(index) if index < slots => Ok(SlotRef::new(cspace, index)),
        _ => Err(Error::in_argument(ErrorKind::InvalidSlot, argument)),
    }
}

/// The capability in the caller's slot `index`, with at least `rights`.
pub fn capability(
    objects: &Objects,
    caller: ThreadId,
    index: u64,
    rights: Rights,
    argument: u8,
) -> Result<(SlotRef, Cap), Error> {
    let slot = slot(objects, caller, index, argument)?;
    let capability = objects
        .capabilities
        .get(slot)
        .map_err(|error| capability_error(error, argument))?
        .clone();
    if !Rights::from_bits_truncate(capability.rights).contains(rights) {
        return Err(Error::in_argument(ErrorKind::InsufficientRights, argument));
    }
    Ok((slot, capability))
}

/// An empty slot of the caller's CSpace, for a new capability.
pub fn empty_slot(objects: &Objects, caller: ThreadId, index: u64, argument: u8) -> Result<SlotRef, Error> {
    let slot = slot(objects, caller, index, argument)?;
    if slot.index == 0 {
        return Err(Error::in_argument(ErrorKind::InvalidSlot, argument));
    }
    match objects.capabilities.get(slot) {
        Ok(_) => Err(Error::in_argument(ErrorKind::SlotOccupied, argument)),
        Err(_) => Ok(slot),
    }
}

/// Translates a capability-table error about argument `argument`.
pub fn capability_error(error: CapabilityError, argument: u8) -> Error {
    let kind = match error {
        CapabilityError::NoSuchCSpace => ErrorKind::InvalidState,
        CapabilityError::SlotOutOfRange { .. } | CapabilityError::NullSlot => ErrorKind::InvalidSlot,
        CapabilityError::EmptySlot { .. } => ErrorKind::EmptySlot,
        CapabilityError::SlotOccupied { .. } => ErrorKind::SlotOccupied,
        CapabilityError::BadgeAlreadySet => ErrorKind::BadgeAlreadySet,
        CapabilityError::SameSlot => ErrorKind::InvalidArgument,
    };
    Error::in_argument(kind, argument)
}

/// The error for a capability of the wrong type.
pub fn wrong_type(argument: u8) -> Error {
    Error::in_argument(ErrorKind::WrongObjectType, argument)
}

/// Checks that `object` is a thread and returns it.
pub fn as_thread(object: ObjectRef, argument: u8) -> Result<ThreadId, Error> {
    match object {
        ObjectRef::Thread(thread) => Ok(thread),
        _ => Err(wrong_type(argument)),
    }
}
