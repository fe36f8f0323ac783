//! The client side: typed calls that survive a server's restart.

use crate::Protocol;
use crate::names;
use crate::wire::{self, ERROR_LABEL, ErrorCode};
use abi::ErrorKind;
use core::marker::PhantomData;
use runtime::capability::{self, Destination, Endpoint, Slot};
use runtime::ipc::Buffer;

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The kernel refused the call.
    Kernel(abi::Error),
    /// The server answered with an error.
    Server(ErrorCode),
    /// The server died during a request that is not safe to repeat; it may
    /// or may not have been carried out.
    ServerDied,
    /// The request does not fit in a message.
    TooLong,
    /// The reply did not decode.
    MalformedReply,
    /// names has no such service (or this process may not use it).
    NotFound,
}

/// A connection to the server of protocol `P`.
pub struct Client<P: Protocol> {
    slot: Slot,
    buffer: Buffer,
    protocol: PhantomData<P>,
}

impl<P: Protocol> Client<P> {
    /// Looks the service up with names (waiting until it is registered)
    /// and keeps its endpoint in `slot`, which must be empty.
    ///
    /// # Errors
    /// [`CallError::NotFound`] if this process may not use the service.
    pub fn connect(slot: Slot, buffer: Buffer) -> Result<Self, CallError> {
        names::look_up(P::SERVICE, slot, buffer)?;
        Ok(Self {
            slot,
            buffer,
            protocol: PhantomData,
        })
    }

    /// A client for an endpoint already in `slot` (names itself).
    pub fn with_endpoint(slot: Slot, buffer: Buffer) -> Self {
        Self {
            slot,
            buffer,
            protocol: PhantomData,
        }
    }

    /// Sends `request` and returns the server's reply. If the server died
    /// and the request is idempotent, looks the service up again (the
    /// restarted server registers anew) and repeats it once.
    ///
    /// # Errors
    /// [`CallError`].
    pub fn call(&self, request: &P::Request) -> Result<P::Reply, CallError> {
        self.call_sending(request, None)
    }

    /// Like [`Client::call`], sending the capability in `capability` along.
    ///
    /// # Errors
    /// [`CallError`].
    pub fn call_sending(&self, request: &P::Request, capability: Option<Slot>) -> Result<P::Reply, CallError> {
        match self.call_once(request, capability) {
            // The server died: during the call, or before it, taking its
            // endpoint (and this copy of it) with it.
            Err(CallError::Kernel(error))
                if error.kind == ErrorKind::PeerDied
                    || (error.kind == ErrorKind::EmptySlot && error.argument == Some(0)) =>
            {
                if !P::idempotent(request) {
                    return Err(CallError::ServerDied);
                }
                let _ = capability::delete(Destination::own(self.slot));
                names::look_up(P::SERVICE, self.slot, self.buffer)?;
                self.call_once(request, capability)
            }
            other => other,
        }
    }

    fn call_once(&self, request: &P::Request, capability: Option<Slot>) -> Result<P::Reply, CallError> {
        let mut message = wire::encode(request, self.buffer).ok_or(CallError::TooLong)?;
        if let Some(capability) = capability {
            self.buffer.set_send_capabilities(&[capability]);
            message.capabilities = 1;
        }
        let reply = Endpoint(self.slot).call(&message).map_err(CallError::Kernel)?;
        if reply.label & ERROR_LABEL != 0 {
            return Err(CallError::Server(ErrorCode::from_word(reply.words[0])));
        }
        wire::decode(&reply, self.buffer).ok_or(CallError::MalformedReply)
    }
}
