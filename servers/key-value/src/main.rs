//! key-value: keeps strings under string keys for its clients. The example
//! server that docs/writing-a-server.md builds step by step.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use key_value::{KeyValue, MAX_KEY, MAX_VALUE, Reply, Request};
use runtime::capability::{Endpoint, Memory, Slots};
use runtime::ipc::Buffer;
use service::process::{CSPACE_SLOTS, slot};
use service::{ErrorCode, Response};

runtime::entry!(main);

fn main() -> u64 {
    // Acquire: an endpoint of our own, registered under our service name.
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let Ok(endpoint_slot) = slots.allocate() else { return 1 };
    let Ok(endpoint) = Memory(slot::MEMORY).create_endpoint(endpoint_slot) else {
        return 1;
    };
    if service::names::register("key-value", endpoint.0, buffer).is_err() {
        return 1;
    }
    // Serve: one handler call per request; the loop never ends unless the
    // endpoint is destroyed.
    let mut store: BTreeMap<String, String> = BTreeMap::new();
    service::serve::<KeyValue>(Endpoint(endpoint.0), buffer, None, |request| {
        handle(&mut store, request.body)
    });
    1
}

fn handle(store: &mut BTreeMap<String, String>, request: Request) -> Result<Response<Reply>, ErrorCode> {
    match request {
        Request::Put { key, value } => {
            if key.len() > MAX_KEY || value.len() > MAX_VALUE {
                return Err(ErrorCode::TooLong);
            }
            store.insert(key, value);
            Ok(Reply::Done.into())
        }
        Request::Get { key } => Ok(Reply::Value(store.get(&key).cloned()).into()),
        Request::Delete { key } => {
            store.remove(&key);
            Ok(Reply::Done.into())
        }
    }
}
