//! IPC syscalls, and moving a message between two threads once the state
//! machine (`kernel_core::ipc`) has matched them.
//!
//! Words 0..8 go register to register; the rest are copied once, from the
//! sender's IPC buffer to the receiver's; capabilities are copied into the
//! receiver's chosen slots as children of the sender's.

use super::{Arguments, Completion, capability, slot, wrong_type};
use crate::object::thread::Fault;
use crate::object::{Cap, ObjectRef, Objects};
use abi::fault::{FAULT_LABEL, FAULT_RESUME};
use abi::{
    Error, ErrorKind, IPC_BUFFER_RECEIVE_SLOTS_OFFSET, IPC_BUFFER_SEND_CAPABILITIES_OFFSET, MAX_CAPABILITIES,
    MAX_WORDS, MessageTag, REGISTER_WORDS, Rights, Syscall,
};
use kernel_core::ipc::{Delivery, EndpointId, IpcError, NotificationId, SendKind, Transfer, TransferKind};
use kernel_core::scheduler::ThreadId;
use x86_64::VirtAddr;

fn ipc_error(error: IpcError) -> Error {
    Error::new(match error {
        IpcError::WouldBlock => ErrorKind::WouldBlock,
        IpcError::NoReplyTarget => ErrorKind::NoReplyTarget,
        IpcError::PeerDied => ErrorKind::PeerDied,
        IpcError::InvalidState | IpcError::NoSuchObject => ErrorKind::InvalidState,
    })
}

/// Checks a tag the caller passed in argument 1, and that its IPC buffer
/// can hold what the tag says travels through it.
fn checked_tag(objects: &Objects, caller: ThreadId, raw: u64) -> Result<MessageTag, Error> {
    let tag = MessageTag::from_raw(raw).ok_or(Error::in_argument(ErrorKind::InvalidArgument, 1))?;
    if usize::from(tag.words) > REGISTER_WORDS || tag.capabilities > 0 {
        let thread = objects
            .threads
            .get(caller.0)
            .ok_or(Error::new(ErrorKind::InvalidState))?;
        let buffer = thread
            .ipc_buffer
            .ok_or(Error::in_argument(ErrorKind::InvalidAddress, 1))?;
        let space = super::address_space_of(objects, caller).ok_or(Error::new(ErrorKind::InvalidState))?;
        let mut probe = [0u8; 8];
        space
            .read_user(buffer, &mut probe)
            .map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 1))?;
    }
    Ok(tag)
}

/// The endpoint in the caller's slot `index` (argument 0), with `rights`.
fn endpoint(objects: &Objects, caller: ThreadId, index: u64, rights: Rights) -> Result<(EndpointId, Cap), Error> {
    let (_, found) = capability(objects, caller, index, rights, 0)?;
    match found.object {
        ObjectRef::Endpoint(endpoint) => Ok((endpoint, found)),
        _ => Err(wrong_type(0)),
    }
}

/// The notification in the caller's slot `index` (argument 0), with `rights`.
fn notification(
    objects: &Objects,
    caller: ThreadId,
    index: u64,
    rights: Rights,
) -> Result<(NotificationId, Cap), Error> {
    let (_, found) = capability(objects, caller, index, rights, 0)?;
    match found.object {
        ObjectRef::Notification(notification) => Ok((notification, found)),
        _ => Err(wrong_type(0)),
    }
}

/// Send, SendNonBlocking and Call.
pub fn send(
    objects: &mut Objects,
    caller: ThreadId,
    syscall: Syscall,
    arguments: Arguments,
) -> Result<Completion, Error> {
    let (endpoint, endpoint_capability) = endpoint(objects, caller, arguments.get(0), Rights::WRITE)?;
    let tag = checked_tag(objects, caller, arguments.get(1))?;
    let grant = Rights::from_bits_truncate(endpoint_capability.rights).contains(Rights::GRANT);
    if tag.capabilities > 0 && !grant {
        return Err(Error::in_argument(ErrorKind::InsufficientRights, 0));
    }
    let kind = if syscall == Syscall::Call {
        SendKind::Call
    } else {
        SendKind::Send
    };
    let blocking = syscall != Syscall::SendNonBlocking;
    let delivery = objects
        .ipc
        .send(caller, endpoint, endpoint_capability.badge, kind, grant, blocking)
        .map_err(ipc_error)?;
    match delivery {
        Delivery::Delivered(transfer) => {
            deliver(objects, transfer);
            Ok(if kind == SendKind::Send {
                Completion::Done
            } else {
                Completion::Handled
            })
        }
        Delivery::Blocked => Ok(Completion::Handled),
    }
}

