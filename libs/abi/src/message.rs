//! IPC messages: the tag, the message registers and the IPC buffer.
//!
//! A message is a label, up to [`MAX_WORDS`] words and up to
//! [`MAX_CAPABILITIES`] capabilities. Words 0..[`REGISTER_WORDS`] travel in
//! registers (`rdx`, `r10`, `r8`, `r9`, `r12`, `r13`, `r14`, `r15`); the
//! rest are copied once, from the sender's [`IpcBuffer`] to the receiver's,
//! at the same indices. A thread needs an IPC buffer only to send or
//! receive more than the register words or any capability.

/// Message words carried in registers.
pub const REGISTER_WORDS: usize = 8;
/// Most words in one message (1 KiB plus the register words).
pub const MAX_WORDS: usize = REGISTER_WORDS + 128;
/// Most capabilities in one message.
pub const MAX_CAPABILITIES: usize = 4;

/// The label, word count and capability count of a message, in `rsi`.
///
/// Bits 0..32 label, 32..40 word count, 40..43 capability count; the rest
/// must be zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageTag {
    /// What the message means, chosen by the protocol (the kernel uses
    /// [`FAULT_LABEL`](crate::fault::FAULT_LABEL) for fault messages).
    pub label: u32,
    /// Number of words, at most [`MAX_WORDS`].
    pub words: u8,
    /// Number of capabilities, at most [`MAX_CAPABILITIES`].
    pub capabilities: u8,
}

impl MessageTag {
    /// A tag for `words` words and no capabilities.
    pub const fn new(label: u32, words: u8) -> Self {
        Self {
            label,
            words,
            capabilities: 0,
        }
    }

    /// Encodes the tag for `rsi`.
    pub const fn to_raw(self) -> u64 {
        self.label as u64 | (self.words as u64) << 32 | (self.capabilities as u64) << 40
    }

    /// Decodes a tag; `None` if reserved bits are set or a count is too big.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        let tag = Self {
            label: raw as u32,
            words: (raw >> 32) as u8,
            capabilities: ((raw >> 40) & 0x7) as u8,
        };
        if raw >> 43 != 0 || tag.words as usize > MAX_WORDS || tag.capabilities as usize > MAX_CAPABILITIES {
            return None;
        }
        Some(tag)
    }
}

/// The per-thread page through which long messages and capabilities
/// travel. Registered with `ThreadConfigure`; it must be mapped writable in
/// the thread's address space when a message uses it.
#[derive(Clone, Debug)]
#[repr(C, align(4096))]
pub struct IpcBuffer {
    /// Message words; indices below [`REGISTER_WORDS`] are unused (those
    /// words travel in registers).
    pub words: [u64; MAX_WORDS],
    /// Sender: the slots of the capabilities to send (the first
    /// `capabilities` of the tag). Sending them needs the grant right on the
    /// endpoint capability used to send.
    pub send_capabilities: [u64; MAX_CAPABILITIES],
    /// Receiver: empty slots where received capabilities go, in order;
    /// 0 = do not accept one there.
    pub receive_slots: [u64; MAX_CAPABILITIES],
}

/// Byte offset of [`IpcBuffer::words`].
pub const IPC_BUFFER_WORDS_OFFSET: usize = 0;
/// Byte offset of [`IpcBuffer::send_capabilities`].
pub const IPC_BUFFER_SEND_CAPABILITIES_OFFSET: usize = MAX_WORDS * 8;
/// Byte offset of [`IpcBuffer::receive_slots`].
pub const IPC_BUFFER_RECEIVE_SLOTS_OFFSET: usize = IPC_BUFFER_SEND_CAPABILITIES_OFFSET + MAX_CAPABILITIES * 8;

const _: () = assert!(size_of::<IpcBuffer>() == 4096);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, send_capabilities) == IPC_BUFFER_SEND_CAPABILITIES_OFFSET);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, receive_slots) == IPC_BUFFER_RECEIVE_SLOTS_OFFSET);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for tag in [
            MessageTag::new(0, 0),
            MessageTag {
                label: u32::MAX,
                words: MAX_WORDS as u8,
                capabilities: 4,
            },
        ] {
            assert_eq!(MessageTag::from_raw(tag.to_raw()), Some(tag));
        }
    }

    #[test]
    fn bad_tags_are_refused() {
        assert_eq!(MessageTag::from_raw(1 << 43), None);
        assert_eq!(MessageTag::from_raw((MAX_WORDS as u64 + 1) << 32), None);
        assert_eq!(MessageTag::from_raw(5 << 40), None);
    }
}
