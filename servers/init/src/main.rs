//! init: the first user process.
//!
//! It reads the system description from the boot archive and starts every
//! process in it, each with exactly the authority the description gives: a
//! memory pool of its quota, its priority, its interrupt lines, port ranges
//! and device memory, a capability to names (which knows the services it
//! may provide and use) and one to init itself. Then it serves the process
//! table and power-off, and hears every process's faults.

#![no_std]
#![no_main]
// Only the test-only fault below may use unsafe code; reading the boot
// archive the kernel lends to init is the other, documented exception.
#![deny(unsafe_code)]

extern crate alloc;

mod launch;

use abi::fault::FAULT_LABEL;
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::{self, Destination, Slot};
use runtime::ipc::{Buffer, Message};
use runtime::println;
use service::init::{Init, InitReply, InitRequest, ProcessInfo, ProcessState};
use system_description::SystemDescription;

runtime::entry!(main, heap_kib = 512);

/// Set in the badge of a process's fault endpoint.
const FAULT_BIT: u64 = 1 << 63;

fn main() -> u64 {
    println!("init: running in ring 3");
    #[cfg(feature = "user-fault-test")]
    touch_kernel_memory();
    // SAFETY: this is init, started with the boot archive's address, and it
    // never unmaps the archive.
    #[allow(unsafe_code)]
    let archive = match unsafe { runtime::boot_archive() } {
        Ok(archive) => archive,
        Err(error) => {
            println!("init: cannot read the boot archive: {error}");
            return 1;
        }
    };
    let description = match archive
        .find("system")
        .map(|file| SystemDescription::from_bytes(file.data))
    {
        Some(Ok(description)) => description,
        _ => {
            println!("init: the boot archive holds no readable system description");
            return 1;
        }
    };
    if description.processes.is_empty() {
        println!("init: done");
        return 0;
    }
    let launcher = match launch::Launcher::new(&archive) {
        Ok(launcher) => launcher,
        Err(error) => {
            println!("init: cannot set up: {error:?}");
            return 1;
        }
    };
    let mut system = System {
        launcher,
        description: &description,
        table: alloc::vec![ProcessInfo {
            name: String::from("init"),
            state: ProcessState::Running,
            priority: abi::init::PRIORITY,
            memory_kib: 0,
            generation: 1,
        }],
        records: Vec::new(),
    };
    for (index, process) in description.processes.iter().enumerate() {
        let badge = index as u64 + 1;
        let started = system.launcher.start(process, badge, FAULT_BIT | badge, None);
        let (state, record) = match started {
            Ok((pool, pci)) => (ProcessState::Running, Record { pool: Some(pool), pci }),
            Err(error) => {
                println!("init: cannot start '{}': {error}", process.name);
                system.launcher.unavailable(process);
                (
                    ProcessState::NotStarted,
                    Record {
                        pool: None,
                        pci: Vec::new(),
                    },
                )
            }
        };
        // Still a row if it failed: process `badge` is row `badge`.
        system.table.push(ProcessInfo {
            name: process.name.clone(),
            state,
            priority: process.priority,
            memory_kib: process.memory_kib,
            generation: 1,
        });
        system.records.push(record);
    }
    system.serve()
}

/// What init keeps about a process it started.
struct Record {
    /// The original capability to its memory pool: revoking it ends the
    /// process. `None` if it is not running.
    pool: Option<Slot>,
    /// The PCI resources it was given (kept across restarts).
    pci: Vec<pci::Resource>,
}

/// Everything init serves.
struct System<'a> {
    launcher: launch::Launcher<'a>,
    description: &'a SystemDescription,
    /// Row 0 is init; process `badge` is row `badge`.
    table: Vec<ProcessInfo>,
    /// Process `badge` is record `badge - 1`.
    records: Vec<Record>,
}

