//! vmm: one instance hosts one guest at a time. The main thread serves
//! [`vmm::Request`]s on the instance's endpoint (registered under the name
//! the system description gives it, `vm0`, `vm1`, ...); a guest thread
//! builds the virtual machine, loads the image from the filesystem and runs
//! it, handling every exit here in user space.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod clock;
mod decode;
mod devices;
mod guest;
mod machine;
mod policy;

use alloc::format;
use alloc::string::{String, ToString};
use core::sync::atomic::Ordering;
use fs::Files;
use guest::Shared;
use machine::{Machine, MachineError};
use runtime::capability::{AddressSpace, Endpoint, Memory, Slots};
use runtime::ipc::Buffer;
use runtime::println;
use service::process::{CSPACE_SLOTS, slot};
use service::{ErrorCode, Response};
use spin::Mutex;
use vmm::{GuestStatus, MAX_MEMORY_MIB, Refusal, Reply, Request, Vmm};

runtime::entry!(main, heap_kib = 1024);

/// Stack pages of the thread that runs the guest.
const GUEST_STACK_PAGES: u64 = 32;

/// The guest's counters, shared with the serving thread. One per instance:
/// a new guest starts them afresh.
static SHARED: Shared = Shared::new();
/// The current or last guest.
static GUEST: Mutex<Option<GuestStatus>> = Mutex::new(None);

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots: &'static Slots = alloc::boxed::Box::leak(alloc::boxed::Box::new(Slots::new(first_free, CSPACE_SLOTS)));
    let buffer = Buffer::main_thread();
    let name = match service::names::provided(buffer) {
        Ok(services) => services.into_iter().next(),
        Err(_) => None,
    };
    let Some(name) = name else {
        println!("vmm: the description gives this instance no service name");
        return 1;
    };
    let endpoint = Endpoint(slot::ENDPOINT);
    if service::names::register(&name, endpoint.0, buffer).is_err() {
        println!("vmm: cannot register as '{name}'");
        return 1;
    }
    clock::calibrate();
    let error = service::serve::<Vmm>(endpoint, buffer, None, |request| handle(request.body, slots, &name));
    println!("vmm: {name} stopped serving: {error:?}");
    1
}

fn handle(request: Request, slots: &'static Slots, name: &str) -> Result<Response<Result<Reply, Refusal>>, ErrorCode> {
    let reply = match request {
        Request::Status => Ok(Reply::Status(GUEST.lock().clone().map(|mut status| {
            status.exits = SHARED.exits.load(Ordering::Relaxed);
            status.exits_per_second = SHARED.exits_per_second.load(Ordering::Relaxed);
            status
        }))),
        Request::Stop => {
            SHARED.stop.store(true, Ordering::Relaxed);
            Ok(Reply::Stopped)
        }
        Request::Start {
            image,
            arguments,
            memory_mib,
        } => start(slots, name, image, arguments, memory_mib),
    };
    Ok(reply.into())
}

/// Checks the request and starts the guest thread.
fn start(
    slots: &'static Slots,
    name: &str,
    image: String,
    _arguments: String,
    memory_mib: u32,
) -> Result<Reply, Refusal> {
    if !(1..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(Refusal::BadMemorySize);
    }
    {
        let mut guest = GUEST.lock();
        if guest.as_ref().is_some_and(|status| status.running) {
            return Err(Refusal::Busy);
        }
        *guest = Some(GuestStatus {
            image: image.clone(),
            running: true,
            exits: 0,
            exits_per_second: 0,
            ended: None,
        });
    }
    SHARED.stop.store(false, Ordering::Relaxed);
    SHARED.exits.store(0, Ordering::Relaxed);
    SHARED.exits_per_second.store(0, Ordering::Relaxed);
    let instance = name.to_string();
    let mut spawner = service::process::thread_spawner(slots);
    // The instruction decoder wants more stack than the default.
    spawner.stack_pages = GUEST_STACK_PAGES;
    let spawned = spawner.spawn(move |buffer| {
        let end = boot(slots, buffer, &instance, &image, memory_mib);
        println!("vmm: {instance}: guest {image} {end}");
        if let Some(status) = GUEST.lock().as_mut() {
            status.running = false;
            status.ended = Some(end);
        }
        0
    });
    match spawned {
        Ok(_) => Ok(Reply::Started),
        Err(error) => {
            if let Some(status) = GUEST.lock().as_mut() {
                status.running = false;
            }
            Err(Refusal::CannotRun(format!("no thread for the guest: {error:?}")))
        }
    }
}

/// Builds the machine, loads `image` and runs it; says how it ended.
fn boot(slots: &Slots, buffer: Buffer, name: &str, image: &str, memory_mib: u32) -> String {
    let files = match Files::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer) {
        Ok(files) => files,
        Err(error) => return format!("could not start: no filesystem ({error})"),
    };
    let bytes = match files.read_file(image) {
        Ok(bytes) => bytes,
        Err(error) => return format!("could not start: cannot read the image ({error})"),
    };
    let machine = match Machine::new(
        slots,
        Memory(slot::MEMORY),
        AddressSpace(slot::ADDRESS_SPACE),
        memory_mib,
    ) {
        Ok(machine) => machine,
        Err(MachineError::Kernel(what, error)) => return format!("could not start: {what} ({error:?})"),
        Err(MachineError::Image(why)) => return format!("could not start: {why}"),
    };
    let state = match machine.load_elf64(&bytes) {
        Ok(state) => state,
        Err(MachineError::Image(why)) => return format!("refused: {why}"),
        Err(MachineError::Kernel(what, error)) => return format!("could not start: {what} ({error:?})"),
    };
    println!("vmm: {name}: running {image} ({memory_mib} MiB)");
    guest::run(&machine, state, name, &SHARED).to_string()
}
