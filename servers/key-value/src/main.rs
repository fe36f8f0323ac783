//! key-value: keeps strings under string keys for its clients. The example
//! server that docs/writing-a-server.md builds step by step.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use key_value::{KeyValue, MAX_KEY, MAX_VALUE, Reply, Request};
use runtime::capability::Endpoint;
use runtime::ipc::Buffer;
use service::process::slot;
use service::{ErrorCode, Response};

runtime::entry!(main);

fn main() -> u64 {
    // Acquire: the endpoint init made for us, registered under our service
    // name.
    let buffer = Buffer::main_thread();
    let endpoint = Endpoint(slot::ENDPOINT);
    if service::names::register("key-value", endpoint.0, buffer).is_err() {
        return 1;
    }
    // Serve: one handler call per request; the loop never ends unless the
    // endpoint is destroyed.
    let mut store: BTreeMap<String, String> = BTreeMap::new();
    service::serve::<KeyValue>(endpoint, buffer, None, |request| handle(&mut store, request.body));
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
