//! names: services register their endpoints under a name; clients look
//! them up and get a copy of the capability.
//!
//! init (badge 0) tells names which process (by badge) may provide and use
//! which services, as the system description says; names refuses the rest.
//! A restarted server registers again and replaces its old endpoint.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::{self, Destination, Endpoint, Slot, Slots};
use runtime::ipc::Buffer;
use service::names::{Names, NamesReply, NamesRequest};
use service::process::{CSPACE_SLOTS, slot};
use service::{ErrorCode, Request, Response};

runtime::entry!(main);

/// What one process may do.
#[derive(Default)]
struct Allowed {
    provides: Vec<String>,
    uses: Vec<String>,
}

/// The badge init calls with.
const INIT: u64 = 0;

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let Ok(receive_slot) = slots.allocate() else { return 1 };
    let mut registered: BTreeMap<String, Slot> = BTreeMap::new();
    let mut allowed: BTreeMap<u64, Allowed> = BTreeMap::new();
    let error = service::serve::<Names>(
        Endpoint(slot::NAMES),
        buffer,
        Some(receive_slot),
        |request: Request<Names>| {
            let received = request.capabilities > 0;
            let result = handle(request, receive_slot, &slots, &mut registered, &mut allowed);
            // Whatever arrived and was not kept must not block the next message.
            if received {
                let _ = capability::delete(Destination::own(receive_slot));
            }
            result
        },
    );
    runtime::println!("names: stopped serving: {error:?}");
    1
}

fn handle(
    request: Request<Names>,
    receive_slot: Slot,
    slots: &Slots,
    registered: &mut BTreeMap<String, Slot>,
    allowed: &mut BTreeMap<u64, Allowed>,
) -> Result<Response<NamesReply>, ErrorCode> {
    let may = |list: fn(&Allowed) -> &Vec<String>, service: &str| {
        request.badge == INIT
            || allowed
                .get(&request.badge)
                .is_some_and(|entry| list(entry).iter().any(|name| name == service))
    };
    match request.body {
        NamesRequest::Allow { client, provides, uses } => {
            if request.badge != INIT {
                return Err(ErrorCode::Denied);
            }
            allowed.insert(client, Allowed { provides, uses });
            Ok(NamesReply::Done.into())
        }
        NamesRequest::Register { service } => {
            if !may(|entry| &entry.provides, &service) {
                return Err(ErrorCode::Denied);
            }
            if request.capabilities == 0 {
                return Err(ErrorCode::Malformed);
            }
            let kept = slots.allocate().map_err(|_| ErrorCode::TooLong)?;
            capability::move_to(receive_slot, Destination::own(kept)).map_err(|_| ErrorCode::Malformed)?;
            if let Some(old) = registered.insert(service, kept) {
                let _ = capability::delete(Destination::own(old));
            }
            Ok(NamesReply::Done.into())
        }
        NamesRequest::Lookup { service } => {
            if !may(|entry| &entry.uses, &service) {
                return Err(ErrorCode::Denied);
            }
            match registered.get(&service) {
                Some(&endpoint) => Ok(Response {
                    value: NamesReply::Found,
                    capability: Some(endpoint),
                }),
                None => Ok(NamesReply::NotYet.into()),
            }
        }
    }
}
