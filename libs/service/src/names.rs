//! The names protocol: services register their endpoints under a name;
//! clients look them up. init tells names who may provide and use what.

use crate::client::CallError;
use crate::process::slot;
use crate::{Client, Protocol};
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::Slot;
use runtime::ipc::Buffer;
use serde::{Deserialize, Serialize};

/// The names protocol.
pub struct Names;

/// What names is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamesRequest {
    /// Registers the endpoint capability sent along under `service`
    /// (replacing an earlier registration: a restarted server).
    Register {
        /// The service name.
        service: String,
    },
    /// Asks for the endpoint of `service`; it comes back with the reply.
    Lookup {
        /// The service name.
        service: String,
    },
    /// From init only: the process whose badge is `client` may register
    /// `provides` and look up `uses`.
    Allow {
        /// The process's badge.
        client: u64,
        /// Services it may register.
        provides: Vec<String>,
        /// Services it may look up.
        uses: Vec<String>,
    },
    /// The services the caller may register (a server that runs as several
    /// instances learns its own name this way).
    Provides,
    /// From init only: the provider of these services could not be
    /// started, so lookups of them fail at once instead of waiting (until
    /// a provider registers after all).
    Unavailable {
        /// The services.
        services: Vec<String>,
    },
}

/// What names answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamesReply {
    /// Done.
    Done,
    /// Here is the endpoint (with the reply).
    Found,
    /// The service is allowed but not registered yet: ask again.
    NotYet,
    /// The services asked for.
    Services(Vec<String>),
}

impl Protocol for Names {
    const SERVICE: &'static str = "names";
    type Request = NamesRequest;
    type Reply = NamesReply;

    fn idempotent(_: &NamesRequest) -> bool {
        // Registering again replaces; looking up and allowing change nothing twice.
        true
    }
}

/// Looks `service` up, putting its endpoint in the empty `destination`;
/// waits (asking again every timer tick) until it is registered.
///
/// # Errors
/// [`CallError::NotFound`] if this process may not use it.
pub fn look_up(service: &str, destination: Slot, buffer: Buffer) -> Result<(), CallError> {
    look_up_through(slot::NAMES, service, destination, buffer)
}

/// [`look_up`] through the names endpoint in `names` (init holds names'
/// endpoint in a slot of its own).
///
/// # Errors
/// As [`look_up`].
pub fn look_up_through(names: Slot, service: &str, destination: Slot, buffer: Buffer) -> Result<(), CallError> {
    let names = Client::<Names>::with_endpoint(names, buffer);
    loop {
        buffer.set_receive_slots(&[destination]);
        let reply = names.call(&NamesRequest::Lookup {
            service: String::from(service),
        });
        buffer.set_receive_slots(&[]);
        match reply {
            Ok(NamesReply::Found) => return Ok(()),
            // Sleep rather than yield: the provider may run at a lower
            // priority than this client.
            Ok(NamesReply::NotYet) => runtime::syscall::sleep_ticks(1),
            Ok(NamesReply::Done | NamesReply::Services(_)) => return Err(CallError::MalformedReply),
            Err(CallError::Server(crate::ErrorCode::Denied | crate::ErrorCode::NotFound)) => {
                return Err(CallError::NotFound);
            }
            Err(error) => return Err(error),
        }
    }
}

/// The services this process may register, in the order its description
/// lists them.
///
/// # Errors
/// [`CallError`] if names cannot be reached.
pub fn provided(buffer: Buffer) -> Result<Vec<String>, CallError> {
    let names = Client::<Names>::with_endpoint(slot::NAMES, buffer);
    match names.call(&NamesRequest::Provides)? {
        NamesReply::Services(services) => Ok(services),
        _ => Err(CallError::MalformedReply),
    }
}

/// Registers the endpoint in `endpoint` as `service`.
///
/// # Errors
/// [`CallError::Server`] with `Denied` if this process may not provide it.
pub fn register(service: &str, endpoint: Slot, buffer: Buffer) -> Result<(), CallError> {
    let names = Client::<Names>::with_endpoint(slot::NAMES, buffer);
    names
        .call_sending(
            &NamesRequest::Register {
                service: String::from(service),
            },
            Some(endpoint),
        )
        .map(drop)
}
