//! names: services register their endpoints under a name; clients look
//! them up and get a copy of the capability.
//!
//! init (badge 0) tells names which process (by badge) may provide and use
//! which services, as the system description says; names refuses the rest.
//! A restarted server registers again and replaces its old endpoint.
//!
//! A client gets the endpoint minted with its own badge, so the server
//! sees who calls (init, badge 0, gets it unbadged).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Rights;
use alloc::collections::{BTreeMap, BTreeSet};
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
    // Holds the badged copy a lookup replies with, until the next request.
    let Ok(lookup_slot) = slots.allocate() else { return 1 };
    let mut registered: BTreeMap<String, Slot> = BTreeMap::new();
    let mut allowed: BTreeMap<u64, Allowed> = BTreeMap::new();
    let mut unavailable: BTreeSet<String> = BTreeSet::new();
    let error = service::serve::<Names>(
        Endpoint(slot::NAMES),
        buffer,
        Some(receive_slot),
        |request: Request<Names>| {
            let received = request.capabilities > 0;
            let _ = capability::delete(Destination::own(lookup_slot));
            let slots_used = Used {
                receive: receive_slot,
                lookup: lookup_slot,
                slots: &slots,
            };
            let result = handle(request, &slots_used, &mut registered, &mut allowed, &mut unavailable);
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

/// The slots a request may use.
struct Used<'a> {
    /// Where a capability sent with the request lands.
    receive: Slot,
    /// Where a lookup's badged copy is made.
    lookup: Slot,
    /// Free slots, for registered endpoints.
    slots: &'a Slots,
}

fn handle(
    request: Request<Names>,
    used: &Used,
    registered: &mut BTreeMap<String, Slot>,
    allowed: &mut BTreeMap<u64, Allowed>,
    unavailable: &mut BTreeSet<String>,
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
        NamesRequest::Unavailable { services } => {
            if request.badge != INIT {
                return Err(ErrorCode::Denied);
            }
            unavailable.extend(services);
            Ok(NamesReply::Done.into())
        }
        NamesRequest::Provides => {
            let services = allowed
                .get(&request.badge)
                .map(|entry| entry.provides.clone())
                .unwrap_or_default();
            Ok(NamesReply::Services(services).into())
        }
        NamesRequest::Register { service } => {
            if !may(|entry| &entry.provides, &service) {
                return Err(ErrorCode::Denied);
            }
            if request.capabilities == 0 {
                return Err(ErrorCode::Malformed);
            }
            // A restarted server registers again: its new endpoint takes
            // the old one's slot.
            let kept = match registered.get(&service) {
                Some(&old) => {
                    let _ = capability::delete(Destination::own(old));
                    old
                }
                None => used.slots.allocate().map_err(|_| ErrorCode::TooLong)?,
            };
            if capability::move_to(used.receive, Destination::own(kept)).is_err() {
                registered.remove(&service);
                return Err(ErrorCode::Malformed);
            }
            unavailable.remove(&service);
            registered.insert(service, kept);
            Ok(NamesReply::Done.into())
        }
        NamesRequest::Lookup { service } => {
            if !may(|entry| &entry.uses, &service) {
                return Err(ErrorCode::Denied);
            }
            match registered.get(&service) {
                Some(&endpoint) => {
                    let minted = capability::mint(
                        Endpoint(endpoint),
                        Destination::own(used.lookup),
                        Rights::WRITE | Rights::GRANT,
                        request.badge,
                    );
                    if minted.is_err() {
                        // The provider died and took its endpoint with it:
                        // a restarted one will register again.
                        registered.remove(&service);
                        return Ok(NamesReply::NotYet.into());
                    }
                    Ok(Response {
                        value: NamesReply::Found,
                        capability: Some(used.lookup),
                    })
                }
                None if unavailable.contains(&service) => Err(ErrorCode::NotFound),
                None => Ok(NamesReply::NotYet.into()),
            }
        }
    }
}
