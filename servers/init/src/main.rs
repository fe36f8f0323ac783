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
use runtime::capability::{self, Endpoint, Slot};
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
    let mut table = alloc::vec![ProcessInfo {
        name: alloc::string::String::from("init"),
        state: ProcessState::Running,
        priority: abi::init::PRIORITY,
        memory_kib: 0,
    }];
    let mut pools = alloc::vec::Vec::new();
    for (index, process) in description.processes.iter().enumerate() {
        let badge = index as u64 + 1;
        match launcher.start(process, badge, FAULT_BIT | badge) {
            Ok(pool) => {
                pools.push((process.name.clone(), process.memory_kib, pool));
                table.push(ProcessInfo {
                    name: process.name.clone(),
                    state: ProcessState::Running,
                    priority: process.priority,
                    memory_kib: process.memory_kib,
                });
            }
            Err(error) => {
                println!("init: cannot start '{}': {error}", process.name);
                launcher.unavailable(process);
                // Still a row: process `badge` is row `badge`.
                table.push(ProcessInfo {
                    name: process.name.clone(),
                    state: ProcessState::NotStarted,
                    priority: process.priority,
                    memory_kib: process.memory_kib,
                });
            }
        }
    }
    serve(launcher.endpoint(), &mut table, &pools)
}

/// Free memory: init's pool, and what is left of each process's.
fn memory(pools: &[(String, u32, Slot)]) -> InitReply {
    let free = |slot: Slot| capability::identify(slot).map_or(0, |identity| identity.available / 1024);
    InitReply::Memory {
        free_kib: free(Slot(abi::init::slot::MEMORY)),
        pools: pools
            .iter()
            .map(|(name, quota, slot)| (name.clone(), *quota, free(*slot)))
            .collect(),
    }
}

/// Serves the process table and power-off, and records faults.
fn serve(endpoint: Endpoint, table: &mut [ProcessInfo], pools: &[(String, u32, Slot)]) -> u64 {
    let buffer = Buffer::main_thread();
    let Ok(mut received) = endpoint.receive() else { return 1 };
    loop {
        let reply = if received.message.label == FAULT_LABEL && received.badge & FAULT_BIT != 0 {
            // Row 0 is init itself; process `badge` is row `badge`.
            let index = (received.badge & !FAULT_BIT) as usize;
            let words = received.message.words;
            if let Some(process) = table.get_mut(index) {
                process.state = ProcessState::Faulted;
                println!(
                    "init: process '{}' faulted: vector {} at rip {:#x}, address {:#x}; it stays stopped",
                    process.name, words[0], words[3], words[2]
                );
            }
            // Any label but FAULT_RESUME leaves the thread stopped.
            Message::new(0, &[])
        } else {
            match service::decode::<InitRequest>(&received.message, buffer) {
                Some(InitRequest::PowerOff) => {
                    println!("init: powering off");
                    return 0;
                }
                Some(InitRequest::Memory) => service::encode_reply::<Init>(&memory(pools), buffer),
                Some(InitRequest::Processes) => {
                    service::encode_reply::<Init>(&InitReply::Processes(table.to_vec()), buffer)
                }
                None => service::error_reply(service::ErrorCode::Malformed),
            }
        };
        received = match endpoint.reply_receive(&reply) {
            Ok(received) => received,
            Err(_) => return 1,
        };
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
