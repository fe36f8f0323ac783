//! Putting postcard bytes into an IPC message and taking them out again.

use abi::MAX_WORDS;
use runtime::ipc::{Buffer, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most bytes one message carries.
pub const MAX_BYTES: usize = MAX_WORDS * 8;
/// Set in the label of an error reply.
pub const ERROR_LABEL: u32 = 1 << 31;

/// Why a server could not answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ErrorCode {
    /// The request did not decode as the protocol's request type.
    Malformed = 1,
    /// The request was too long.
    TooLong = 2,
    /// The client may not ask this.
    Denied = 3,
    /// The server has nothing by that name.
    NotFound = 4,
}

impl ErrorCode {
    /// Decodes a code; unknown codes read as `Malformed`.
    pub fn from_word(word: u64) -> Self {
        match word {
            2 => Self::TooLong,
            3 => Self::Denied,
            4 => Self::NotFound,
            _ => Self::Malformed,
        }
    }
}

/// Encodes `value` into a message (words beyond the registers go to
/// `buffer`). `None` if it does not fit.
pub fn encode<T: Serialize>(value: &T, buffer: Buffer) -> Option<Message> {
    let mut bytes = [0u8; MAX_BYTES];
    let used = postcard::to_slice(value, &mut bytes).ok()?.len();
    let words = used.div_ceil(8);
    let mut message = Message::new(used as u32, &[]);
    message.length = words as u8;
    for (index, chunk) in bytes.as_chunks::<8>().0.iter().take(words).enumerate() {
        let word = u64::from_le_bytes(*chunk);
        match message.words.get_mut(index) {
            Some(register) => *register = word,
            None => buffer.set_word(index, word),
        }
    }
    Some(message)
}

/// Decodes a message's bytes; `None` if they are not a `T`.
pub fn decode<T: DeserializeOwned>(message: &Message, buffer: Buffer) -> Option<T> {
    let length = message.label as usize;
    if length > MAX_BYTES || length.div_ceil(8) > usize::from(message.length) {
        return None;
    }
    let mut bytes = [0u8; MAX_BYTES];
    for (index, chunk) in bytes
        .as_chunks_mut::<8>()
        .0
        .iter_mut()
        .take(length.div_ceil(8))
        .enumerate()
    {
        let word = message.words.get(index).copied().unwrap_or_else(|| buffer.word(index));
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    postcard::from_bytes(bytes.get(..length)?).ok()
}

/// An error reply.
pub fn error(code: ErrorCode) -> Message {
    Message::new(ERROR_LABEL, &[code as u64])
}
