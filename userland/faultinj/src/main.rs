//! faultinj: the fault campaign.
//!
//! It asks on the console for a fault count and a seed ("COUNT SEED"), then
//! injects that many faults, one at a time, into the block driver, the
//! serial driver and pci, choosing the target and the fault type from the
//! seed. Meanwhile:
//! - a workload thread writes, reads back and verifies checksummed files
//!   through fs, syncing every few writes, and keeps a model of what each
//!   file must hold once a write was acknowledged;
//! - a chatter thread keeps calling serial and pci and checks pci's answer
//!   never changes.
//!
//! After each fault it waits until the target serves again: the recovery
//! time runs from the injection request to the next request of its own
//! that succeeds at the target (for the block driver, a flush, which goes
//! to the device). At the end it stops the workload, syncs,
//! verifies every file against the model, prints the figures (and the same
//! as one JSON line) and powers the system off.
//!
//! fs itself is not a target: a restarted fs loses the metadata it had not
//! written back, so a write it acknowledged could be lost.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod report;
mod workload;

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use fault_hooks::Fault;
use report::Campaign;
use runtime::capability::Slots;
use runtime::ipc::Buffer;
use runtime::println;
use runtime::syscall::cycles;
use runtime::syscall::sleep_ms;
use serial::Serial;
use service::Client;
use service::init::{Init, InitRequest};
use service::process::{CSPACE_SLOTS, Start, slot};
use supervisor::{Reply, Request, Supervisor};

runtime::entry!(main, heap_kib = 1024);

/// The processes faults go into, and the service each serves.
const TARGETS: [(&str, &str); 3] = [("virtio-blk", "block"), ("serial", "serial"), ("pci", "pci")];
/// How long a fault may take to be delivered, or a target to recover,
/// before the campaign calls it lost.
const PATIENCE_MS: u64 = 20_000;

