//! The server side: a dispatch loop over typed requests.

use crate::Protocol;
use crate::control::{CONTROL_BADGE, ControlReply, ControlRequest};
use crate::wire::{self, ErrorCode};
use runtime::capability::{Endpoint, Slot};
use runtime::ipc::{Buffer, Message};

/// One decoded request.
pub struct Request<P: Protocol> {
    /// The badge of the client's capability: who is asking.
    pub badge: u64,
    /// What it asks.
    pub body: P::Request,
    /// How many capabilities came with it (in the receive slot).
    pub capabilities: u8,
}

/// What a handler answers: a reply, perhaps with one of the server's
/// capabilities.
pub struct Response<R> {
    /// The reply.
    pub value: R,
    /// A capability to send with it.
    pub capability: Option<Slot>,
}

impl<R> From<R> for Response<R> {
    fn from(value: R) -> Self {
        Self {
            value,
            capability: None,
        }
    }
}

/// Serves `endpoint` for ever: receives, decodes, calls `handle`, replies.
/// A request that does not decode, or a reply that does not fit, is
/// answered with an error and the loop goes on. Capabilities that come
/// with a request land in `receive_slot`, which the handler must empty.
/// Messages from the supervisor ([`crate::control`]) are answered here and
/// never reach `handle`.
///
/// Returns only if the endpoint fails (it was deleted).
pub fn serve<P: Protocol>(
    endpoint: Endpoint,
    buffer: Buffer,
    receive_slot: Option<Slot>,
    mut handle: impl FnMut(Request<P>) -> Result<Response<P::Reply>, ErrorCode>,
) -> abi::Error {
    let receive_slots: &[Slot] = match &receive_slot {
        Some(slot) => core::slice::from_ref(slot),
        None => &[],
    };
    buffer.set_receive_slots(receive_slots);
    let mut received = match endpoint.receive() {
        Ok(received) => received,
        Err(error) => return error,
    };
    loop {
        if received.badge == CONTROL_BADGE {
            received = match control(endpoint, &received.message, buffer, receive_slots) {
                Ok(next) => next,
                Err(error) => return error,
            };
            continue;
        }
        let reply = match wire::decode::<P::Request>(&received.message, buffer) {
            None => wire::error(ErrorCode::Malformed),
            Some(_) if fault_hooks::take_garbage_reply() => garbage(),
            Some(body) => {
                let request = Request {
                    badge: received.badge,
                    body,
                    capabilities: received.message.capabilities,
                };
                match handle(request) {
                    Err(code) => wire::error(code),
                    Ok(response) => encode_response(&response, buffer),
                }
            }
        };
        buffer.set_receive_slots(receive_slots);
        received = match endpoint.reply_receive(&reply) {
            Ok(received) => received,
            Err(error) => return error,
        };
    }
}

/// Answers a control message, carries out an injected fault, and receives
/// the next message.
fn control(
    endpoint: Endpoint,
    message: &Message,
    buffer: Buffer,
    receive_slots: &[Slot],
) -> Result<runtime::ipc::Received, abi::Error> {
    let request = wire::decode::<ControlRequest>(message, buffer);
    let reply = match request {
        Some(ControlRequest::Heartbeat) => wire::encode(&ControlReply::Alive, buffer),
        Some(ControlRequest::Inject(_)) => wire::encode(&ControlReply::Injected, buffer),
        None => None,
    }
    .unwrap_or_else(|| wire::error(ErrorCode::Malformed));
    // A failed reply only means the supervisor is gone; serving goes on.
    let _ = runtime::ipc::reply(&reply);
    if let Some(ControlRequest::Inject(fault)) = request {
        fault_hooks::strike(fault);
    }
    buffer.set_receive_slots(receive_slots);
    endpoint.receive()
}

/// A reply of random words, for [`fault_hooks::Fault::GarbageReply`].
fn garbage() -> Message {
    let mut message = Message::new(fault_hooks::random() as u32, &[]);
    for word in &mut message.words {
        *word = fault_hooks::random();
    }
    message.length = message.words.len() as u8;
    message
}

fn encode_response<R: serde::Serialize>(response: &Response<R>, buffer: Buffer) -> Message {
    let Some(mut message) = wire::encode(&response.value, buffer) else {
        return wire::error(ErrorCode::TooLong);
    };
    if let Some(slot) = response.capability {
        buffer.set_send_capabilities(&[slot]);
        message.capabilities = 1;
    }
    message
}
