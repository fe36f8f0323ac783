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
    Ok(())
}
