//! Putting postcard bytes into an IPC message and taking them out again.

use abi::MAX_WORDS;
use runtime::ipc::{Buffer, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most bytes one message carries.
pub const MAX_BYTES: usize = MAX_WORDS * 8;
/// Set in the label of an error reply.
pub const ERROR_LABEL: u32 = 1 << 31;
/// The label's low bits: the length of the encoding in bytes.
const LENGTH_BITS: u32 = 12;
/// The label's bits between the length and [`ERROR_LABEL`]: a check of the
/// bytes (of the code word, in an error reply), so that a message of random
/// words is refused rather than decoded.
const CHECK_MASK: u32 = (1 << (31 - LENGTH_BITS)) - 1;
const _: () = assert!(MAX_BYTES < 1 << LENGTH_BITS);

/// The check of `bytes`: FNV-1a folded into [`CHECK_MASK`].
fn check(bytes: &[u8]) -> u32 {
    let hash = bytes.iter().fold(0x811c_9dc5u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (hash ^ (hash >> 19)) & CHECK_MASK
}

/// The label for a message of `bytes`.
fn label(bytes: &[u8]) -> u32 {
    bytes.len() as u32 | (check(bytes) << LENGTH_BITS)
}

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
    let mut message = Message::new(label(bytes.get(..used)?), &[]);
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
    let length = (message.label & ((1 << LENGTH_BITS) - 1)) as usize;
    if message.label & ERROR_LABEL != 0 || length > MAX_BYTES || length.div_ceil(8) > usize::from(message.length) {
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
    let bytes = bytes.get(..length)?;
    if message.label != label(bytes) {
        return None;
    }
    postcard::from_bytes(bytes).ok()
}

/// An error reply.
pub fn error(code: ErrorCode) -> Message {
    let word = code as u64;
    Message::new(ERROR_LABEL | (check(&word.to_le_bytes()) << LENGTH_BITS), &[word])
}

/// The code of an error reply; `None` if the message is not one, or its
/// check fails.
pub fn error_code(message: &Message) -> Option<ErrorCode> {
    let word = message.words[0];
    let expected = ERROR_LABEL | (check(&word.to_le_bytes()) << LENGTH_BITS);
    (message.label == expected && message.length == 1).then(|| ErrorCode::from_word(word))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::boxed::Box;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Short(u8),
        Named { key: String, values: Vec<u32> },
    }

    /// An IPC buffer on the host heap, standing in for the mapped page.
    fn buffer() -> (Box<abi::IpcBuffer>, Buffer) {
        let mut page = Box::new(abi::IpcBuffer {
            words: [0; MAX_WORDS],
            send_capabilities: [0; abi::MAX_CAPABILITIES],
            receive_slots: [0; abi::MAX_CAPABILITIES],
        });
        // SAFETY: the page lives as long as the returned box, which each
        // test keeps beside the handle, and only this thread uses it.
        let handle = unsafe { Buffer::at(&mut *page as *mut abi::IpcBuffer as u64) };
        (page, handle)
    }

    #[test]
    fn short_messages_travel_in_registers_only() {
        let (_page, buffer) = buffer();
        let message = encode(&Sample::Short(7), buffer).unwrap();
        assert!(usize::from(message.length) <= 8);
        assert_eq!(decode::<Sample>(&message, buffer), Some(Sample::Short(7)));
    }

    #[test]
    fn long_messages_spill_into_the_buffer_and_come_back() {
        let (_page, buffer) = buffer();
        let sample = Sample::Named {
            key: "k".repeat(100),
            values: (0..150).collect(),
        };
        let message = encode(&sample, buffer).unwrap();
        assert!(usize::from(message.length) > 8, "{} words", message.length);
        assert_ne!(buffer.word(8), 0, "the buffer holds the words past the registers");
        assert_eq!(decode::<Sample>(&message, buffer), Some(sample));
    }

    #[test]
    fn values_too_big_for_a_message_are_refused() {
        let (_page, buffer) = buffer();
        let huge = Sample::Named {
            key: "x".repeat(MAX_BYTES),
            values: vec![],
        };
        assert!(encode(&huge, buffer).is_none());
    }

    #[test]
    fn malformed_messages_never_decode_or_panic() {
        let (_page, buffer) = buffer();
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut message = Message::new((seed % 2000) as u32, &[seed, seed >> 3, !seed, seed.rotate_left(9)]);
            message.length = (seed % 140) as u8;
            // Whatever the words say, decoding answers Some or None.
            let _ = decode::<Sample>(&message, buffer);
        }
        // A length the words cannot hold is refused outright.
        let mut lying = encode(&Sample::Short(1), buffer).unwrap();
        lying.label = 500;
        assert_eq!(decode::<Sample>(&lying, buffer), None);
        let garbage = Message::new(16, &[u64::MAX, u64::MAX]);
        assert_eq!(decode::<Sample>(&garbage, buffer), None);
    }

    #[test]
    fn a_changed_byte_or_length_fails_the_check() {
        let (_page, buffer) = buffer();
        let good = encode(&Sample::Short(7), buffer).unwrap();
        let mut changed = good;
        changed.words[0] ^= 1 << 8;
        assert_eq!(decode::<Sample>(&changed, buffer), None);
        let mut longer = good;
        longer.label += 1;
        longer.words[0] = good.words[0];
        assert_eq!(decode::<Sample>(&longer, buffer), None);
    }

    #[test]
    fn random_words_almost_never_pass_as_a_message_or_an_error() {
        let (_page, buffer) = buffer();
        let mut seed = 0x0bad_cafe_f00d_1234u64;
        let mut passed = 0;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut message = Message::new(seed as u32, &[seed.rotate_left(7), seed.rotate_left(21)]);
            message.length = 2;
            if decode::<Result<u8, u8>>(&message, buffer).is_some() || error_code(&message).is_some() {
                passed += 1;
            }
        }
        assert_eq!(passed, 0, "random words decoded");
    }

    #[test]
    fn error_replies_carry_their_code() {
        let reply = error(ErrorCode::Denied);
        assert_ne!(reply.label & ERROR_LABEL, 0);
        assert_eq!(error_code(&reply), Some(ErrorCode::Denied));
        let mut changed = reply;
        changed.words[0] = ErrorCode::NotFound as u64;
        assert_eq!(error_code(&changed), None);
        assert_eq!(ErrorCode::from_word(99), ErrorCode::Malformed);
    }
}
