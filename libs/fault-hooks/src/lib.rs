//! Fault injection inside a server.
//!
//! The supervisor injects a fault by sending a control message to the
//! server (see `service::control`); the serve loop answers it and then
//! calls [`strike`]. Some faults act at once (a panic, an endless loop, a
//! wild write, flipped heap bits); the others arm a hook that the next
//! request trips: [`take_garbage_reply`] in the serve loop, which then
//! answers a client with random words, and [`take_stuck_request`] in a
//! driver, which then starts a device request without telling the device,
//! so the request never completes.
//!
//! Killing a process needs no help from it: the supervisor tears it down.

#![no_std]
// The wild write and the heap corruption are deliberate memory errors.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The supervisor tears the process down, as an operator's kill.
    Kill,
    /// The server panics (and so exits with status 101).
    Panic,
    /// The server loops for ever without answering anyone.
    Hang,
    /// The server writes to an address it has not mapped, or to its own
    /// read-only code.
    WildWrite,
    /// Bits flipped at random places in the server's heap.
    CorruptState,
    /// The next reply to a client is random words.
    GarbageReply,
    /// The next device request is started but never handed to the device.
    StuckRequest,
}

impl Fault {
    /// Every fault, in a fixed order (the order of campaign reports).
    pub const ALL: [Fault; 7] = [
        Fault::Kill,
        Fault::Panic,
        Fault::Hang,
        Fault::WildWrite,
        Fault::CorruptState,
        Fault::GarbageReply,
        Fault::StuckRequest,
    ];

    /// Its name in commands and reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Panic => "panic",
            Fault::Hang => "hang",
            Fault::WildWrite => "wild-write",
            Fault::CorruptState => "corrupt",
            Fault::GarbageReply => "garbage",
            Fault::StuckRequest => "stuck",
        }
    }

    /// The fault named `name`.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|fault| fault.name() == name)
    }
}

/// How many bits [`Fault::CorruptState`] flips.
pub const FLIPPED_BITS: u32 = 8;

static GARBAGE_REPLY: AtomicBool = AtomicBool::new(false);
static STUCK_REQUEST: AtomicBool = AtomicBool::new(false);
static RANDOM: AtomicU64 = AtomicU64::new(0);

/// Carries out `fault` in this process (after the serve loop answered the
/// control message that asked for it). Returns for the faults that arm a
/// hook and for [`Fault::Kill`], which is not the process's to do.
pub fn strike(fault: Fault) {
    match fault {
        Fault::Kill => {}
        Fault::Panic => panic!("fault injection: panic"),
        Fault::Hang => loop {
            core::hint::spin_loop();
        },
        Fault::WildWrite => wild_write(),
        Fault::CorruptState => corrupt_heap(),
        Fault::GarbageReply => GARBAGE_REPLY.store(true, Ordering::Relaxed),
        Fault::StuckRequest => STUCK_REQUEST.store(true, Ordering::Relaxed),
    }
}

/// Whether the next reply must be garbage (once per injection).
pub fn take_garbage_reply() -> bool {
    GARBAGE_REPLY.swap(false, Ordering::Relaxed)
}

/// Whether the device request being started must get stuck (once per
/// injection). Drivers call this where they would notify the device.
pub fn take_stuck_request() -> bool {
    STUCK_REQUEST.swap(false, Ordering::Relaxed)
}

/// A pseudo-random word: xorshift, seeded from the clock on first use.
pub fn random() -> u64 {
    let mut state = RANDOM.load(Ordering::Relaxed);
    if state == 0 {
        state = runtime::syscall::uptime_ms() ^ 0x9e37_79b9_7f4a_7c15;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    RANDOM.store(state, Ordering::Relaxed);
    state
}

/// Writes to an unmapped page or to this function's own code.
fn wild_write() -> ! {
    let target = if random() % 2 == 0 {
        // The page at 4 KiB: never mapped (programs load above it).
        0x1000usize
    } else {
        wild_write as *const () as usize
    };
    // SAFETY: deliberately unsound: the write must fault, which is the point.
    unsafe { core::ptr::write_volatile(target as *mut u64, 0xdead_beef) };
    unreachable!("a wild write did not fault");
}

/// Flips [`FLIPPED_BITS`] bits at random places in the heap, live data or
/// free space alike.
fn corrupt_heap() {
    let (start, length) = runtime::heap::region();
    if length == 0 {
        return;
    }
    for _ in 0..FLIPPED_BITS {
        let word = random();
        let address = start + (word as usize % length);
        let bit = (word >> 56) % 8;
        // SAFETY: deliberately unsound: the byte lies in this program's heap
        // (mapped and writable), and changing it behind the allocator's and
        // its owners' backs is the fault being injected.
        unsafe {
            let byte = address as *mut u8;
            byte.write_volatile(byte.read_volatile() ^ (1 << bit));
        }
    }
}
