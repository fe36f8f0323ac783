//! ipcbench: prints what the kernel's basic operations cost, in rdtsc
//! cycles, as a table that `cargo xtask bench` shows.
//!
//! Each figure is the median over many runs after a warm-up. Under QEMU's
//! TCG, rdtsc reads host time, so the figures compare changes on one
//! machine; they are not bare-metal cycles.

#![no_std]
#![no_main]

extern crate alloc;

use abi::Rights;
use abi::init::slot;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use runtime::capability::{
    self, AddressSpace, CSpace, Destination, Endpoint, Memory, Notification, Slot, Slots, Thread,
};
use runtime::ipc::Message;
use runtime::println;
use runtime::process::Spawn;
use runtime::thread::ThreadSpawn;

runtime::entry!(main);

const MEMORY: Memory = Memory(Slot(slot::MEMORY));
const OWN_SPACE: AddressSpace = AddressSpace(Slot(slot::ADDRESS_SPACE));
const OWN_CSPACE: CSpace = CSpace(Slot(slot::CSPACE));
const OWN_THREAD: Thread = Thread(Slot(slot::THREAD));
static SLOTS: Slots = Slots::new(slot::FIRST_FREE, abi::init::CSPACE_SLOTS);

const WARM_UP: usize = 200;
const RUNS: usize = 2000;
/// The argument that makes a copy of ipcbench serve calls on slot 1.
const SERVER_ROLE: u64 = 0x5e7e;

fn main() -> u64 {
    let [first, _] = runtime::start_arguments();
    if first == SERVER_ROLE {
        serve(Endpoint(Slot(1)));
        return 0;
    }
    match run() {
        Ok(()) => 0,
        Err(error) => {
            println!("ipcbench: failed: {error:?}");
            1
        }
    }
}

/// Replies to every call with the same words.
fn serve(endpoint: Endpoint) {
    let Ok(mut request) = endpoint.receive() else { return };
    loop {
        request = match endpoint.reply_receive(&request.message) {
            Ok(request) => request,
            Err(_) => return,
        };
    }
}

/// Median of `RUNS` timings of `operation`, after a warm-up.
fn median(mut operation: impl FnMut() -> u64) -> u64 {
    for _ in 0..WARM_UP {
        operation();
    }
    let mut samples: Vec<u64> = (0..RUNS).map(|_| operation()).collect();
    samples.sort_unstable();
    samples[RUNS / 2]
}

fn timed(operation: impl FnOnce()) -> u64 {
    let start = runtime::syscall::cycles();
    operation();
    runtime::syscall::cycles() - start
}

fn run() -> Result<(), abi::Error> {
    let threads = ThreadSpawn {
        memory: MEMORY,
        address_space: OWN_SPACE,
        cspace: OWN_CSPACE,
        slots: &SLOTS,
        fault_endpoint: None,
        priority: Some(abi::init::PRIORITY),
        stack_pages: runtime::thread::STACK_PAGES,
    };
    let message = Message::new(1, &[1, 2]);

    let null = median(|| {
        timed(|| {
            let _ = runtime::syscall::invoke_number(0, [0; 10]);
        })
    });

    let local = MEMORY.create_endpoint(SLOTS.allocate()?)?;
    threads.spawn(move |_| {
        serve(local);
        0
    })?;
    let same_space = median(|| {
        timed(|| {
            let _ = local.call(&message);
        })
    });

    let remote = MEMORY.create_endpoint(SLOTS.allocate()?)?;
    let spawn = Spawn {
        memory: MEMORY,
        own_address_space: OWN_SPACE,
        slots: &SLOTS,
        cspace_slots: 8,
        fault_endpoint: None,
    };
    // SAFETY: ipcbench runs as init and keeps the archive mapped.
    let archive = unsafe { runtime::boot_archive() }.map_err(|_| abi::Error::new(abi::ErrorKind::InvalidState))?;
    let image = archive
        .find("init")
        .ok_or(abi::Error::new(abi::ErrorKind::InvalidState))?
        .data;
    let server = spawn
        .spawn(image, [SERVER_ROLE, 0])
        .map_err(|_| abi::Error::new(abi::ErrorKind::InvalidState))?;
    capability::copy(remote, Destination::in_cspace(server.cspace, 1))?;
    server.start()?;
    let two_spaces = median(|| {
        timed(|| {
            let _ = remote.call(&message);
        })
    });

    // Signal to wake-up: a waiter of higher priority than the signaller runs
    // as soon as the signal is made, and records when it woke.
    let notification = MEMORY.create_notification(SLOTS.allocate()?)?;
    let signal = Notification(SLOTS.allocate()?);
    capability::mint(notification, Destination::own(signal.0), Rights::WRITE, 1)?;
    static WOKE_AT: AtomicU64 = AtomicU64::new(0);
    threads.spawn(move |_| {
        while notification.wait().is_ok() {
            WOKE_AT.store(runtime::syscall::cycles(), Ordering::SeqCst);
        }
        0
    })?;
    OWN_THREAD.set_priority(abi::init::PRIORITY - 1)?;
    let wake = median(|| {
        let start = runtime::syscall::cycles();
        let _ = signal.signal();
        WOKE_AT.load(Ordering::SeqCst).wrapping_sub(start)
    });

    println!("ipcbench: rdtsc cycles, median of {RUNS} after {WARM_UP} warm-up runs");
    println!("ipcbench: null syscall                          {null:>8}");
    println!("ipcbench: call+reply, one address space         {same_space:>8}");
    println!("ipcbench: call+reply, two address spaces        {two_spaces:>8}");
    println!("ipcbench: notification signal to wake-up        {wake:>8}");
    match cpuid_exits() {
        Ok((vmm, kernel)) => {
            println!("ipcbench: CPUID exit, through a user-space VMM  {vmm:>8}");
            println!("ipcbench: CPUID exit, answered in the kernel    {kernel:>8}");
            // In tenths, rounded to the nearest.
            let tenths = (vmm * 10 + kernel / 2) / kernel.max(1);
            println!(
                "ipcbench: user-space / in-kernel exit           {:>5}.{}x",
                tenths / 10,
                tenths % 10
            );
        }
        Err(error) => println!("ipcbench: CPUID exits not measured: {error:?}"),
    }
    Ok(())
}

