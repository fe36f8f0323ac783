//! Capability syscalls: copy, mint, move, delete, revoke, identify.

use super::{Arguments, Completion, capability, capability_error, slot, slot_in, wrong_type};
use crate::object::{ObjectRef, Objects};
use abi::{Error, ErrorKind, Rights, Syscall};
use kernel_core::capability_table::SlotRef;
use kernel_core::scheduler::ThreadId;

/// A slot named by a CSpace capability slot (0 = the caller's own CSpace)
/// and an index into that CSpace. The CSpace capability needs write.
fn foreign_slot(
    objects: &Objects,
    caller: ThreadId,
    cspace_slot: u64,
    index: u64,
    cspace_argument: u8,
    index_argument: u8,
) -> Result<SlotRef, Error> {
    if cspace_slot == 0 {
        return slot(objects, caller, index, index_argument);
    }
    let (_, cspace_capability) = capability(objects, caller, cspace_slot, Rights::WRITE, cspace_argument)?;
    let ObjectRef::CSpace(cspace) = cspace_capability.object else {
        return Err(wrong_type(cspace_argument));
    };
    slot_in(objects, cspace, index, index_argument)
}

/// CapabilityCopy, CapabilityMint and CapabilityMove.
pub fn transfer(
    objects: &mut Objects,
    caller: ThreadId,
    syscall: Syscall,
    arguments: Arguments,
) -> Result<Completion, Error> {
    let (source, source_capability) = capability(objects, caller, arguments.get(0), Rights::empty(), 0)?;
    let destination = foreign_slot(objects, caller, arguments.get(1), arguments.get(2), 1, 2)?;
    if destination.index == 0 {
        return Err(Error::in_argument(ErrorKind::InvalidSlot, 2));
    }
    if objects.capabilities.get(destination).is_ok() {
        return Err(Error::in_argument(ErrorKind::SlotOccupied, 2));
    }
    if source == destination {
        return Err(Error::in_argument(ErrorKind::InvalidArgument, 2));
    }
    let result = match syscall {
        Syscall::CapabilityMint => {
            let rights = u32::try_from(arguments.get(3))
                .ok()
                .filter(|&rights| Rights::from_bits(rights).is_some())
                .ok_or(Error::in_argument(ErrorKind::InvalidArgument, 3))?;
            let badge = match arguments.get(4) {
                0 => None,
                _ if source_capability.badge != 0 => return Err(Error::in_argument(ErrorKind::BadgeAlreadySet, 4)),
                badge => Some(badge),
            };
            objects.capabilities.mint(source, destination, rights, badge)
        }
        Syscall::CapabilityMove => objects.capabilities.move_capability(source, destination),
        _ => objects.capabilities.copy(source, destination),
    };
    result.map_err(|error| capability_error(error, 2))?;
    Ok(Completion::Done)
}

/// CapabilityDelete and CapabilityRevoke.
pub fn remove(
    objects: &mut Objects,
    caller: ThreadId,
    syscall: Syscall,
    arguments: Arguments,
) -> Result<Completion, Error> {
    let target = foreign_slot(objects, caller, arguments.get(0), arguments.get(1), 0, 1)?;
    let object = objects
        .capabilities
        .get(target)
        .map_err(|error| capability_error(error, 1))?
        .object;
    if syscall == Syscall::CapabilityDelete && empty_a_step_of_last_cspace(objects, target, object) {
        return Ok(Completion::Restart);
    }
    let released = if syscall == Syscall::CapabilityRevoke {
        objects
            .capabilities
            .revoke(target)
            .map_err(|error| capability_error(error, 1))?
    } else {
        objects
            .capabilities
            .delete(target)
            .map_err(|error| capability_error(error, 1))?
            .into_iter()
            .collect()
    };
    objects.destroy(released);
    Ok(Completion::Done)
}

/// The most occupied slots one step of deleting a CSpace empties: a step
/// takes a few milliseconds at most (a guest's RAM frame, unmapped and
/// freed, is the costliest kind of slot).
const CSPACE_SLOTS_PER_STEP: usize = 128;

/// When `target` holds the last capability to `object`, a CSpace with
/// more than a step's worth of occupied slots (besides `target` itself),
/// empties one step's worth and returns true: the delete is then
/// restarted, so deleting a CSpace of 50,000 frames (a guest's RAM) never
/// keeps the CPU from interrupts for long. Otherwise the delete finishes
/// in one go.
fn empty_a_step_of_last_cspace(objects: &mut Objects, target: SlotRef, object: ObjectRef) -> bool {
    let ObjectRef::CSpace(cspace) = object else {
        return false;
    };
    if objects.capabilities.reference_count(&object) != 1 {
        return false;
    }
    let keep = if target.cspace == cspace { target.index } else { 0 };
    match objects.capabilities.empty_step(cspace, CSPACE_SLOTS_PER_STEP, keep) {
        Ok(step) if step.emptied > 0 => {
            objects.destroy(step.released);
            true
        }
        _ => false,
    }
}

/// CapabilityIdentify.
pub fn identify(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (_, found) = capability(objects, caller, arguments.get(0), Rights::empty(), 0)?;
    let available = match found.object {
        ObjectRef::Memory(pool) => objects.pools.available(pool),
        _ => 0,
    };
    let physical = match found.object {
        ObjectRef::Frame(frame) => objects
            .frames
            .get_mut(frame)
            .map_or(0, |frame| frame.expose().start_address().as_u64()),
        _ => 0,
    };
    Ok(Completion::Values([
        found.object.object_type() as u64,
        u64::from(found.rights),
        found.badge,
        available,
        physical,
    ]))
}