/// Receive and ReceiveNonBlocking.
pub fn receive(
    objects: &mut Objects,
    caller: ThreadId,
    blocking: bool,
    arguments: Arguments,
) -> Result<Completion, Error> {
    let (endpoint, _) = endpoint(objects, caller, arguments.get(0), Rights::READ)?;
    let delivery = objects.ipc.receive(caller, endpoint, blocking).map_err(ipc_error)?;
    objects.deliver_peer_died();
    if let Delivery::Delivered(transfer) = delivery {
        deliver(objects, transfer);
    }
    Ok(Completion::Handled)
}

/// Reply.
pub fn reply(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    checked_tag(objects, caller, arguments.get(1))?;
    let transfer = objects.ipc.reply(caller).map_err(ipc_error)?;
    deliver(objects, transfer);
    Ok(Completion::Done)
}

/// ReplyReceive: a reply that cannot be delivered (no call, or the caller
/// died) is dropped, so a server loop never stalls on a dead client.
pub fn reply_receive(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    endpoint(objects, caller, arguments.get(0), Rights::READ)?;
    checked_tag(objects, caller, arguments.get(1))?;
    if let Ok(transfer) = objects.ipc.reply(caller) {
        deliver(objects, transfer);
    }
    receive(objects, caller, true, arguments)
}

/// Signal.
pub fn signal(objects: &mut Objects, caller: ThreadId, arguments: Arguments) -> Result<Completion, Error> {
    let (notification, notification_capability) = notification(objects, caller, arguments.get(0), Rights::WRITE)?;
    signal_notification(objects, notification, notification_capability.badge);
    Ok(Completion::Done)
}

/// Signals a notification and hands the word to a thread it wakes.
pub fn signal_notification(objects: &mut Objects, notification: NotificationId, badge: u64) {
    if let Ok(Some((thread, word))) = objects.ipc.signal(notification, badge)
        && let Some(thread) = objects.threads.get_mut(thread.0)
    {
        thread.context.rax = 0;
        thread.context.rdi = word;
    }
}

/// Wait and Poll.
pub fn wait(
    objects: &mut Objects,
    caller: ThreadId,
    blocking: bool,
    arguments: Arguments,
) -> Result<Completion, Error> {
    let (notification, _) = notification(objects, caller, arguments.get(0), Rights::READ)?;
    match objects.ipc.wait(caller, notification, blocking).map_err(ipc_error)? {
        Some(word) => Ok(Completion::Values([word, 0, 0, 0, 0])),
        None => Ok(Completion::Handled),
    }
}

/// Sends the fault message for a thread that took an exception, or
/// returns false if it has no fault endpoint (or it is gone).
pub fn send_fault(objects: &mut Objects, thread: ThreadId) -> bool {
    let Some((endpoint, badge)) = objects.threads.get(thread.0).and_then(|thread| thread.fault_endpoint) else {
        return false;
    };
    objects.ipc.stop(thread);
    match objects.ipc.send(thread, endpoint, badge, SendKind::Fault, false, true) {
        Ok(Delivery::Delivered(transfer)) => {
            deliver(objects, transfer);
            true
        }
        Ok(Delivery::Blocked) => true,
        Err(_) => false,
    }
}

/// A message: tag, words and the slots of capabilities to send.
struct Message {
    tag: MessageTag,
    words: [u64; MAX_WORDS],
    capabilities: [u64; MAX_CAPABILITIES],
}

