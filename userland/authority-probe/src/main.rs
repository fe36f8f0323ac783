//! authority-probe: a process of the services test image. It uses what
//! the system description gave it (the key-value service, CMOS ports, an
//! interrupt line), tries what it was not given (other ports, interrupt
//! control, a service outside its `uses`, garbage to a server), prints one
//! line per check, and asks init to power off.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::{ErrorKind, Syscall};
use alloc::format;
use alloc::string::String;
use key_value::{KeyValue, Reply, Request};
use runtime::capability::{Endpoint, IoPorts, Slot, Slots};
use runtime::ipc::{Buffer, Message};
use runtime::println;
use service::init::{Init, InitRequest};
use service::process::{CSPACE_SLOTS, slot};
use service::{CallError, Client, ErrorCode};

runtime::entry!(main);

/// The probe's port capability: after its one interrupt line.
const PORTS: IoPorts = IoPorts(Slot(slot::FIRST_DEVICE.0 + 1));

fn report(name: &str, passed: bool) -> bool {
    println!("{} {name}", if passed { "PASS" } else { "FAIL" });
    passed
}

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let mut all = true;

    // Given: the key-value service.
    let store = slots
        .allocate()
        .ok()
        .and_then(|slot| Client::<KeyValue>::connect(slot, buffer).ok());
    all &= report("looks up a service it uses", store.is_some());
    if let Some(store) = &store {
        let put = store.call(&Request::Put {
            key: String::from("colour"),
            value: String::from("teal"),
        });
        let get = store.call(&Request::Get {
            key: String::from("colour"),
        });
        all &= report(
            "stores and reads a value",
            put == Ok(Reply::Done) && get == Ok(Reply::Value(Some(String::from("teal")))),
        );
        let long = store.call(&Request::Put {
            key: "k".repeat(65),
            value: String::new(),
        });
        all &= report(
            "an oversized key gets an error reply",
            long == Err(CallError::Server(ErrorCode::TooLong)),
        );
    }

    // Not given: a service outside `uses`.
    let denied = slots.allocate().map(|slot| Client::<Init>::connect(slot, buffer).err());
    all &= report(
        "cannot look up a service it does not use",
        denied == Ok(Some(CallError::NotFound)),
    );

    // Garbage to a server: an error reply, and the server keeps serving.
    if let Ok(endpoint_slot) = slots.allocate()
        && service::names::look_up("key-value", endpoint_slot, buffer).is_ok()
    {
        let garbage = Endpoint(endpoint_slot).call(&Message::new(9, &[u64::MAX; 8]));
        let errored = garbage.is_ok_and(|reply| reply.label & service::ERROR_LABEL != 0);
        all &= report("garbage gets an error reply", errored);
        let still = store.as_ref().map(|store| {
            store.call(&Request::Get {
                key: String::from("colour"),
            })
        });
        all &= report(
            "the server keeps serving after garbage",
            matches!(still, Some(Ok(Reply::Value(Some(_))))),
        );
    }

    // Garbage to names and init too: each answers with an error and goes on.
    for (server, endpoint) in [("names", slot::NAMES), ("init", slot::INIT)] {
        let garbage = Endpoint(endpoint).call(&Message::new(0xffff, &[u64::MAX; 8]));
        let errored = garbage.is_ok_and(|reply| reply.label & service::ERROR_LABEL != 0);
        all &= report(&format!("{server} answers garbage with an error"), errored);
    }
    if let Ok(serial) = slots.allocate()
        && service::names::look_up("serial", serial, buffer).is_ok()
    {
        let garbage = Endpoint(serial).call(&Message::new(0x3, &[7, 7, 7]));
        let errored = garbage.is_ok_and(|reply| reply.label & service::ERROR_LABEL != 0);
        all &= report("serial answers garbage with an error", errored);
        let text = alloc::vec::Vec::from(*b"probe: written through the serial driver\r\n");
        let write = Client::<serial::Serial>::with_endpoint(serial, buffer).call(&serial::Request::Write(text));
        all &= report(
            "serial keeps serving after garbage",
            write == Ok(serial::Reply::Written),
        );
    }
    let again = slots
        .allocate()
        .map(|slot| service::names::look_up("key-value", slot, buffer));
    all &= report("names keeps serving after garbage", again == Ok(Ok(())));
    let table = Client::<Init>::with_endpoint(slot::INIT, buffer).call(&InitRequest::Processes);
    all &= report("init keeps serving after garbage", table.is_ok());

    // Given: CMOS ports 0x70..0x72 and interrupt line 8.
    let ports = PORTS;
    all &= report("reads a port it was given", ports.read(0x71, 1).is_ok());
    let keyboard = ports.read(0x60, 1);
    all &= report(
        "cannot read a port it was not given",
        keyboard.is_err_and(|error| error.kind == ErrorKind::InvalidArgument),
    );
    // Not given: interrupt control, port control or any other process's
    // objects: the slots where init keeps them are empty here.
    let irq = runtime::syscall::call(Syscall::IrqCreate, &[7, 9, 900]);
    all &= report(
        "cannot make interrupt capabilities",
        irq.is_err_and(|error| error.kind == ErrorKind::EmptySlot),
    );
    let ports_made = runtime::syscall::call(Syscall::PortsCreate, &[6, 0x60, 1, 901]);
    all &= report(
        "cannot make port capabilities",
        ports_made.is_err_and(|error| error.kind == ErrorKind::WrongObjectType),
    );

    println!(
        "authority-probe: {}",
        if all { "all checks passed" } else { "some checks failed" }
    );
    let init = Client::<Init>::with_endpoint(slot::INIT, buffer);
    let _ = init.call(&InitRequest::PowerOff);
    u64::from(!all)
}
