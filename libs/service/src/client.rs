//! The client side: typed calls that survive a server's restart.

use crate::Protocol;
use crate::names;
use crate::wire::{self, ERROR_LABEL, ErrorCode};
use abi::ErrorKind;
use alloc::string::String;
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
    /// The reply did not decode or failed its check (also after retries).
    MalformedReply,
    /// names has no such service (or this process may not use it).
    NotFound,
}

/// How many times [`Client::call`] tries an idempotent request.
pub const ATTEMPTS: u32 = 8;

/// A connection to the server of protocol `P`.
pub struct Client<P: Protocol> {
    slot: Slot,
    buffer: Buffer,
    /// The name it looks the server up by (again, after a restart).
    service: String,
    protocol: PhantomData<P>,
}

impl<P: Protocol> Client<P> {
    /// Looks the service up with names (waiting until it is registered)
    /// and keeps its endpoint in `slot`, which must be empty.
    ///
    /// # Errors
    /// [`CallError::NotFound`] if this process may not use the service.
    pub fn connect(slot: Slot, buffer: Buffer) -> Result<Self, CallError> {
        Self::connect_to(P::SERVICE, slot, buffer)
    }

    /// Like [`Client::connect`], for a server of the protocol registered
    /// under another name (one of several instances, such as `vm1`).
    ///
    /// # Errors
    /// [`CallError::NotFound`] if this process may not use the service.
    pub fn connect_to(service: &str, slot: Slot, buffer: Buffer) -> Result<Self, CallError> {
        names::look_up(service, slot, buffer)?;
        Ok(Self {
            slot,
            buffer,
            service: String::from(service),
            protocol: PhantomData,
        })
    }

    /// A client for an endpoint already in `slot` (names itself).
    pub fn with_endpoint(slot: Slot, buffer: Buffer) -> Self {
        Self {
            slot,
            buffer,
            service: String::from(P::SERVICE),
            protocol: PhantomData,
        }
    }

    /// Sends `request` and returns the server's reply. If the server died
    /// or garbled its reply and the request is idempotent, repeats it (after
    /// looking the service up again if its endpoint is gone), up to
    /// [`ATTEMPTS`] times in all.
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
        let mut attempt = 1;
        loop {
            let outcome = self.call_once(request, capability);
            let died = match outcome {
                // The server died: during the call, or before it, taking its
                // endpoint (and this copy of it) with it.
                Err(CallError::Kernel(error)) => {
                    error.kind == ErrorKind::PeerDied
                        || (error.kind == ErrorKind::EmptySlot && error.argument == Some(0))
                }
                Err(CallError::MalformedReply) => false,
                _ => return outcome,
            };
            if !P::idempotent(request) {
                return Err(if died {
                    CallError::ServerDied
                } else {
                    CallError::MalformedReply
                });
            }
            if attempt == ATTEMPTS {
                return outcome;
            }
            attempt += 1;
            if died {
                let _ = capability::delete(Destination::own(self.slot));
                names::look_up(&self.service, self.slot, self.buffer)?;
            }
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
            return Err(wire::error_code(&reply).map_or(CallError::MalformedReply, CallError::Server));
        }
        wire::decode(&reply, self.buffer).ok_or(CallError::MalformedReply)
    }
}
