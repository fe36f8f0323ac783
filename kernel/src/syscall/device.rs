//! Device syscalls: interrupt lines, I/O ports and device memory, each
//! made from a control capability that only init receives.

use super::{Arguments, Completion, address_space_of, address_space_of_mut, capability, empty_slot, wrong_type};
use crate::arch::{apic, port};
use crate::object::frame::Frame;
use crate::object::irq::LINES;
use crate::object::{ObjectRef, Objects, original};
use abi::{Error, ErrorKind, KERNEL_PORTS, PORT_STRING_MAX, Rights};
use kernel_core::scheduler::ThreadId;
use x86_64::{PhysAddr, VirtAddr};
use x86_64::structures::paging::PhysFrame;

/// IrqCreate.
pub fn irq_create(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (control_slot, control) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    if control.object != ObjectRef::IrqControl {
        return Err(wrong_type(0));
    }
    let line = u8::try_from(arguments.get(1))
        .ok()
        .filter(|&line| line < LINES)
        .ok_or(Error::in_argument(ErrorKind::InvalidArgument, 1))?;
    let destination = empty_slot(objects, caller, arguments.get(2), 2)?;
    if objects.capabilities.reference_count(&ObjectRef::Irq(line)) > 0 {
        return Err(Error::in_argument(ErrorKind::AlreadyBound, 1));
    }
    objects
        .capabilities
        .insert_child(control_slot, destination, original(ObjectRef::Irq(line)))
        .map_err(|error| super::capability_error(error, 2))?;
    Ok(Completion::Done)
}

/// IrqBind.
pub fn irq_bind(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (_, irq) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    let ObjectRef::Irq(line) = irq.object else {
        return Err(wrong_type(0));
    };
    let (notification_slot, notification) = capability(objects, caller, arguments.get(1), Rights::WRITE, 1)?;
    let ObjectRef::Notification(id) = notification.object else {
        return Err(wrong_type(1));
    };
    // The badge is the bit the interrupt sets; with none it would be lost.
    if notification.badge == 0 {
        return Err(Error::in_argument(ErrorKind::InvalidArgument, 1));
    }
    let released = objects.irqs.bind(
        &mut objects.capabilities,
        line,
        notification_slot,
        id,
        notification.badge,
    );
    objects.destroy(released);
    Ok(Completion::Done)
}

/// IrqAcknowledge: unmasks the line.
pub fn irq_acknowledge(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (_, irq) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    let ObjectRef::Irq(line) = irq.object else {
        return Err(wrong_type(0));
    };
    if objects.irqs.binding(line).is_none() {
        return Err(Error::in_argument(ErrorKind::InvalidState, 0));
    }
    apic::set_line_masked(line, false);
    Ok(Completion::Done)
}

/// Called for an interrupt on I/O APIC `line`: mask it and signal.
pub fn interrupt(objects: &mut Objects, line: u8) {
    apic::set_line_masked(line, true);
    if let Some((notification, badge)) = objects.irqs.binding(line) {
        super::ipc::signal_notification(objects, notification, badge);
    }
}

// COM1 is not among `abi::KERNEL_PORTS`: it belongs to the serial driver;
// the kernel only writes its log there, polling.

/// PortsCreate.
pub fn ports_create(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (control_slot, control) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    if control.object != ObjectRef::PortControl {
        return Err(wrong_type(0));
    }
    let first = u16::try_from(arguments.get(1)).map_err(|_| Error::in_argument(ErrorKind::InvalidArgument, 1))?;
    let count = u16::try_from(arguments.get(2))
        .ok()
        .filter(|&count| count > 0 && u32::from(first) + u32::from(count) <= 0x1_0000)
        .ok_or(Error::in_argument(ErrorKind::InvalidArgument, 2))?;
    let end = u32::from(first) + u32::from(count);
    let overlaps = |&(start, length): &(u16, u16)| {
        u32::from(start) < end && u32::from(first) < u32::from(start) + u32::from(length)
    };
    if KERNEL_PORTS.iter().any(overlaps) {
        return Err(Error::in_argument(ErrorKind::InvalidArgument, 1));
    }
    let destination = empty_slot(objects, caller, arguments.get(3), 3)?;
    objects
        .capabilities
        .insert_child(control_slot, destination, original(ObjectRef::IoPorts { first, count }))
        .map_err(|error| super::capability_error(error, 3))?;
    Ok(Completion::Done)
}

