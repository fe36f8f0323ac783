//! vmm: one instance hosts one guest at a time. The main thread serves
//! [`vmm::Request`]s on the instance's endpoint (registered under the name
//! the system description gives it, `vm0`, `vm1`, ...); a guest thread
//! builds the virtual machine, loads the image from the filesystem and runs
//! it, handling every exit here in user space. The two share only
//! [`guest::Shared`]: the stop flag, the counters and the input on its way
//! to the guest's UART. An image is a Linux bzImage with perhaps an initrd
//! (entered at its 64-bit entry point), a 64-bit ELF guest (entered in long
//! mode) or a multiboot kernel with its modules (entered in 32-bit
//! protected mode).
//!
//! The guest's thread lives as long as the instance and is the only one
//! that talks to the filesystem (the filesystem and the block driver know
//! a process's transfer buffer by its badge, so a process has one
//! connection). The serving thread hands it each `Start` and waits while
//! it checks the request (reading an image's header and the files'
//! lengths), so a refusal comes at once; then the guest's thread builds
//! the machine and reads the large files (a Linux kernel, an initrd,
//! multiboot modules) in chunks straight into guest RAM, so they never
//! pass through the 1 MiB heap. A guest's virtio disk is a file it keeps
//! open while the guest runs ([`disk::DiskFile`]).

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod clock;
mod decode;
mod disk;
mod guest;
mod machine;
mod policy;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use fs::{Files, Handle};
use disk::DiskFile;
use guest::Shared;
use machine::{Machine, MachineError, ReadFile};
use runtime::capability::{self, AddressSpace, Destination, Endpoint, Memory, Notification, Slots};
use runtime::ipc::Buffer;
use runtime::println;
use service::process::{CSPACE_SLOTS, slot};
use service::{ErrorCode, Response};
use spin::Mutex;
use vmm::devices::virtio::block::SECTOR_BYTES;
use vmm::input::Input;
use vmm::linux::{self, Initrd, LinuxError};
use vmm::multiboot::{self, Header};
use vmm::{BootModule, GuestStatus, MAX_MEMORY_MIB, Refusal, Reply, Request, Vmm};

runtime::entry!(main, heap_kib = 1024);

/// Stack pages of the thread that runs the guest.
const GUEST_STACK_PAGES: u64 = 32;
/// The largest image read whole into the heap: a 64-bit ELF guest or a
/// multiboot kernel. Linux kernels and all modules go straight into guest
/// RAM instead.
const MAX_HEAP_IMAGE: u64 = 512 << 10;

/// The guest's counters, shared with the serving thread. One per instance:
/// a new guest starts them afresh.
static SHARED: Shared = Shared::new();
/// The current or last guest.
static GUEST: Mutex<Option<GuestStatus>> = Mutex::new(None);
/// The start request the guest's thread is to check next.
static NEXT: Mutex<Option<StartRequest>> = Mutex::new(None);
/// The guest's thread's answer to it.
static VERDICT: Mutex<Option<Result<Reply, Refusal>>> = Mutex::new(None);

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
    let bells = match guest_thread(slots, &name) {
        Ok(bells) => bells,
        Err(error) => {
            println!("vmm: {name}: no thread for guests: {error:?}");
            return 1;
        }
    };
    let error = service::serve::<Vmm>(endpoint, buffer, None, |request| handle(request.body, &bells));
    println!("vmm: {name} stopped serving: {error:?}");
    1
}

fn handle(request: Request, bells: &Bells) -> Result<Response<Result<Reply, Refusal>>, ErrorCode> {
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
            disk,
        } => start(
            StartRequest {
                image,
                arguments,
                modules,
                memory_mib,
                disk,
            },
            bells,
        ),
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
    /// A 64-bit ELF guest, entered in long mode: its bytes.
    Elf64(Vec<u8>),
    /// A multiboot kernel: its bytes, its header, and its modules' lengths
    /// and command lines (boot files 1, 2, ...).
    Multiboot(Vec<u8>, Header, Vec<(u64, String)>),
    /// A Linux kernel, read from boot file 0, and its initrd.
    Linux(linux::Kernel, Option<Initrd>),
}

/// A guest ready to boot: its image and modules checked.
struct Guest {
    image: String,
    /// The command line as the guest gets it.
    command_line: String,
    memory_mib: u32,
    /// The boot files by number: the image, then the modules.
    paths: Vec<String>,
    kind: Kind,
    /// The virtio disk's file and its size.
    disk: Option<(String, u64)>,
}