/// Guest code (real mode) at 0x1000: CPUID of leaf 0 for ever, each an
/// exit to this program.
const VMM_LOOP: [u8; 4] = [0x0f, 0xa2, 0xeb, 0xfc];
/// Guest code at 0x1800: `KERNEL_CPUIDS` CPUIDs of the kernel-answered leaf,
/// then HLT.
const KERNEL_CPUIDS: u32 = 2_000;
/// Runs of the in-kernel loop (each `KERNEL_CPUIDS` exits) to take the
/// median of.
const KERNEL_RUNS: usize = 21;

/// Cycles per CPUID exit round trip: through this program acting as the
/// VMM (run, read the exit, answer, step), and answered by the kernel's
/// test-only path (the image is built with `kernel-cpuid-exits`).
fn cpuid_exits() -> Result<(u64, u64), abi::Error> {
    use abi::vcpu::{BENCH_KERNEL_CPUID_LEAF, ExitKind, group};
    let memory = MEMORY.create_guest_memory(SLOTS.allocate()?)?;
    let vcpu = MEMORY.create_vcpu(SLOTS.allocate()?)?;
    let code = MEMORY.create_frame(SLOTS.allocate()?)?;
    let window = runtime::memory::Region::map(OWN_SPACE, core::iter::once(code), Rights::READ | Rights::WRITE)?;
    let leaf = BENCH_KERNEL_CPUID_LEAF.to_le_bytes();
    let count = KERNEL_CPUIDS.to_le_bytes();
    let kernel_loop = [
        0x66, 0xbe, count[0], count[1], count[2], count[3], // mov esi, KERNEL_CPUIDS
        0x66, 0xb8, leaf[0], leaf[1], leaf[2], leaf[3], // mov eax, leaf
        0x0f, 0xa2, // cpuid
        0x66, 0x4e, // dec esi
        0x75, 0xf4, // jnz back to mov eax
        0xf4, // hlt
    ];
    let bad = |_| abi::Error::new(abi::ErrorKind::InvalidArgument);
    window.write(0, &VMM_LOOP).map_err(bad)?;
    window.write(0x800, &kernel_loop).map_err(bad)?;
    memory.map(code, 0x1000, Rights::READ | Rights::WRITE | Rights::EXECUTE)?;
    let page_frame = MEMORY.create_frame(SLOTS.allocate()?)?;
    vcpu.configure(memory, page_frame)?;
    let page = runtime::vcpu::StatePage::map(OWN_SPACE, page_frame)?;
    let start_at = |rip: u64| {
        let mut state = page.read();
        state.segments.cs.selector = 0;
        state.segments.cs.base = 0;
        state.registers.rip = rip;
        state.load = group::SEGMENTS;
        page.write(&state);
    };
    start_at(0x1000);
    let vmm = median(|| {
        let start = runtime::syscall::cycles();
        let _ = vcpu.run();
        let mut state = page.read();
        if state.exit.kind == ExitKind::Cpuid as u32 {
            let registers = &mut state.registers;
            (registers.rax, registers.rbx, registers.rcx, registers.rdx) = (0, 0, 0, 0);
            registers.rip += u64::from(state.exit.instruction_length);
        }
        page.write(&state);
        runtime::syscall::cycles() - start
    });
    let mut kernel: Vec<u64> = Vec::new();
    for _ in 0..KERNEL_RUNS {
        start_at(0x1800);
        let start = runtime::syscall::cycles();
        // A host interrupt ends a run early; run on until the HLT.
        loop {
            match vcpu.run()? {
                kind if kind == ExitKind::Hlt as u32 => break,
                kind if kind == ExitKind::Preempted as u32 => {}
                _ => return Err(abi::Error::new(abi::ErrorKind::InvalidState)),
            }
        }
        kernel.push((runtime::syscall::cycles() - start) / u64::from(KERNEL_CPUIDS));
    }
    kernel.sort_unstable();
    Ok((vmm, kernel[KERNEL_RUNS / 2]))
}
