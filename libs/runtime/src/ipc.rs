//! IPC: messages on endpoints, signals on notifications, and the IPC
//! buffer through which long messages and capabilities travel.

use crate::capability::{Endpoint, Notification, Slot};
use crate::syscall::{Registers, call, invoke};
use abi::{Error, IpcBuffer, MAX_CAPABILITIES, MAX_WORDS, MessageTag, REGISTER_WORDS, Syscall};

/// A short message: a label and up to eight words, all in registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// What the message means.
    pub label: u32,
    /// How many of `words` are used (more than eight: the rest are in the
    /// IPC buffer).
    pub length: u8,
    /// The register words.
    pub words: [u64; REGISTER_WORDS],
    /// How many capabilities travel with it (their slots are in the IPC buffer).
    pub capabilities: u8,
}

impl Message {
    /// A message of `words` (at most eight) with `label`.
    pub fn new(label: u32, words: &[u64]) -> Self {
        let mut message = Self {
            label,
            length: words.len().min(REGISTER_WORDS) as u8,
            ..Self::default()
        };
        message.words[..usize::from(message.length)].copy_from_slice(&words[..usize::from(message.length)]);
        message
    }

    fn tag(&self) -> MessageTag {
        MessageTag {
            label: self.label,
            words: self.length,
            capabilities: self.capabilities,
        }
    }

    fn registers(&self, slot: u64) -> Registers {
        let w = self.words;
        [
            slot,
            self.tag().to_raw(),
            w[0],
            w[1],
            w[2],
            w[3],
            w[4],
            w[5],
            w[6],
            w[7],
        ]
    }

    fn from_registers(registers: Registers) -> (u64, Self) {
        let [badge, tag, w0, w1, w2, w3, w4, w5, w6, w7] = registers;
        let tag = MessageTag::from_raw(tag).unwrap_or_default();
        let message = Self {
            label: tag.label,
            length: tag.words,
            words: [w0, w1, w2, w3, w4, w5, w6, w7],
            capabilities: tag.capabilities,
        };
        (badge, message)
    }
}

/// A message and the badge of the capability it was sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's badge (0 for replies and unbadged capabilities).
    pub badge: u64,
    /// The message.
    pub message: Message,
}

fn received(registers: Registers) -> Received {
    let (badge, message) = Message::from_registers(registers);
    Received { badge, message }
}

impl Endpoint {
    /// Sends `message`, waiting until a receiver takes it.
    ///
    /// # Errors
    /// Capability errors; `PeerDied` if the endpoint dies first.
    pub fn send(self, message: &Message) -> Result<(), Error> {
        invoke(Syscall::Send, message.registers(self.0.0)).map(drop)
    }

    /// Sends only if a receiver is waiting.
    ///
    /// # Errors
    /// `WouldBlock` if none is.
    pub fn try_send(self, message: &Message) -> Result<(), Error> {
        invoke(Syscall::SendNonBlocking, message.registers(self.0.0)).map(drop)
    }

    /// Sends `message` and waits for the reply.
    ///
    /// # Errors
    /// `PeerDied` if the server or endpoint dies before replying.
    pub fn call(self, message: &Message) -> Result<Message, Error> {
        invoke(Syscall::Call, message.registers(self.0.0)).map(|registers| received(registers).message)
    }

    /// Waits for a message.
    ///
    /// # Errors
    /// Capability errors; `PeerDied` if the endpoint dies while waiting.
    pub fn receive(self) -> Result<Received, Error> {
        invoke(Syscall::Receive, [self.0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).map(received)
    }

    /// Takes a message only if one is waiting.
    ///
    /// # Errors
    /// `WouldBlock` if none is.
    pub fn try_receive(self) -> Result<Received, Error> {
        invoke(Syscall::ReceiveNonBlocking, [self.0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).map(received)
    }

    /// Replies to the last call received, then waits for the next message:
    /// a server's loop in one syscall.
    ///
    /// # Errors
    /// As [`Endpoint::receive`].
    pub fn reply_receive(self, reply: &Message) -> Result<Received, Error> {
        invoke(Syscall::ReplyReceive, reply.registers(self.0.0)).map(received)
    }
}

/// Replies to the last call this thread received.
///
/// # Errors
/// `NoReplyTarget` without a call; `PeerDied` if the caller is gone.
pub fn reply(message: &Message) -> Result<(), Error> {
    invoke(Syscall::Reply, message.registers(0)).map(drop)
}

impl Notification {
    /// Sets the bits of this capability's badge in the notification's word.
    ///
    /// # Errors
    /// Capability errors.
    pub fn signal(self) -> Result<(), Error> {
        call(Syscall::Signal, &[self.0.0]).map(drop)
    }

    /// Waits until the word is non-zero; returns and clears it.
    ///
    /// # Errors
    /// Capability errors; `PeerDied` if the notification dies while waiting.
    pub fn wait(self) -> Result<u64, Error> {
        call(Syscall::Wait, &[self.0.0]).map(|[word, ..]| word)
    }

    /// Returns and clears the word without waiting (0 if no bit is set).
    ///
    /// # Errors
    /// Capability errors.
    pub fn poll(self) -> Result<u64, Error> {
        call(Syscall::Poll, &[self.0.0]).map(|[word, ..]| word)
    }
}

/// This thread's IPC buffer, for long messages and capability transfer.
#[derive(Clone, Copy, Debug)]
pub struct Buffer(*mut IpcBuffer);

impl Buffer {
    /// The buffer at `address`.
    ///
    /// # Safety
    /// `address` must be this thread's registered IPC buffer, mapped
    /// writable, and no other thread may use it.
    pub const unsafe fn at(address: u64) -> Self {
        Self(address as *mut IpcBuffer)
    }

    /// The buffer of a process's first thread: init's, which the kernel
    /// maps, and every program's that `process::Spawn` starts, which it
    /// maps at the same address.
    pub fn main_thread() -> Self {
        // SAFETY: the kernel (for init) and `process::Spawn` (for everything
        // it starts) map the first thread's IPC buffer writable at this
        // address before the program runs; other threads get their own
        // buffers elsewhere (`thread::ThreadSpawn`).
        unsafe { Self::at(abi::init::IPC_BUFFER) }
    }

    /// Message word `index` (8 and up).
    pub fn word(self, index: usize) -> u64 {
        let index = index.min(MAX_WORDS - 1);
        // SAFETY: `at`'s contract makes the buffer valid; the index is in
        // bounds; volatile because the kernel writes it during syscalls.
        unsafe { (&raw const (*self.0).words[index]).read_volatile() }
    }

    /// Sets message word `index` (8 and up).
    pub fn set_word(self, index: usize, value: u64) {
        let index = index.min(MAX_WORDS - 1);
        // SAFETY: as in `word`.
        unsafe { (&raw mut (*self.0).words[index]).write_volatile(value) }
    }

    /// Names the slots of the capabilities the next message sends.
    pub fn set_send_capabilities(self, slots: &[Slot]) {
        for (index, slot) in slots.iter().take(MAX_CAPABILITIES).enumerate() {
            // SAFETY: as in `word`; the index is below MAX_CAPABILITIES.
            unsafe { (&raw mut (*self.0).send_capabilities[index]).write_volatile(slot.0) }
        }
    }

    /// Names the empty slots where received capabilities go.
    pub fn set_receive_slots(self, slots: &[Slot]) {
        for index in 0..MAX_CAPABILITIES {
            let slot = slots.get(index).map_or(0, |slot| slot.0);
            // SAFETY: as in `set_send_capabilities`.
            unsafe { (&raw mut (*self.0).receive_slots[index]).write_volatile(slot) }
        }
    }
}