/// Reads the message `thread` is sending (from its registers, IPC buffer,
/// or for a fault, from what the kernel recorded).
fn read_message(objects: &Objects, thread: ThreadId, kind: TransferKind) -> Option<Message> {
    let record = objects.threads.get(thread.0)?;
    let context = &record.context;
    let mut message = Message {
        tag: MessageTag::default(),
        words: [0; MAX_WORDS],
        capabilities: [0; MAX_CAPABILITIES],
    };
    if kind == TransferKind::Fault {
        let Fault {
            vector,
            error_code,
            address,
        } = record.fault?;
        message.tag = MessageTag::new(FAULT_LABEL, abi::fault::word::COUNT as u8);
        message.words[..5].copy_from_slice(&[vector, error_code, address, context.rip, context.rsp]);
        return Some(message);
    }
    // The tag was checked when the message was sent.
    message.tag = MessageTag::from_raw(context.rsi).unwrap_or_default();
    message.words[..REGISTER_WORDS].copy_from_slice(&context.message_words());
    let count = usize::from(message.tag.words);
    if count > REGISTER_WORDS || message.tag.capabilities > 0 {
        let buffer = record.ipc_buffer?;
        let space = objects.address_spaces.get(record.address_space?)?;
        let mut bytes = [0u8; (MAX_WORDS - REGISTER_WORDS) * 8];
        let long = bytes.get_mut(..count.saturating_sub(REGISTER_WORDS) * 8)?;
        if space.read_user(buffer + (REGISTER_WORDS * 8) as u64, long).is_err() {
            message.tag.words = REGISTER_WORDS.min(count) as u8;
        }
        for (word, chunk) in message.words[REGISTER_WORDS..].iter_mut().zip(long.as_chunks::<8>().0) {
            *word = u64::from_le_bytes(*chunk);
        }
        let mut slots = [0u8; MAX_CAPABILITIES * 8];
        let send_slots = buffer + IPC_BUFFER_SEND_CAPABILITIES_OFFSET as u64;
        if space.read_user(send_slots, &mut slots).is_err() {
            message.tag.capabilities = 0;
        }
        for (slot, chunk) in message.capabilities.iter_mut().zip(slots.as_chunks::<8>().0) {
            *slot = u64::from_le_bytes(*chunk);
        }
    }
    Some(message)
}

/// Carries out a transfer the state machine decided on.
pub fn deliver(objects: &mut Objects, transfer: Transfer) {
    if deliver_in_registers(objects, &transfer) {
        return;
    }
    let Some(mut message) = read_message(objects, transfer.from, transfer.kind) else {
        // The sender's message cannot be read (its IPC buffer went, say).
        // The receiver still gets a well-formed result: an empty message
        // with the sender's badge, which no protocol accepts.
        if transfer.kind != TransferKind::FaultReply {
            log::warn!("a message could not be read from its sender; delivered it empty");
            set_received(objects, &transfer, MessageTag::default(), &[0; REGISTER_WORDS]);
        }
        return;
    };
    if transfer.kind == TransferKind::FaultReply {
        finish_fault(objects, transfer.to, message.tag.label);
        return;
    }
    if !transfer.grant {
        message.tag.capabilities = 0;
    }
    let delivered_words = write_long_words(objects, transfer.to, &mut message);
    message.tag.words = delivered_words;
    message.tag.capabilities = move_capabilities(objects, &transfer, &message);
    set_received(objects, &transfer, message.tag, &message.words[..REGISTER_WORDS]);
}

/// The fast path: a message that fits in registers (no buffer words, no
/// capabilities, not a fault) goes straight from the sender's saved
/// registers to the receiver's. Returns false when the message needs the
/// general path.
fn deliver_in_registers(objects: &mut Objects, transfer: &Transfer) -> bool {
    if matches!(transfer.kind, TransferKind::Fault | TransferKind::FaultReply) {
        return false;
    }
    let Some(sender) = objects.threads.get(transfer.from.0) else {
        return false;
    };
    let context = &sender.context;
    let Some(tag) = MessageTag::from_raw(context.rsi) else {
        return false;
    };
    if usize::from(tag.words) > REGISTER_WORDS || tag.capabilities > 0 {
        return false;
    }
    let words = context.message_words();
    set_received(objects, transfer, tag, &words);
    true
}

