//! Virtualisation syscalls: guest memory mappings, binding a vcpu, and
//! running it (see `abi::vcpu` for the protocol).

use super::{Arguments, Completion, capability, wrong_type};
use crate::arch::fpu;
use crate::memory::physical_to_virtual;
use crate::object::frame::MappedIn;
use crate::object::guest_memory::{GuestAccess, GuestMapError};
use crate::object::vcpu::{Binding, reference};
use crate::object::{ObjectRef, Objects};
use abi::vcpu::VcpuState;
use abi::{Error, ErrorKind, Rights};
use kernel_core::scheduler::ThreadId;
use x86_64::structures::paging::PhysFrame;

/// The guest memory in the caller's slot `index` (argument `argument`).
fn guest_memory(objects: &Objects, caller: ThreadId, index: u64, argument: u8) -> Result<u32, Error> {
    let (_, found) = capability(objects, caller, index, Rights::WRITE, argument)?;
    match found.object {
        ObjectRef::GuestMemory(id) => Ok(id),
        _ => Err(wrong_type(argument)),
    }
}

/// The vcpu in the caller's slot `index` (argument 0).
fn vcpu(objects: &Objects, caller: ThreadId, index: u64) -> Result<u32, Error> {
    let (_, found) = capability(objects, caller, index, Rights::WRITE, 0)?;
    match found.object {
        ObjectRef::Vcpu(id) => Ok(id),
        _ => Err(wrong_type(0)),
    }
}

/// GuestMap.
pub fn guest_map(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let memory = guest_memory(objects, caller, arguments.get(0), 0)?;
    let (_, frame_capability) = capability(objects, caller, arguments.get(1), Rights::READ, 1)?;
    let ObjectRef::Frame(frame) = frame_capability.object else {
        return Err(wrong_type(1));
    };
    let address = arguments.get(2);
    let rights = u32::try_from(arguments.get(3))
        .ok()
        .and_then(Rights::from_bits)
        .filter(|rights| rights.contains(Rights::READ) && !rights.contains(Rights::GRANT))
        .ok_or(Error::in_argument(ErrorKind::InvalidArgument, 3))?;
    if !Rights::from_bits_truncate(frame_capability.rights).contains(rights) {
        return Err(Error::in_argument(ErrorKind::InsufficientRights, 3));
    }
    let Some(frame_object) = objects.frames.get(frame) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    // Guests get RAM only: device registers stay with drivers.
    if frame_object.is_device() {
        return Err(Error::in_argument(ErrorKind::InvalidArgument, 1));
    }
    let physical = frame_object.physical();
    let access = GuestAccess {
        write: rights.contains(Rights::WRITE),
        execute: rights.contains(Rights::EXECUTE),
    };
    let Some(target) = objects.guest_memories.get_mut(memory) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    target
        .map(&mut objects.pools, address, frame, physical, access)
        .map_err(|error| match error {
            GuestMapError::BadAddress => Error::in_argument(ErrorKind::InvalidAddress, 2),
            GuestMapError::AlreadyMapped => Error::in_argument(ErrorKind::AlreadyMapped, 2),
            GuestMapError::OutOfMemory => Error::new(ErrorKind::OutOfMemory),
        })?;
    if let Some(frame_object) = objects.frames.get_mut(frame) {
        frame_object.add_mapping(MappedIn::GuestMemory(memory), address);
    }
    Ok(Completion::Done)
}

/// GuestUnmap.
pub fn guest_unmap(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let memory = guest_memory(objects, caller, arguments.get(0), 0)?;
    let address = arguments.get(1);
    let frame = objects
        .guest_memories
        .get_mut(memory)
        .and_then(|target| target.unmap(address))
        .ok_or(Error::in_argument(ErrorKind::NotMapped, 1))?;
    if let Some(frame) = objects.frames.get_mut(frame) {
        frame.forget_mapping(MappedIn::GuestMemory(memory), address);
    }
    Ok(Completion::Done)
}

