//! Thread syscalls: configure, registers, start, stop, priority, exit.

use super::{Arguments, Completion, as_thread, capability, wrong_type};
use crate::memory::layout::USER_END;
use crate::object::thread::{INITIAL_RFLAGS, reference};
use crate::object::{ObjectRef, Objects};
use abi::{Error, ErrorKind, Rights};
use kernel_core::ipc::State;
use kernel_core::scheduler::ThreadId;
use x86_64::VirtAddr;

/// The thread named by argument 0, which must be stopped when `stopped`.
fn target(objects: &Objects, caller: ThreadId, arguments: Arguments, stopped: bool) -> Result<ThreadId, Error> {
    let (_, thread_capability) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    let thread = as_thread(thread_capability.object, 0)?;
    if stopped && objects.ipc.state(thread) != Some(State::Stopped) {
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    }
    Ok(thread)
}

/// ThreadConfigure.
pub fn configure(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let thread = target(objects, caller, arguments, true)?;
    let (cspace_slot, cspace_capability) = capability(objects, caller, arguments.get(1), Rights::WRITE, 1)?;
    let ObjectRef::CSpace(cspace) = cspace_capability.object else {
        return Err(wrong_type(1));
    };
    let (space_slot, space_capability) = capability(objects, caller, arguments.get(2), Rights::WRITE, 2)?;
    let ObjectRef::AddressSpace(space) = space_capability.object else {
        return Err(wrong_type(2));
    };
    let ipc_buffer = match arguments.get(3) {
        0 => None,
        address if super::ipc::valid_ipc_buffer(address) => Some(VirtAddr::new(address)),
        _ => return Err(Error::in_argument(ErrorKind::InvalidAddress, 3)),
    };
    let fault = match arguments.get(4) {
        0 => None,
        slot => {
            let (fault_slot, fault_capability) = capability(objects, caller, slot, Rights::WRITE, 4)?;
            let ObjectRef::Endpoint(endpoint) = fault_capability.object else {
                return Err(wrong_type(4));
            };
            Some((fault_slot, endpoint, fault_capability.badge))
        }
    };
    // Checked; now replace the thread's references with copies of these.
    let Some(record) = objects.threads.get(thread.0) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    let references = [reference::CSPACE, reference::ADDRESS_SPACE, reference::FAULT_ENDPOINT]
        .map(|index| record.reference_slot(index));
    for slot in references {
        objects.delete_capability(slot);
    }
    let [cspace_reference, space_reference, fault_reference] = references;
    let copied = objects.capabilities.copy(cspace_slot, cspace_reference).is_ok()
        && objects.capabilities.copy(space_slot, space_reference).is_ok()
        && fault.is_none_or(|(slot, _, _)| objects.capabilities.copy(slot, fault_reference).is_ok());
    let Some(record) = objects.threads.get_mut(thread.0) else {
        return Err(Error::new(ErrorKind::InvalidState));
    };
    if !copied {
        // Only a destroyed thread (its reference CSpace gone) gets here.
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    }
    record.cspace = Some(cspace);
    record.address_space = Some(space);
    record.ipc_buffer = ipc_buffer;
    record.fault_endpoint = fault.map(|(_, endpoint, badge)| (endpoint, badge));
    Ok(Completion::Done)
}

/// ThreadWriteRegisters: only a stopped thread, only user addresses.
pub fn write_registers(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let thread = target(objects, caller, arguments, true)?;
    let user = |value: u64, argument: u8| {
        (value < USER_END)
            .then_some(value)
            .ok_or(Error::in_argument(ErrorKind::InvalidAddress, argument))
    };
    let rip = user(arguments.get(1), 1)?;
    let rsp = user(arguments.get(2), 2)?;
    let record = objects
        .threads
        .get_mut(thread.0)
        .ok_or(Error::new(ErrorKind::InvalidState))?;
    let context = &mut record.context;
    context.rip = rip;
    context.rsp = rsp;
    context.rdi = arguments.get(3);
    context.rsi = arguments.get(4);
    context.rflags = INITIAL_RFLAGS;
    Ok(Completion::Done)
}

/// ThreadReadRegisters.
pub fn read_registers(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let thread = target(objects, caller, arguments, false)?;
    let record = objects
        .threads
        .get(thread.0)
        .ok_or(Error::new(ErrorKind::InvalidState))?;
    let context = &record.context;
    Ok(Completion::Values([
        context.rip,
        context.rsp,
        context.rflags,
        context.rdi,
        context.rsi,
    ]))
}

/// ThreadStart: needs a CSpace and an address space.
pub fn start(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let thread = target(objects, caller, arguments, true)?;
    let record = objects
        .threads
        .get(thread.0)
        .ok_or(Error::new(ErrorKind::InvalidState))?;
    if record.cspace.is_none() || record.address_space.is_none() {
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    }
    objects
        .ipc
        .start(thread)
        .map_err(|_| Error::in_argument(ErrorKind::InvalidState, 0))?;
    Ok(Completion::Done)
}

/// ThreadStop.
pub fn stop(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let thread = target(objects, caller, arguments, false)?;
    objects.ipc.stop(thread);
    Ok(Completion::Done)
}

/// ThreadSetPriority: never above the caller's own.
pub fn set_priority(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let thread = target(objects, caller, arguments, false)?;
    let ceiling = objects.ipc.priority(caller).unwrap_or(0);
    let priority = u8::try_from(arguments.get(1)).map_err(|_| Error::in_argument(ErrorKind::PriorityTooHigh, 1))?;
    if priority > ceiling {
        return Err(Error::in_argument(ErrorKind::PriorityTooHigh, 1));
    }
    objects.ipc.set_priority(thread, priority);
    Ok(Completion::Done)
}

/// Exit: the thread stops for good; if it is init, the system stops. Its
/// fault handler, if it has one, hears of it (vector `EXITED`).
pub fn exit(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let status = arguments.get(0);
    if let Some(record) = objects.threads.get_mut(caller.0) {
        record.fault = Some(crate::object::thread::Fault {
            vector: abi::fault::EXITED,
            error_code: status,
            address: 0,
        });
    }
    if !crate::syscall::ipc::send_fault(objects, caller) {
        crate::sched::end_thread(objects, caller, crate::sched::ThreadEnd::Exited(status));
    }
    Ok(Completion::Handled)
}