impl Guest {
    /// The multiboot kernel's modules as the loader takes them.
    fn modules(modules: &[(u64, String)]) -> Vec<multiboot::Module<'_>> {
        modules
            .iter()
            .enumerate()
            .map(|(index, (length, command_line))| multiboot::Module {
                file: index + 1,
                length: *length,
                command_line,
            })
            .collect()
    }

    /// Plans a multiboot boot with `ram_bytes` of RAM.
    fn plan_multiboot<'a>(
        &self,
        bytes: &'a [u8],
        header: &Header,
        modules: &[(u64, String)],
        ram_bytes: u64,
    ) -> Result<multiboot::Load<'a>, String> {
        multiboot::plan(bytes, header, &self.command_line, &Guest::modules(modules), ram_bytes)
    }

    /// Plans a Linux boot with `ram_bytes` of RAM.
    fn plan_linux(
        &self,
        kernel: &linux::Kernel,
        initrd: Option<Initrd>,
        ram_bytes: u64,
    ) -> Result<linux::Boot<'static>, LinuxError> {
        linux::plan(kernel, 0, &self.command_line, initrd, ram_bytes)
    }
}

/// The filesystem connection in `files`, made first if need be (with
/// this thread's IPC `buffer`).
fn connected<'a>(files: &'a mut Option<Files>, slots: &Slots, buffer: Buffer) -> Result<&'a Files, String> {
    if files.is_none() {
        let connected = Files::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer)
            .map_err(|error| format!("no filesystem ({error})"))?;
        *files = Some(connected);
    }
    files.as_ref().ok_or_else(|| String::from("no filesystem"))
}

/// A `Start` request, for the guest's thread.
struct StartRequest {
    image: String,
    arguments: String,
    modules: Vec<BootModule>,
    memory_mib: u32,
    disk: Option<String>,
}

/// Reads the image's header (or the whole of a small image) and the
/// modules' lengths, and checks that they can boot with `memory_mib` of
/// RAM: a Linux bzImage with at most an initrd, a 64-bit ELF file, or a
/// multiboot kernel (whose placement is planned here, so a refusal comes
/// at once); and that the disk file, if any, is a disk.
fn read_guest(
    slots: &Slots,
    buffer: Buffer,
    files: &mut Option<Files>,
    StartRequest {
        image,
        arguments,
        modules,
        memory_mib,
        disk,
    }: StartRequest,
) -> Result<Guest, Refusal> {
    let ram_bytes = u64::from(memory_mib) << 20;
    let files = connected(files, slots, buffer).map_err(Refusal::NoImage)?;
    let disk = disk
        .map(|path| disk::check(files, &path).map(|bytes| (path, bytes)))
        .transpose()
        .map_err(Refusal::BadDisk)?;
    let no_file = |path: &str, error: fs::FilesError| Refusal::NoImage(format!("{path}: {error}"));
    let (handle, length) = files.open(&image, false).map_err(|error| no_file(&image, error))?;
    let wanted = if length <= MAX_HEAP_IMAGE {
        length
    } else {
        linux::HEADER_BYTES as u64
    };
    let mut bytes = alloc::vec![0; wanted as usize];
    let read = files.read(handle, 0, &mut bytes);
    let _ = files.close(handle);
    bytes.truncate(read.map_err(|error| no_file(&image, error))?);
    let mut paths = alloc::vec![image.clone()];
    let mut module_lengths = Vec::new();
    for module in &modules {
        let (handle, length) = files
            .open(&module.path, false)
            .map_err(|error| no_file(&module.path, error))?;
        let _ = files.close(handle);
        paths.push(module.path.clone());
        module_lengths.push((length, module.command_line()));
    }
    let mut guest = Guest {
        command_line: vmm::joined(&image, &arguments),
        image,
        memory_mib,
        paths,
        kind: Kind::Elf64(Vec::new()),
        disk,
    };
    let bad = |why: String| Refusal::BadImage(why);
    if linux::is_bzimage(&bytes) {
        let kernel = linux::check(&bytes, length).map_err(|error| bad(error.to_string()))?;
        let initrd = match (modules.as_slice(), module_lengths.as_slice()) {
            ([], _) => None,
            ([module], [(length, _)]) if module.arguments.is_empty() => Some(Initrd {
                file: 1,
                length: *length,
            }),
            _ => return Err(bad(LinuxError::Modules.to_string())),
        };
        guest.command_line = linux::command_line(&arguments, clock::tsc_khz());
        guest
            .plan_linux(&kernel, initrd, ram_bytes)
            .map_err(|error| bad(error.to_string()))?;
        guest.kind = Kind::Linux(kernel, initrd);
        return Ok(guest);
    }
    if length > MAX_HEAP_IMAGE {
        return Err(bad(format!(
            "{} is {length} bytes: not a Linux bzImage, and too large for a 64-bit ELF guest or multiboot kernel (at most {} KiB)",
            guest.image,
            MAX_HEAP_IMAGE >> 10
        )));
    }
    guest.kind = match (elf::Elf::parse(&bytes), multiboot::find_header(&bytes)) {
        (Ok(_), _) if modules.is_empty() => {
            guest.command_line = arguments;
            Kind::Elf64(bytes)
        }
        (Ok(_), _) => return Err(bad(String::from("modules are for multiboot kernels and Linux only"))),
        (Err(_), Err(why)) => return Err(bad(why)),
        (Err(error), Ok(None)) => {
            return Err(bad(format!(
                "neither a 64-bit ELF image ({error:?}), a multiboot kernel (no multiboot header in its first 8 KiB) nor a Linux bzImage (no boot sector with a setup header)"
            )));
        }
        (Err(_), Ok(Some(header))) => {
            if modules.len() > multiboot::MAX_MODULES {
                return Err(bad(format!("more than {} modules", multiboot::MAX_MODULES)));
            }
            guest
                .plan_multiboot(&bytes, &header, &module_lengths, ram_bytes)
                .map_err(bad)?;
            Kind::Multiboot(bytes, header, module_lengths)
        }
    };
    Ok(guest)
}