/// The port and width of a PortRead or PortWrite, checked against the
/// capability's range.
fn checked_port(objects: &Objects, caller: ThreadId, arguments: Arguments, rights: Rights) -> Result<(u16, u8), Error> {
    let (_, ports) = capability(objects, caller, arguments.get(0), rights, 0)?;
    let ObjectRef::IoPorts { first, count } = ports.object else {
        return Err(wrong_type(0));
    };
    let width = u8::try_from(arguments.get(2))
        .ok()
        .filter(|width| matches!(width, 1 | 2 | 4))
        .ok_or(Error::in_argument(ErrorKind::InvalidArgument, 2))?;
    let port = arguments.get(1);
    let end = u64::from(first) + u64::from(count);
    let inside = port >= u64::from(first) && port.checked_add(u64::from(width)).is_some_and(|last| last <= end);
    if !inside {
        return Err(Error::in_argument(ErrorKind::InvalidArgument, 1));
    }
    Ok((port as u16, width))
}

/// PortRead.
pub fn port_read(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (port, width) = checked_port(objects, caller, arguments, Rights::READ)?;
    Ok(Completion::Values([port::read(port, width), 0, 0, 0, 0]))
}

/// PortWrite.
pub fn port_write(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (port, width) = checked_port(objects, caller, arguments, Rights::WRITE)?;
    port::write(port, width, arguments.get(3));
    Ok(Completion::Done)
}

/// The port, width, buffer address and length of a PortReadString or
/// PortWriteString, each checked (the buffer's mapping is the caller's to
/// check, before it touches the port).
fn checked_string(
    objects: &Objects,
    caller: ThreadId,
    arguments: Arguments,
    rights: Rights,
) -> Result<(u16, u8, VirtAddr, usize), Error> {
    let (port, width) = checked_port(objects, caller, arguments, rights)?;
    let length = usize::try_from(arguments.get(4))
        .ok()
        .filter(|&length| length > 0 && length <= PORT_STRING_MAX && length % usize::from(width) == 0)
        .ok_or(Error::in_argument(ErrorKind::InvalidLength, 4))?;
    let address = VirtAddr::try_new(arguments.get(3)).map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 3))?;
    Ok((port, width, address, length))
}

/// PortReadString: the buffer is checked writable before the first read,
/// so a refused call has drained nothing from the device.
pub fn port_read_string(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (port, width, address, length) = checked_string(objects, caller, arguments, Rights::READ)?;
    let bad_buffer = |_| Error::in_argument(ErrorKind::InvalidAddress, 3);
    let space = address_space_of_mut(objects, caller).ok_or(Error::new(ErrorKind::InvalidState))?;
    space.check_user(address, length, true).map_err(bad_buffer)?;
    let mut buffer = [0u8; PORT_STRING_MAX];
    let items = buffer
        .get_mut(..length)
        .ok_or(Error::in_argument(ErrorKind::InvalidLength, 4))?;
    port::read_string(port, width, items);
    space.write_user(address, items, true).map_err(bad_buffer)?;
    Ok(Completion::Done)
}

/// PortWriteString: the buffer is copied in (which checks it) before the
/// first write.
pub fn port_write_string(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (port, width, address, length) = checked_string(objects, caller, arguments, Rights::WRITE)?;
    let mut buffer = [0u8; PORT_STRING_MAX];
    let items = buffer
        .get_mut(..length)
        .ok_or(Error::in_argument(ErrorKind::InvalidLength, 4))?;
    address_space_of(objects, caller)
        .ok_or(Error::new(ErrorKind::InvalidState))?
        .read_user(address, items)
        .map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 3))?;
    port::write_string(port, width, items);
    Ok(Completion::Done)
}

/// DeviceFrameCreate: a frame for device registers, never for RAM or the
/// kernel's interrupt controllers.
pub fn device_frame_create(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (control_slot, control) = capability(objects, caller, arguments.get(0), Rights::WRITE, 0)?;
    if control.object != ObjectRef::DeviceMemoryControl {
        return Err(wrong_type(0));
    }
    let address = arguments.get(1);
    let acceptable = address % 4096 == 0
        && address < (1 << 52)
        && !crate::memory::frames::is_ram(address)
        && !apic::is_kernel_device_page(address);
    if !acceptable {
        return Err(Error::in_argument(ErrorKind::InvalidAddress, 1));
    }
    let destination = empty_slot(objects, caller, arguments.get(2), 2)?;
    let frame = PhysFrame::containing_address(PhysAddr::new(address));
    let id = objects
        .frames
        .insert(Frame::device(frame))
        .ok_or(Error::new(ErrorKind::OutOfMemory))?;
    if let Err(error) = objects
        .capabilities
        .insert_child(control_slot, destination, original(ObjectRef::Frame(id)))
    {
        objects.frames.remove(id);
        return Err(super::capability_error(error, 2));
    }
    Ok(Completion::Done)
}
