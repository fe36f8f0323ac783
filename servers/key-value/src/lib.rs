//! The key-value protocol: what clients of the `key-value` service may ask
//! and what it answers. Client and server both depend on this library, so
//! neither packs a byte by hand.

#![no_std]

extern crate alloc;

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct KeyValue;

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Stores `value` under `key`, replacing what was there.
    Put {
        /// The key (at most 64 bytes).
        key: String,
        /// The value (at most 512 bytes).
        value: String,
    },
    /// Reads the value under `key`.
    Get {
        /// The key.
        key: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done.
    Done,
    /// The value, if the key was there.
    Value(Option<String>),
}

/// Longest key the server accepts.
pub const MAX_KEY: usize = 64;
/// Longest value the server accepts.
pub const MAX_VALUE: usize = 512;

impl service::Protocol for KeyValue {
    const SERVICE: &'static str = "key-value";
    type Request = Request;
    type Reply = Reply;

    /// Every request may be repeated after a restart: putting the same
    /// value twice, reading twice or deleting twice leaves the same store.
    fn idempotent(_: &Request) -> bool {
        true
    }
}