/// The notifications between the serving thread and the guest's: one
/// rings the guest's thread with a start request, the other rings back
/// with its verdict.
struct Bells {
    to_guest: Notification,
    answered: Notification,
}

/// Hands a start request to the guest's thread, unless a guest runs
/// already, and waits while it checks it.
fn start(request: StartRequest, bells: &Bells) -> Result<Reply, Refusal> {
    if !(1..=MAX_MEMORY_MIB).contains(&request.memory_mib) {
        return Err(Refusal::BadMemorySize);
    }
    if GUEST.lock().as_ref().is_some_and(|status| status.running) {
        return Err(Refusal::Busy);
    }
    *NEXT.lock() = Some(request);
    let cannot = |error: abi::Error| Refusal::CannotRun(format!("the guest's thread does not answer ({error:?})"));
    bells.to_guest.signal().map_err(cannot)?;
    bells.answered.wait().map_err(cannot)?;
    VERDICT
        .lock()
        .take()
        .unwrap_or_else(|| Err(Refusal::CannotRun(String::from("the guest's thread gave no verdict"))))
}

/// The guest's state and counters for a guest that starts now.
fn begin(guest: &Guest) {
    *GUEST.lock() = Some(GuestStatus {
        image: guest.image.clone(),
        running: true,
        exits: 0,
        exits_per_second: 0,
        ended: None,
    });
    SHARED.stop.store(false, Ordering::Relaxed);
    SHARED.exits.store(0, Ordering::Relaxed);
    SHARED.exits_per_second.store(0, Ordering::Relaxed);
    // What was typed for an earlier guest is not for this one.
    SHARED.input.lock().clear();
}

/// A notification and a badged copy of it that signals it.
fn bell(slots: &Slots) -> Result<(Notification, Notification), abi::Error> {
    let waiter = Memory(slot::MEMORY).create_notification(slots.allocate()?)?;
    let ringer = Notification(slots.allocate()?);
    capability::mint(waiter, Destination::own(ringer.0), abi::Rights::WRITE, 1)?;
    Ok((waiter, ringer))
}

/// Starts the thread that checks start requests and runs this instance's
/// guests, one after another.
fn guest_thread(slots: &'static Slots, name: &str) -> Result<Bells, abi::Error> {
    let (requests, to_guest) = bell(slots)?;
    let (answered, answer) = bell(slots)?;
    let instance = name.to_string();
    let mut spawner = service::process::thread_spawner(slots);
    // The instruction decoder wants more stack than the default.
    spawner.stack_pages = GUEST_STACK_PAGES;
    spawner.spawn(move |buffer| {
        // The process's filesystem connection, made at the first request.
        let mut files = None;
        while requests.wait().is_ok() {
            let Some(request) = NEXT.lock().take() else { continue };
            let guest = read_guest(slots, buffer, &mut files, request);
            if let Ok(guest) = &guest {
                begin(guest);
            }
            *VERDICT.lock() = Some(guest.as_ref().map(|_| Reply::Started).map_err(Clone::clone));
            let _ = answer.signal();
            let Ok(guest) = guest else { continue };
            let (end, machine) = boot(slots, &instance, &guest, buffer, &mut files);
            println!("vmm: {instance}: guest {} {end}", guest.image);
            // Its end is news at once; giving a large guest's RAM back takes
            // the kernel a while (seconds for 128 MiB under emulation), and
            // the instance stays busy until it is done.
            let releasing = clock::now();
            drop(machine);
            let released_ms = elapsed_ms(releasing);
            if released_ms >= 1000 {
                println!("vmm: {instance}: released the guest's {} MiB in {released_ms} ms", guest.memory_mib);
            }
            if let Some(status) = GUEST.lock().as_mut() {
                status.running = false;
                status.ended = Some(end);
            }
        }
        1
    })?;
    Ok(Bells { to_guest, answered })
}

