//! The serial protocol: write bytes to the console, read what was typed.

#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The protocol, for `service::Client` and `service::serve`.
pub struct Serial;

/// Requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Writes these bytes (at most [`MAX_WRITE`]).
    Write(Vec<u8>),
    /// Returns up to `max` bytes typed since the last read, none if nothing
    /// was. It never waits: a server that waited for input could not
    /// answer its supervisor's heartbeat. Clients poll.
    Read {
        /// The most bytes to return (at most [`MAX_READ`]).
        max: u16,
    },
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The bytes were written.
    Written,
    /// Bytes typed since the last read.
    Data(Vec<u8>),
}

/// The most bytes one write takes.
pub const MAX_WRITE: usize = 512;
/// The most bytes one read returns.
pub const MAX_READ: u16 = 512;

impl service::Protocol for Serial {
    const SERVICE: &'static str = "serial";
    type Request = Request;
    type Reply = Reply;

    /// A read may be repeated after a restart (it only waits for new
    /// input); a write may not (the text could appear twice).
    fn idempotent(request: &Request) -> bool {
        matches!(request, Request::Read { .. })
    }
}
