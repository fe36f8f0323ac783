//! vmm: one instance hosts one guest at a time. The main thread serves
//! [`vmm::Request`]s on the instance's endpoint (registered under the name
//! the system description gives it, `vm0`, `vm1`, ...); a guest thread
//! builds the virtual machine, loads the image from the filesystem and runs
//! it, handling every exit here in user space. The two share only
//! [`guest::Shared`]: the stop flag, the counters and the input on its way
//! to the guest's UART. An image is a 64-bit ELF
//! guest (entered in long mode) or, failing that, a multiboot kernel with
//! its modules (entered in 32-bit protected mode).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod clock;
mod decode;
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
use vmm::input::Input;
use vmm::multiboot::{self, Header};
use vmm::{BootModule, GuestStatus, MAX_MEMORY_MIB, Refusal, Reply, Request, Vmm};

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
        Request::Input { bytes } => take_input(&bytes),
        Request::Start {
            image,
            arguments,
            memory_mib,
            modules,
        } => read_guest(slots, buffer, files, image, arguments, &modules, memory_mib)
            .and_then(|guest| start(slots, name, guest, memory_mib)),
    };
    Ok(reply.into())
}

/// Takes what fits of `bytes` for the guest's UART; the guest's thread
/// delivers them. The request is checked before the state.
fn take_input(bytes: &[u8]) -> Result<Reply, Refusal> {
    Input::check(bytes)?;
    if !GUEST.lock().as_ref().is_some_and(|status| status.running) {
        return Err(Refusal::NotRunning);
    }
    let count = SHARED.input.lock().offer(bytes)?;
    Ok(Reply::Taken { count: count as u32 })
}

/// What kind of image a guest is.
enum Kind {
    /// A 64-bit ELF guest, entered in long mode.
    Elf64,
    /// A multiboot kernel with this header, and its modules' contents and
    /// command lines.
    Multiboot(Header, Vec<(Vec<u8>, String)>),
}

/// A guest ready to boot: its image, read and checked.
struct Guest {
    image: String,
    bytes: Vec<u8>,
    arguments: String,
    kind: Kind,
}

impl Guest {
    /// The multiboot kernel's modules as the loader takes them.
    fn modules(modules: &[(Vec<u8>, String)]) -> Vec<multiboot::Module<'_>> {
        modules
            .iter()
            .map(|(bytes, command_line)| multiboot::Module {
                bytes,
                command_line,
            })
            .collect()
    }
}

/// Reads the image and any modules and checks that they can boot with
/// `memory_mib` of RAM: a 64-bit ELF file, or a multiboot kernel (whose
/// placement is planned here, so a refusal comes at once).
fn read_guest(
    slots: &Slots,
    buffer: Buffer,
    files: &mut Option<Files>,
    image: String,
    arguments: String,
    modules: &[BootModule],
    memory_mib: u32,
) -> Result<Guest, Refusal> {
    if !(1..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(Refusal::BadMemorySize);
    }
    let bytes = read_file(slots, buffer, files, &image)?;
    let elf = elf::Elf::parse(&bytes);
    let kind = match (elf, multiboot::find_header(&bytes)) {
        (Ok(_), _) if modules.is_empty() => Kind::Elf64,
        (Ok(_), _) => return Err(Refusal::BadImage(String::from("modules are for multiboot kernels only"))),
        (Err(_), Err(why)) => return Err(Refusal::BadImage(why)),
        (Err(error), Ok(None)) => {
            return Err(Refusal::BadImage(format!(
                "neither a 64-bit ELF image ({error:?}) nor a multiboot kernel (no multiboot header in its first 8 KiB)"
            )));
        }
        (Err(_), Ok(Some(header))) => {
            if modules.len() > multiboot::MAX_MODULES {
                return Err(Refusal::BadImage(format!("more than {} modules", multiboot::MAX_MODULES)));
            }
            let mut contents = Vec::new();
            for module in modules {
                contents.push((read_file(slots, buffer, files, &module.path)?, module.command_line()));
            }
            let command_line = vmm::joined(&image, &arguments);
            multiboot::plan(
                &bytes,
                &header,
                &command_line,
                &Guest::modules(&contents),
                u64::from(memory_mib) << 20,
            )
            .map_err(Refusal::BadImage)?;
            Kind::Multiboot(header, contents)
        }
    };
    Ok(Guest {
        image,
        bytes,
        arguments,
        kind,
    })
}

/// Reads the file at `path`, connecting to the filesystem first if need
/// be.
fn read_file(slots: &Slots, buffer: Buffer, files: &mut Option<Files>, path: &str) -> Result<Vec<u8>, Refusal> {
    if files.is_none() {
        let connected = Files::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer)
            .map_err(|error| Refusal::NoImage(format!("no filesystem ({error})")))?;
        *files = Some(connected);
    }
    let Some(files) = files.as_ref() else {
        return Err(Refusal::NoImage(String::from("no filesystem")));
    };
    files
        .read_file(path)
        .map_err(|error| Refusal::NoImage(format!("{path}: {error}")))
}

/// Starts the guest thread unless a guest runs already.
fn start(slots: &'static Slots, name: &str, guest: Guest, memory_mib: u32) -> Result<Reply, Refusal> {
    {
        let mut status = GUEST.lock();
        if status.as_ref().is_some_and(|status| status.running) {
            return Err(Refusal::Busy);
        }
        *status = Some(GuestStatus {
            image: guest.image.clone(),
            running: true,
            exits: 0,
            exits_per_second: 0,
            ended: None,
        });
    }
    SHARED.stop.store(false, Ordering::Relaxed);
    SHARED.exits.store(0, Ordering::Relaxed);
    SHARED.exits_per_second.store(0, Ordering::Relaxed);
    // What was typed for an earlier guest is not for this one.
    SHARED.input.lock().clear();
    let instance = name.to_string();
    let mut spawner = service::process::thread_spawner(slots);
    // The instruction decoder wants more stack than the default.
    spawner.stack_pages = GUEST_STACK_PAGES;
    let spawned = spawner.spawn(move |_| {
        let end = boot(slots, &instance, &guest, memory_mib);
        println!("vmm: {instance}: guest {} {end}", guest.image);
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
fn boot(slots: &Slots, name: &str, guest: &Guest, memory_mib: u32) -> String {
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
    let loaded = match &guest.kind {
        Kind::Elf64 => machine.load_elf64(&guest.bytes, &guest.arguments),
        Kind::Multiboot(header, modules) => multiboot::plan(
            &guest.bytes,
            header,
            &vmm::joined(&guest.image, &guest.arguments),
            &Guest::modules(modules),
            machine.ram.len() as u64,
        )
        .map_err(MachineError::Image)
        .and_then(|load| machine.load_multiboot(&load)),
    };
    let state = match loaded {
        Ok(state) => state,
        Err(MachineError::Image(why)) => return format!("refused: {why}"),
        Err(MachineError::Kernel(what, error)) => return format!("could not start: {what} ({error:?})"),
    };
    println!("vmm: {name}: running {} ({memory_mib} MiB)", guest.image);
    guest::run(&machine, state, name, &SHARED).to_string()
}