/// Milliseconds from `since` to now.
fn elapsed_ms(since: clock::Nanoseconds) -> u64 {
    clock::now().0.saturating_sub(since.0) / 1_000_000
}

/// Builds the machine, loads the image and runs it; says how it ended,
/// and hands back the machine (if it was made) for the caller to destroy.
fn boot(
    slots: &Slots,
    name: &str,
    guest: &Guest,
    buffer: Buffer,
    files: &mut Option<Files>,
) -> (String, Option<Machine>) {
    let began = clock::now();
    let machine = match Machine::new(
        slots,
        Memory(slot::MEMORY),
        AddressSpace(slot::ADDRESS_SPACE),
        guest.memory_mib,
    ) {
        Ok(machine) => machine,
        Err(MachineError::Kernel(what, error)) => return (format!("could not start: {what} ({error:?})"), None),
        Err(MachineError::Image(why)) => return (format!("could not start: {why}"), None),
    };
    let made_ms = elapsed_ms(began);
    let loading = clock::now();
    let files = match connected(files, slots, buffer) {
        Ok(files) => files,
        Err(why) => return (format!("could not start: {why}"), Some(machine)),
    };
    let mut opened: Vec<Option<Handle>> = alloc::vec![None; guest.paths.len()];
    let mut read = |file: usize, offset: u64, into: &mut [u8]| -> Result<(), String> {
        let (Some(path), Some(handle)) = (guest.paths.get(file), opened.get_mut(file)) else {
            return Err(format!("the plan names boot file {file}, which there is not"));
        };
        let handle = match handle {
            Some(handle) => *handle,
            None => *handle.insert(files.open(path, false).map_err(|error| format!("{path}: {error}"))?.0),
        };
        let count = files.read(handle, offset, into).map_err(|error| format!("{path}: {error}"))?;
        if count < into.len() {
            return Err(format!("{path} is shorter than when it was checked"));
        }
        Ok(())
    };
    let loaded = load(&machine, guest, &mut read);
    for handle in opened.into_iter().flatten() {
        let _ = files.close(handle);
    }
    let state = match loaded {
        Ok(state) => state,
        Err(MachineError::Image(why)) => return (format!("refused: {why}"), Some(machine)),
        Err(MachineError::Kernel(what, error)) => {
            return (format!("could not start: {what} ({error:?})"), Some(machine));
        }
    };
    let mut disk = match &guest.disk {
        Some((path, bytes)) => match DiskFile::open(files, path) {
            Ok(file) => Some((file, *bytes)),
            Err(why) => return (format!("could not start: {why}"), Some(machine)),
        },
        None => None,
    };
    let with_disk = guest
        .disk
        .as_ref()
        .map(|(path, bytes)| format!(", disk {path} of {} sectors", bytes / SECTOR_BYTES))
        .unwrap_or_default();
    println!(
        "vmm: {name}: running {} ({} MiB{with_disk}; RAM made in {made_ms} ms, loaded in {} ms)",
        guest.image,
        guest.memory_mib,
        elapsed_ms(loading)
    );
    let backing = disk.as_mut().map(|(file, bytes)| guest::Disk {
        backing: file,
        bytes: *bytes,
    });
    let mut end = guest::run(&machine, state, name, &SHARED, backing).to_string();
    if let Some((file, _)) = disk
        && let Err(why) = file.close()
    {
        end = format!("{end} (its disk: {why})");
    }
    (end, Some(machine))
}

/// Plans the boot again for the machine's RAM and carries it out.
fn load(machine: &Machine, guest: &Guest, read: &mut ReadFile<'_>) -> Result<abi::vcpu::VcpuState, MachineError> {
    let ram_bytes = machine.ram.len() as u64;
    match &guest.kind {
        Kind::Elf64(bytes) => machine.load_elf64(bytes, &guest.command_line),
        Kind::Multiboot(bytes, header, modules) => guest
            .plan_multiboot(bytes, header, modules, ram_bytes)
            .map_err(MachineError::Image)
            .and_then(|load| machine.load_multiboot(&load, read)),
        Kind::Linux(kernel, initrd) => guest
            .plan_linux(kernel, *initrd, ram_bytes)
            .map_err(|error| MachineError::Image(error.to_string()))
            .and_then(|plan| machine.load_linux(&plan, read)),
    }
}
