//! The load the campaign runs under: checksummed files through fs, and a
//! stream of calls to serial and pci.

use crate::Random;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use fs::Files;
use runtime::capability::{AddressSpace, Memory, Slots};
use runtime::ipc::Buffer;
use runtime::println;
use runtime::thread::ThreadSpawn;
use service::Client;
use service::process::slot;
use spin::Mutex;

/// Files the workload keeps.
const FILES: usize = 12;
/// The largest file, in bytes.
const LARGEST: usize = 96 * 1024;
/// Writes between syncs.
const SYNC_EVERY: u32 = 4;

/// What the workload saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Writes acknowledged.
    pub writes: u32,
    /// Reads verified.
    pub reads: u32,
    /// Requests that failed (the client saw an error).
    pub errors: u32,
    /// Reads whose bytes were not what the last acknowledged write put there.
    pub mismatches: u32,
    /// Files checked at the end, after the last sync.
    pub final_files: u32,
}

/// The workload's state, shared with the campaign.
struct State {
    outcome: Outcome,
    /// Set by the workload thread when it has stopped and checked everything.
    finished: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    outcome: Outcome {
        writes: 0,
        reads: 0,
        errors: 0,
        mismatches: 0,
        final_files: 0,
    },
    finished: false,
});
static RUNNING: AtomicBool = AtomicBool::new(true);
static CHATTER_ERRORS: AtomicU32 = AtomicU32::new(0);
static CHATTER_CALLS: AtomicU64 = AtomicU64::new(0);

/// Starts the file workload on a thread of its own, with its own fs
/// connection.
///
/// # Errors
/// A failed syscall.
pub fn start(spawner: &ThreadSpawn, slots: Slots, seed: u64) -> Result<(), abi::Error> {
    // The connection is made on the thread that uses it: it is tied to
    // that thread's IPC buffer.
    spawner.spawn(move |buffer| {
        run(&slots, buffer, seed);
        0
    })?;
    Ok(())
}

/// `count` slots taken from `slots`, for a thread of their own.
///
/// # Errors
/// `InvalidSlot` if `slots` has too few left.
pub fn carve(slots: &Slots, count: u64) -> Result<Slots, abi::Error> {
    let first = slots.allocate()?.0;
    for _ in 1..count {
        slots.allocate()?;
    }
    Ok(Slots::new(first, first + count))
}

/// Stops the workload, waits until it has verified every file, and
/// returns what it saw; `None` if it does not stop.
pub fn finish() -> Option<Outcome> {
    RUNNING.store(false, Ordering::Relaxed);
    for _ in 0..6000 {
        let state = STATE.lock();
        if state.finished {
            return Some(state.outcome);
        }
        drop(state);
        runtime::syscall::sleep_ms(10);
    }
    None
}

/// Errors the chatter thread saw, and its calls.
pub fn chatter_errors() -> (u32, u64) {
    (
        CHATTER_ERRORS.load(Ordering::Relaxed),
        CHATTER_CALLS.load(Ordering::Relaxed),
    )
}

/// The bytes of a file written with `seed`: a header (length, seed,
/// checksum of the rest) and bytes from the seed.
fn content(seed: u64, length: usize) -> Vec<u8> {
    let mut random = Random(seed | 1);
    let mut body: Vec<u8> = (0..length.saturating_sub(24)).map(|_| random.word() as u8).collect();
    let checksum = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    });
    let mut bytes = Vec::with_capacity(length.max(24));
    bytes.extend_from_slice(&(length as u64).to_le_bytes());
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes.append(&mut body);
    bytes
}

/// Changes the workload's counts.
fn tally(update: impl FnOnce(&mut Outcome)) {
    update(&mut STATE.lock().outcome);
}