impl System<'_> {
    /// Free memory: init's pool, and what is left of each process's.
    fn memory(&self) -> InitReply {
        let free = |slot: Slot| capability::identify(slot).map_or(0, |identity| identity.available / 1024);
        InitReply::Memory {
            free_kib: free(Slot(abi::init::slot::MEMORY)),
            pools: self
                .description
                .processes
                .iter()
                .zip(&self.records)
                .filter_map(|(process, record)| Some((process.name.clone(), process.memory_kib, free(record.pool?))))
                .collect(),
        }
    }

    /// Ends process `name` and starts it again; `caller` is the badge asking.
    fn restart(&mut self, caller: u64, name: &str) -> Result<InitReply, service::ErrorCode> {
        let allowed = caller
            .checked_sub(1)
            .and_then(|index| self.description.processes.get(index as usize))
            .is_some_and(|process| process.control);
        if !allowed {
            return Err(service::ErrorCode::Denied);
        }
        let index = self
            .description
            .processes
            .iter()
            .position(|process| process.name == name)
            .ok_or(service::ErrorCode::NotFound)?;
        let (process, record) = (&self.description.processes[index], &mut self.records[index]);
        if let Some(pool) = record.pool.take() {
            // Everything made from the pool goes: threads, address space,
            // CSpace (and with it the device capabilities), frames, and the
            // capabilities others hold to its endpoints. Then the pool.
            let _ = capability::revoke(Destination::own(pool));
            let _ = capability::delete(Destination::own(pool));
        }
        let badge = index as u64 + 1;
        let row = &mut self.table[index + 1];
        match self
            .launcher
            .start(process, badge, FAULT_BIT | badge, Some(&record.pci))
        {
            Ok((pool, _)) => {
                record.pool = Some(pool);
                row.state = ProcessState::Running;
                row.generation += 1;
                println!("init: restarted '{name}' (generation {})", row.generation);
                Ok(InitReply::Restarted)
            }
            Err(error) => {
                row.state = ProcessState::NotStarted;
                println!("init: cannot restart '{name}': {error}");
                Err(service::ErrorCode::NotFound)
            }
        }
    }

    /// Serves the process table, restarts and power-off, and records faults.
    fn serve(&mut self) -> u64 {
        let buffer = Buffer::main_thread();
        let endpoint = self.launcher.endpoint();
        let Ok(mut received) = endpoint.receive() else { return 1 };
        loop {
            let reply = if received.message.label == FAULT_LABEL && received.badge & FAULT_BIT != 0 {
                let index = (received.badge & !FAULT_BIT) as usize;
                let words = received.message.words;
                if let Some(process) = self.table.get_mut(index) {
                    process.state = ProcessState::Faulted;
                    println!(
                        "init: process '{}' faulted: vector {} at rip {:#x}, address {:#x}; it stays stopped",
                        process.name, words[0], words[3], words[2]
                    );
                }
                // Any label but FAULT_RESUME leaves the thread stopped.
                Message::new(0, &[])
            } else {
                let answer = match service::decode::<InitRequest>(&received.message, buffer) {
                    Some(InitRequest::PowerOff) => {
                        println!("init: powering off");
                        return 0;
                    }
                    Some(InitRequest::Memory) => Ok(self.memory()),
                    Some(InitRequest::Processes) => Ok(InitReply::Processes(self.table.clone())),
                    Some(InitRequest::Restart { name }) => self.restart(received.badge, &name),
                    None => Err(service::ErrorCode::Malformed),
                };
                match answer {
                    Ok(reply) => service::encode_reply::<Init>(&reply, buffer),
                    Err(code) => service::error_reply(code),
                }
            };
            received = match endpoint.reply_receive(&reply) {
                Ok(received) => received,
                Err(_) => return 1,
            };
        }
    }
}

/// Test-only: a write to the kernel half, which user mode may not touch.
#[cfg(feature = "user-fault-test")]
#[allow(unsafe_code)]
fn touch_kernel_memory() {
    println!("init: fault test: writing to kernel memory");
    let kernel = core::hint::black_box(0xffff_8000_0000_1000usize) as *mut u64;
    // SAFETY: deliberately unsound: the write must fault, which is the test.
    unsafe { kernel.write_volatile(0x5a5a) };
}
