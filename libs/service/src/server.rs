//! The server side: a dispatch loop over typed requests.

use crate::Protocol;
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
        let reply = match wire::decode::<P::Request>(&received.message, buffer) {
            None => wire::error(ErrorCode::Malformed),
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