/// VcpuConfigure.
pub fn vcpu_configure(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let id = vcpu(objects, caller, arguments.get(0))?;
    let (memory_slot, memory_capability) = capability(objects, caller, arguments.get(1), Rights::WRITE, 1)?;
    let ObjectRef::GuestMemory(memory) = memory_capability.object else {
        return Err(wrong_type(1));
    };
    let (frame_slot, frame_capability) = capability(objects, caller, arguments.get(2), Rights::WRITE, 2)?;
    let ObjectRef::Frame(frame) = frame_capability.object else {
        return Err(wrong_type(2));
    };
    let state_page = match objects.frames.get(frame) {
        Some(found) if !found.is_device() => found.physical(),
        Some(_) => return Err(Error::in_argument(ErrorKind::InvalidArgument, 2)),
        None => return Err(Error::new(ErrorKind::InvalidState)),
    };
    let Some(record) = objects.vcpus.get(id) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    if record.binding.is_some() {
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    }
    let (memory_reference, page_reference) = (
        record.reference_slot(reference::GUEST_MEMORY),
        record.reference_slot(reference::STATE_PAGE),
    );
    if objects.capabilities.copy(memory_slot, memory_reference).is_err() {
        return Err(Error::new(ErrorKind::InvalidState));
    }
    if objects.capabilities.copy(frame_slot, page_reference).is_err() {
        objects.delete_capability(memory_reference);
        return Err(Error::new(ErrorKind::InvalidState));
    }
    let Some(record) = objects.vcpus.get_mut(id) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    record.binding = Some(Binding {
        guest_memory: memory,
        state_page,
    });
    let state = state_page_of(state_page);
    record.hardware.store_all(state);
    state.load = 0;
    Ok(Completion::Done)
}

/// VcpuRun.
pub fn vcpu_run(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let id = vcpu(objects, caller, arguments.get(0))?;
    let Some(record) = objects.vcpus.get(id) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    let binding = record.binding.ok_or(Error::in_argument(ErrorKind::InvalidState, 0))?;
    // The bound objects live while the vcpu's own copies of their
    // capabilities do; a revoke of the originals took those copies.
    let still_bound = |index: u32, wanted: fn(ObjectRef) -> bool| {
        objects
            .capabilities
            .get(record.reference_slot(index))
            .is_ok_and(|found| wanted(found.object))
    };
    let memory_bound = still_bound(reference::GUEST_MEMORY, |object| {
        matches!(object, ObjectRef::GuestMemory(_))
    });
    if !memory_bound || !still_bound(reference::STATE_PAGE, |object| matches!(object, ObjectRef::Frame(_))) {
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    }
    let Some(memory) = objects.guest_memories.get(binding.guest_memory) else {
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    };
    let (root, generation) = (memory.root(), memory.generation());
    // The FPU holds some thread's registers: they go to its save area, and
    // the next FPU use in user mode traps and reloads its owner's.
    fpu::trap_next_use(false);
    if let Some(owner) = objects.fpu_owner.take()
        && let Some(owner) = objects.threads.get_mut(owner.0)
    {
        owner.fpu.save();
    }
    let Some(record) = objects.vcpus.get_mut(id) else {
        fpu::trap_next_use(true);
        return Err(Error::new(ErrorKind::InvalidState));
    };
    let flush = record.seen_generation != Some(generation);
    record.seen_generation = Some(generation);
    let state = state_page_of(binding.state_page);
    record.fpu.restore();
    let exit = record.hardware.run(state, root, flush);
    #[cfg(feature = "kernel-cpuid-exits")]
    let exit = answer_bench_cpuid(&mut record.hardware, state, root, exit);
    record.fpu.save();
    fpu::trap_next_use(true);
    state.exit = exit;
    Ok(Completion::Values([u64::from(exit.kind), 0, 0, 0, 0]))
}

/// Test-only: answers the benchmark's CPUID leaf in the kernel and
/// re-enters the guest until some other exit comes, so `ipcbench` can
/// compare a kernel-handled exit with one that goes to the VMM.
#[cfg(feature = "kernel-cpuid-exits")]
fn answer_bench_cpuid(
    hardware: &mut crate::arch::virt::Hardware,
    state: &mut VcpuState,
    root: PhysFrame,
    mut exit: abi::vcpu::Exit,
) -> abi::vcpu::Exit {
    while exit.kind == abi::vcpu::ExitKind::Cpuid as u32
        && state.registers.rax & 0xffff_ffff == u64::from(abi::vcpu::BENCH_KERNEL_CPUID_LEAF)
    {
        let registers = &mut state.registers;
        (registers.rax, registers.rbx, registers.rcx, registers.rdx) = (0, 0, 0, 0);
        registers.rip = registers.rip.wrapping_add(u64::from(exit.instruction_length));
        state.load = 0;
        exit = hardware.run(state, root, false);
    }
    exit
}

/// The state page in frame `page`.
fn state_page_of(page: PhysFrame) -> &'static mut VcpuState {
    let state: *mut VcpuState = physical_to_virtual(page.start_address().as_u64()).as_mut_ptr();
    // SAFETY: `page` is a RAM frame bound to the vcpu, kept alive by the
    // vcpu's reference to it (checked by the caller), page-aligned and
    // larger than `VcpuState`, whose fields are plain integers (every bit
    // pattern is valid). No user code runs while the kernel holds this
    // reference (one CPU, interrupts off), and it is dropped before the
    // syscall returns.
    unsafe { &mut *state }
}