/// The workload thread's loop.
fn run(slots: &Slots, buffer: Buffer, seed: u64) {
    let files = match Files::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer) {
        Ok(files) => files,
        Err(error) => {
            println!("faultinj: the workload cannot reach fs: {error}");
            STATE.lock().finished = true;
            return;
        }
    };
    let mut random = Random(seed ^ 0x5bd1_e995);
    // What each file holds once its last acknowledged write is in: `None`
    // until written, or after a write that failed (its bytes are unknown).
    let mut model: [Option<(u64, usize)>; FILES] = [None; FILES];
    let path = |index: usize| format!("/campaign-{index}");
    let mut writes = 0;
    while RUNNING.load(Ordering::Relaxed) {
        let index = random.below(FILES);
        let file_seed = random.word();
        // Whole blocks half of the time (the direct path), any length else.
        let length = match random.below(2) {
            0 => (1 + random.below(LARGEST / 4096)) * 4096,
            _ => 24 + random.below(LARGEST - 24),
        };
        match files.write_file(&path(index), &content(file_seed, length)) {
            Ok(()) => {
                model[index] = Some((file_seed, length));
                tally(|outcome| outcome.writes += 1);
            }
            Err(error) => {
                println!("faultinj: write {}: {error}", path(index));
                model[index] = None;
                tally(|outcome| outcome.errors += 1);
            }
        }
        writes += 1;
        if writes % SYNC_EVERY == 0
            && let Err(error) = files.sync()
        {
            println!("faultinj: sync: {error}");
            tally(|outcome| outcome.errors += 1);
        }
        let check = random.below(FILES);
        verify(&files, &path(check), model[check]);
    }
    let synced = files.sync();
    if let Err(error) = synced {
        println!("faultinj: final sync: {error}");
        tally(|outcome| outcome.errors += 1);
    }
    for (index, expected) in model.iter().enumerate() {
        if expected.is_some() {
            verify(&files, &path(index), *expected);
            tally(|outcome| outcome.final_files += 1);
        }
    }
    STATE.lock().finished = true;
}

/// Reads file `path` and compares it with what `expected` says it holds.
fn verify(files: &Files, path: &str, expected: Option<(u64, usize)>) {
    let Some((seed, length)) = expected else { return };
    match files.read_file(path) {
        Ok(bytes) if bytes == content(seed, length) => tally(|outcome| outcome.reads += 1),
        Ok(bytes) => {
            println!(
                "faultinj: MISMATCH in {path}: {} bytes read, {length} expected",
                bytes.len()
            );
            tally(|outcome| outcome.mismatches += 1);
        }
        Err(error) => {
            println!("faultinj: read {path}: {error}");
            tally(|outcome| outcome.errors += 1);
        }
    }
}

/// The chatter thread: reads from serial and lists pci's devices, which
/// must always be `reference`, until `stop`.
pub fn chatter(buffer: Buffer, slots: &Slots, reference: &[pci::Device], stop: &AtomicBool) {
    let (Ok(serial_slot), Ok(pci_slot)) = (slots.allocate(), slots.allocate()) else {
        return;
    };
    let (Ok(serial), Ok(pci)) = (
        Client::<serial::Serial>::connect(serial_slot, buffer),
        Client::<pci::Pci>::connect(pci_slot, buffer),
    ) else {
        CHATTER_ERRORS.fetch_add(1, Ordering::Relaxed);
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        if serial.call(&serial::Request::Read { max: 0 }).is_err() {
            CHATTER_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        match pci.call(&pci::Request::Devices) {
            Ok(pci::Reply::Devices(devices)) if devices == reference => {}
            Ok(pci::Reply::Devices(_)) => {
                println!("faultinj: pci listed other devices than at the start");
                CHATTER_ERRORS.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                println!("faultinj: pci answered {other:?}");
                CHATTER_ERRORS.fetch_add(1, Ordering::Relaxed);
            }
        }
        CHATTER_CALLS.fetch_add(2, Ordering::Relaxed);
        runtime::syscall::sleep_ms(5);
    }
}
