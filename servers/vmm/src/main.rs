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
use alloc::vec::Vec;
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
    // The filesystem, connected at the first start (from this thread: a
    // connection belongs to the thread whose IPC buffer it uses).
    let mut files = None;
    let error = service::serve::<Vmm>(endpoint, buffer, None, |request| {
        handle(request.body, slots, buffer, &mut files, &name)
    });
    println!("vmm: {name} stopped serving: {error:?}");
    1
}

fn handle(
    request: Request,
    slots: &'static Slots,
    buffer: Buffer,
    files: &mut Option<Files>,
    name: &str,
) -> Result<Response<Result<Reply, Refusal>>, ErrorCode> {
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
        } => read_image(slots, buffer, files, &image)
            .and_then(|bytes| start(slots, name, image, bytes, arguments, memory_mib)),
    };
    Ok(reply.into())
}

/// Reads the image at `path`, connecting to the filesystem first if need
/// be, and checks that it is an ELF file.
fn read_image(slots: &Slots, buffer: Buffer, files: &mut Option<Files>, path: &str) -> Result<Vec<u8>, Refusal> {
    if files.is_none() {
        let connected = Files::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer)
            .map_err(|error| Refusal::NoImage(format!("no filesystem ({error})")))?;
        *files = Some(connected);
    }
    let Some(files) = files.as_ref() else {
        return Err(Refusal::NoImage(String::from("no filesystem")));
    };
    let bytes = files
        .read_file(path)
        .map_err(|error| Refusal::NoImage(format!("{path}: {error}")))?;
    elf::Elf::parse(&bytes).map_err(|error| Refusal::BadImage(format!("not a 64-bit ELF image ({error:?})")))?;
    Ok(bytes)
}

/// Checks the request and starts the guest thread.
fn start(
    slots: &'static Slots,
    name: &str,
    image: String,
    bytes: Vec<u8>,
    arguments: String,
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
    let spawned = spawner.spawn(move |_| {
        let end = boot(slots, &instance, &image, &bytes, &arguments, memory_mib);
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

/// Builds the machine, loads the image and runs it; says how it ended.
fn boot(slots: &Slots, name: &str, image: &str, bytes: &[u8], arguments: &str, memory_mib: u32) -> String {
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
    let state = match machine.load_elf64(bytes, arguments) {
        Ok(state) => state,
        Err(MachineError::Image(why)) => return format!("refused: {why}"),
        Err(MachineError::Kernel(what, error)) => return format!("could not start: {what} ({error:?})"),
    };
    println!("vmm: {name}: running {image} ({memory_mib} MiB)");
    guest::run(&machine, state, name, &SHARED).to_string()
}
