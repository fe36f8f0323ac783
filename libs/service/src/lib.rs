//! Typed IPC for servers and their clients.
//!
//! A protocol is two Rust types, a request and a reply, serialised with
//! postcard ([`Protocol`]). [`serve`] runs a server's loop: it decodes each
//! request, calls the handler, and encodes the reply; a request that does
//! not decode gets an error reply and the server goes on serving.
//! [`Client`] calls a server and, if the server died, looks it up again
//! and retries — but only requests the protocol marks idempotent.
//!
//! Every server built on [`serve`] also answers its supervisor's
//! heartbeats and fault injections ([`control`]).
//!
//! On the wire a message's label is the length in bytes of the postcard
//! encoding, and its words carry the bytes (the first 64 in registers, the
//! rest through the IPC buffer). A label with [`ERROR_LABEL`] set is an
//! error reply whose word 0 is an [`ErrorCode`]. The label's middle bits
//! check the bytes (or the code), so that a garbled message is refused as
//! malformed instead of being read as something it is not.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod client;
pub mod control;
pub mod init;
pub mod names;
pub mod process;
mod server;
pub mod transfer;
mod wire;

pub use client::{ATTEMPTS, CallError, Client};
pub use server::{Request, Response, serve};
pub use wire::{ERROR_LABEL, ErrorCode, MAX_BYTES, decode};

use runtime::ipc::{Buffer, Message};

/// Encodes a reply of protocol `P`, or an error reply if it does not fit.
/// For servers that run their own loop instead of [`serve`].
pub fn encode_reply<P: Protocol>(reply: &P::Reply, buffer: Buffer) -> Message {
    wire::encode(reply, buffer).unwrap_or_else(|| wire::error(ErrorCode::TooLong))
}

/// An error reply.
pub fn error_reply(code: ErrorCode) -> Message {
    wire::error(code)
}

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A protocol: what a client may ask a server and what it answers.
pub trait Protocol {
    /// The service's name, as registered with names.
    const SERVICE: &'static str;
    /// What clients send.
    type Request: Serialize + DeserializeOwned;
    /// What the server answers.
    type Reply: Serialize + DeserializeOwned;
    /// Whether a request may safely be sent twice (after the server died
    /// mid-call, the client cannot know whether it was carried out).
    fn idempotent(request: &Self::Request) -> bool;
}
