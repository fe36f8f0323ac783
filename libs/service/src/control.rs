//! The supervisor's channel into every server it supervises.
//!
//! init makes each server's endpoint and gives the supervisor one copy of
//! it badged [`CONTROL_BADGE`]; nobody else can hold that badge (a badge
//! is set once, by whoever mints the copy, and names mints clients' copies
//! with their own badges). [`serve`](crate::serve) answers the messages
//! that carry it before any request of the server's own protocol: a
//! heartbeat proves the serve loop still turns, and an injected fault is
//! acknowledged, then carried out ([`fault_hooks::strike`]).

use crate::Protocol;
use fault_hooks::Fault;
use serde::{Deserialize, Serialize};

/// The badge of the supervisor's copy of a server's endpoint.
pub const CONTROL_BADGE: u64 = 1 << 62;

/// The control protocol.
pub struct Control;

/// What the supervisor asks a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Answer, to show the serve loop is alive.
    Heartbeat,
    /// Acknowledge, then suffer this fault.
    Inject(Fault),
}

/// What a server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    /// Alive.
    Alive,
    /// The fault follows.
    Injected,
}

impl Protocol for Control {
    const SERVICE: &'static str = "control";
    type Request = ControlRequest;
    type Reply = ControlReply;

    /// None: the supervisor decides what a failed control call means.
    fn idempotent(_: &ControlRequest) -> bool {
        false
    }
}