/// Puts a delivered message in the receiver's registers (success, badge,
/// tag, the register words); a one-way sender's send succeeded.
fn set_received(objects: &mut Objects, transfer: &Transfer, tag: MessageTag, words: &[u64]) {
    if let Some(receiver) = objects.threads.get_mut(transfer.to.0) {
        let context = &mut receiver.context;
        context.rax = 0;
        context.rdi = transfer.badge;
        context.rsi = tag.to_raw();
        context.set_message_words(words);
    }
    if transfer.kind == TransferKind::Send
        && let Some(sender) = objects.threads.get_mut(transfer.from.0)
    {
        sender.context.rax = 0;
    }
}

/// Copies words 8.. into the receiver's IPC buffer; returns how many words
/// the receiver gets (the register words only if it has no usable buffer).
fn write_long_words(objects: &mut Objects, receiver: ThreadId, message: &mut Message) -> u8 {
    let count = usize::from(message.tag.words);
    if count <= REGISTER_WORDS {
        return message.tag.words;
    }
    let Some(thread) = objects.threads.get(receiver.0) else {
        return REGISTER_WORDS as u8;
    };
    let (Some(buffer), Some(space)) = (thread.ipc_buffer, thread.address_space) else {
        return REGISTER_WORDS as u8;
    };
    let mut bytes = [0u8; (MAX_WORDS - REGISTER_WORDS) * 8];
    for (chunk, word) in bytes
        .as_chunks_mut::<8>()
        .0
        .iter_mut()
        .zip(message.words.iter().take(count).skip(REGISTER_WORDS))
    {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let Some(long) = bytes.get(..(count - REGISTER_WORDS) * 8) else {
        return REGISTER_WORDS as u8;
    };
    let written = objects.address_spaces.get_mut(space).is_some_and(|space| {
        space
            .write_user(buffer + (REGISTER_WORDS * 8) as u64, long, true)
            .is_ok()
    });
    if written {
        message.tag.words
    } else {
        REGISTER_WORDS as u8
    }
}

/// Copies the message's capabilities into the slots the receiver named;
/// stops at the first that cannot be placed. Returns how many arrived.
fn move_capabilities(objects: &mut Objects, transfer: &Transfer, message: &Message) -> u8 {
    let count = usize::from(message.tag.capabilities);
    if count == 0 {
        return 0;
    }
    let Some(receiver) = objects.threads.get(transfer.to.0) else {
        return 0;
    };
    let (Some(buffer), Some(space)) = (receiver.ipc_buffer, receiver.address_space) else {
        return 0;
    };
    let mut bytes = [0u8; MAX_CAPABILITIES * 8];
    let readable = objects.address_spaces.get(space).is_some_and(|space| {
        space
            .read_user(buffer + IPC_BUFFER_RECEIVE_SLOTS_OFFSET as u64, &mut bytes)
            .is_ok()
    });
    if !readable {
        return 0;
    }
    let mut moved = 0;
    let receive_slots = bytes.as_chunks::<8>().0.iter().map(|chunk| u64::from_le_bytes(*chunk));
    for (destination, &sent) in receive_slots.zip(&message.capabilities).take(count) {
        let source = slot(objects, transfer.from, sent, 0);
        let target = super::empty_slot(objects, transfer.to, destination, 0);
        match (source, target) {
            (Ok(source), Ok(target)) if objects.capabilities.copy(source, target).is_ok() => moved += 1,
            _ => break,
        }
    }
    moved
}

/// The fault handler replied: resume the thread if it said so (never one
/// that exited).
fn finish_fault(objects: &mut Objects, thread: ThreadId, label: u32) {
    let exited = objects
        .threads
        .get(thread.0)
        .and_then(|record| record.fault)
        .is_some_and(|fault| fault.vector == abi::fault::EXITED);
    if label != FAULT_RESUME || exited {
        if let Some(record) = objects.threads.get(thread.0) {
            log::info!(
                "thread '{}' stays stopped: its fault handler did not resume it",
                record.name
            );
        }
        return;
    }
    if let Some(record) = objects.threads.get_mut(thread.0) {
        record.fault = None;
    }
    let _ = objects.ipc.start(thread);
}

/// The IPC buffer address a thread may register: page-aligned, user half.
pub fn valid_ipc_buffer(address: u64) -> bool {
    address % 4096 == 0 && address < crate::memory::layout::USER_END && VirtAddr::try_new(address).is_ok()
}