/// Set when the campaign is over: the threads stop.
static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> u64 {
    let start = Start::get();
    let slots = Slots::new(start.first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let connect = |what: &str| -> Option<runtime::capability::Slot> {
        let slot = slots.allocate().ok();
        if slot.is_none() {
            println!("faultinj: no slot for {what}");
        }
        slot
    };
    let (Some(serial_slot), Some(pci_slot), Some(block_slot), Some(supervisor_slot)) = (
        connect("serial"),
        connect("pci"),
        connect("block"),
        connect("supervisor"),
    ) else {
        return 1;
    };
    let (Ok(serial), Ok(pci), Ok(block), Ok(supervisor)) = (
        Client::<Serial>::connect(serial_slot, buffer),
        Client::<pci::Pci>::connect(pci_slot, buffer),
        Client::<block::Block>::connect(block_slot, buffer),
        Client::<Supervisor>::connect(supervisor_slot, buffer),
    ) else {
        println!("faultinj: cannot reach serial, pci, block or the supervisor");
        return 1;
    };
    let probes = Probes { serial, pci, block };
    let Some((count, seed)) = ask(&probes.serial) else {
        println!("faultinj: expected a line 'COUNT SEED'");
        return 1;
    };
    let reference = match probes.pci.call(&pci::Request::Devices) {
        Ok(pci::Reply::Devices(devices)) => devices,
        other => {
            println!("faultinj: pci did not list its devices: {other:?}");
            return 1;
        }
    };
    let spawner = service::process::thread_spawner(&slots);
    let started = workload::carve(&slots, 64)
        .and_then(|own| workload::start(&spawner, own, seed))
        .and_then(|()| workload::carve(&slots, 4))
        .and_then(|own| {
            spawner.spawn(move |buffer| {
                workload::chatter(buffer, &own, &reference, &STOP);
                0
            })
        });
    if started.is_err() {
        println!("faultinj: cannot start the workload");
        return 1;
    }
    println!("faultinj: {count} faults, seed {seed}");
    let mut campaign = Campaign::new(count, seed);
    let mut random = Random(seed.max(1));
    let began = (runtime::syscall::uptime_ms(), cycles());
    while campaign.injected() < count {
        let (target, service) = TARGETS[random.below(TARGETS.len())];
        let fault = Fault::ALL[random.below(Fault::ALL.len())];
        match inject(&supervisor, target, fault) {
            Ok(injected_at) => {
                let recovered = probes.recover(service, injected_at);
                campaign.record(target, fault, recovered.map(|done| done - injected_at));
                if recovered.is_none() {
                    println!("faultinj: {target} did not recover from {} in time", fault.name());
                }
            }
            Err(reason) => {
                // Not running (backing off) or refused: try another later.
                if campaign.skip() > 100 {
                    println!("faultinj: too many faults could not be injected ({reason}); stopping");
                    break;
                }
                sleep_ms(20);
                continue;
            }
        }
        if campaign.injected() % 50 == 0 {
            println!("faultinj: progress {}/{count}", campaign.injected());
        }
        // A moment of plain load between faults.
        sleep_ms(random.below(30) as u64);
    }
    STOP.store(true, Ordering::Relaxed);
    let ended = (runtime::syscall::uptime_ms(), cycles());
    campaign.set_clock(began, ended);
    let Some(outcome) = workload::finish() else {
        println!("faultinj: the workload did not stop");
        return 1;
    };
    campaign.add_workload(&outcome, workload::chatter_errors());
    if let Ok(Ok(Reply::Status(rows))) = supervisor.call(&Request::Status) {
        campaign.set_restarts(rows.iter().map(|row| row.restarts).sum());
    }
    campaign.print();
    let init = Client::<Init>::with_endpoint(slot::INIT, buffer);
    let _ = init.call(&InitRequest::PowerOff);
    0
}

/// Reads "COUNT SEED" from the console.
fn ask(serial: &Client<Serial>) -> Option<(u32, u64)> {
    println!("faultinj: ready; type COUNT SEED");
    let mut line = Vec::new();
    while !line.ends_with(b"\n") && !line.ends_with(b"\r") {
        match serial.call(&serial::Request::Read { max: 64 }) {
            Ok(serial::Reply::Data(bytes)) if !bytes.is_empty() => line.extend(bytes),
            _ => sleep_ms(10),
        }
    }
    let line = String::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let count = words.next()?.parse().ok()?;
    let seed = words.next()?.parse().ok()?;
    Some((count, seed))
}

/// Asks the supervisor to inject `fault` into `target` and waits until it
/// was delivered. Returns when it was asked (in cycles).
fn inject(supervisor: &Client<Supervisor>, target: &str, fault: Fault) -> Result<u64, String> {
    let before = status(supervisor, target).ok_or("no status")?;
    let asked = cycles();
    let request = Request::Inject {
        name: target.into(),
        fault,
    };
    match supervisor.call(&request) {
        Ok(Ok(Reply::Done)) => {}
        other => return Err(alloc::format!("{other:?}")),
    }
    let deadline = runtime::syscall::uptime_ms() + PATIENCE_MS;
    while runtime::syscall::uptime_ms() < deadline {
        if status(supervisor, target).is_some_and(|injected| injected > before) {
            return Ok(asked);
        }
        sleep_ms(5);
    }
    Err(String::from("never delivered"))
}

/// How many faults `target` has received.
fn status(supervisor: &Client<Supervisor>, target: &str) -> Option<u32> {
    match supervisor.call(&Request::Status) {
        Ok(Ok(Reply::Status(rows))) => rows.iter().find(|row| row.name == target).map(|row| row.injected),
        _ => None,
    }
}

/// The campaign's own connections to the targets.
struct Probes {
    serial: Client<Serial>,
    pci: Client<pci::Pci>,
    block: Client<block::Block>,
}

impl Probes {
    /// Waits until `service` serves a request again; returns when it did
    /// (in cycles), or `None` if it took too long. The block driver is
    /// asked to flush, which goes to the device.
    fn recover(&self, service: &str, since: u64) -> Option<u64> {
        let deadline = runtime::syscall::uptime_ms() + PATIENCE_MS;
        while runtime::syscall::uptime_ms() < deadline {
            let served = match service {
                "serial" => self.serial.call(&serial::Request::Read { max: 0 }).is_ok(),
                "pci" => self.pci.call(&pci::Request::Devices).is_ok(),
                _ => matches!(self.block.call(&block::Request::Flush), Ok(Ok(_))),
            };
            let now = cycles();
            if served && now > since {
                return Some(now);
            }
            sleep_ms(1);
        }
        None
    }
}

/// xorshift64: the campaign's choices, reproducible from the seed.
pub struct Random(pub u64);

impl Random {
    /// The next word.
    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `bound` (which must not be 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.word() % bound as u64) as usize
    }
}
