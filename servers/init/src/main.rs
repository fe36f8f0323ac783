//! init: the first user process.
//!
//! It reads the system description from the boot archive and starts every
//! process in it, each with exactly the authority the description gives: a
//! memory pool of its quota, its priority, its interrupt lines, port ranges
//! and device memory, a capability to names (which knows the services it
//! may provide and use), one to init itself, and, if it provides services,
//! the endpoint it receives on. init makes those endpoints from its own
//! memory, so they outlive the processes: a restarted server receives on
//! the same endpoint, and callers queued on it wait for the new copy.
//!
//! init holds every process's authority; the supervisor decides. The
//! supervisor hears the faults of every process but names and itself and
//! asks init (it has `control = true`) to stop and restart processes. init
//! hears the faults of names and of the supervisor: it restarts the
//! supervisor (which then picks up where it was: faults that arrived
//! meanwhile wait on its endpoint) and reports the others. Without a
//! supervisor in the description, init reports every fault and the process
//! stays stopped.

#![no_std]
#![no_main]
// Only the test-only fault below may use unsafe code; reading the boot
// archive the kernel lends to init is the other, documented exception.
#![deny(unsafe_code)]

extern crate alloc;

mod launch;

use abi::Rights;
use abi::fault::{EXITED, FAULT_LABEL, word};
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::{self, Destination, Endpoint, PortControl, Slot};
use runtime::ipc::{Buffer, Message};
use runtime::println;
use service::ErrorCode;
use service::control::CONTROL_BADGE;
use service::init::{FAULT_BIT, Init, InitReply, InitRequest, ProcessInfo, ProcessState, SupervisedInfo};
use system_description::{Process, SystemDescription};

runtime::entry!(main, heap_kib = 512);

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
        reply_slot: Slot(0),
    };
    if let Err(error) = system.prepare() {
        println!("init: cannot set up: {error}");
        return 1;
    }
    for (index, process) in description.processes.iter().enumerate() {
        let badge = index as u64 + 1;
        let started = system.start(index, 1, None);
        let state = match started {
            Ok(()) => ProcessState::Running,
            Err(error) => {
                println!("init: cannot start '{}': {error}", process.name);
                system.launcher.unavailable(process);
                ProcessState::NotStarted
            }
        };
        // Still a row if it failed: process `badge` is row `badge`.
        debug_assert_eq!(system.table.len() as u64, badge);
        system.table.push(ProcessInfo {
            name: process.name.clone(),
            state,
            priority: process.priority,
            memory_kib: process.memory_kib,
            generation: 1,
        });
    }
    system.serve()
}

/// What init keeps about a process it started.
struct Record {
    /// The original capability to its memory pool: revoking it ends the
    /// process. `None` if it is not running.
    pool: Option<Slot>,
    /// The slot of the endpoint it receives on, if it provides services;
    /// empty while it is stopped.
    endpoint: Option<Slot>,
    /// Whether `endpoint` holds the endpoint now.
    endpoint_live: bool,
    /// The PCI devices it was given (kept across restarts).
    pci: Vec<pci::Device>,
}

/// Everything init serves.
struct System<'a> {
    launcher: launch::Launcher<'a>,
    description: &'a SystemDescription,
    /// Row 0 is init; process `badge` is row `badge`.
    table: Vec<ProcessInfo>,
    /// Process `badge` is record `badge - 1`.
    records: Vec<Record>,
    /// Where a capability sent with a reply waits (emptied before use).
    reply_slot: Slot,
}

impl System<'_> {
    /// Makes the service endpoints of every process that provides a
    /// service (names' is the launcher's), before anyone starts: the
    /// supervisor's receives the others' faults.
    fn prepare(&mut self) -> Result<(), String> {
        self.reply_slot = self.launcher.slot()?;
        for process in &self.description.processes {
            let endpoint = if process.provides.is_empty() || provides_names(process) {
                None
            } else {
                Some(self.launcher.create_endpoint()?.0)
            };
            self.records.push(Record {
                pool: None,
                endpoint_live: endpoint.is_some(),
                endpoint,
                pci: Vec::new(),
            });
        }
        Ok(())
    }

    /// The index of the supervisor, if the description has one.
    fn supervisor(&self) -> Option<usize> {
        let supervisor = self.description.supervisor()?;
        self.description
            .processes
            .iter()
            .position(|process| process.name == supervisor.name)
    }

    /// Whether the supervisor watches process `index`.
    fn supervised(&self, index: usize) -> bool {
        self.supervisor().is_some_and(|supervisor| supervisor != index)
            && !provides_names(&self.description.processes[index])
    }

    /// Starts copy `generation` of process `index` (again: `pci` holds its
    /// devices).
    fn start(&mut self, index: usize, generation: u32, pci: Option<Vec<pci::Device>>) -> Result<(), String> {
        let process = &self.description.processes[index];
        let faults = match self.supervisor() {
            Some(supervisor) if self.supervised(index) => self.records[supervisor]
                .endpoint
                .map(Endpoint)
                .ok_or_else(|| String::from("the supervisor has no endpoint"))?,
            _ => self.launcher.endpoint(),
        };
        let record = &mut self.records[index];
        if let (Some(slot), false) = (record.endpoint, record.endpoint_live) {
            self.launcher.create_endpoint_in(slot)?;
            record.endpoint_live = true;
        }
        let endpoint = record.endpoint.map(Endpoint);
        let (pool, devices) =
            self.launcher
                .start(process, index as u64 + 1, generation, faults, endpoint, pci.as_deref())?;
        record.pool = Some(pool);
        record.pci = devices;
        Ok(())
    }

    /// Ends process `index`; if `keep_endpoint` is false its endpoint goes
    /// too, so its callers get `PeerDied` rather than waiting.
    fn end(&mut self, index: usize, keep_endpoint: bool) {
        let record = &mut self.records[index];
        if let Some(pool) = record.pool.take() {
            self.launcher.tear_down(index as u64 + 1, pool);
        }
        if let (Some(slot), false, true) = (record.endpoint, keep_endpoint, record.endpoint_live) {
            let _ = capability::revoke(Destination::own(slot));
            let _ = capability::delete(Destination::own(slot));
            record.endpoint_live = false;
        }
    }

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

    /// Whether the process with badge `caller` may control processes.
    fn may_control(&self, caller: u64) -> bool {
        caller
            .checked_sub(1)
            .and_then(|index| self.description.processes.get(index as usize))
            .is_some_and(|process| process.control)
    }

    /// The index of process `name`, if `caller` may control processes.
    fn controlled(&self, caller: u64, name: &str) -> Result<usize, ErrorCode> {
        if !self.may_control(caller) {
            return Err(ErrorCode::Denied);
        }
        self.description
            .processes
            .iter()
            .position(|process| process.name == name)
            .ok_or(ErrorCode::NotFound)
    }

    /// Ends process `index` and starts it again with its devices and
    /// endpoint.
    fn restart(&mut self, index: usize) -> Result<InitReply, ErrorCode> {
        self.end(index, true);
        let devices = core::mem::take(&mut self.records[index].pci);
        let name = &self.description.processes[index].name;
        let row = &mut self.table[index + 1];
        row.generation += 1;
        let generation = row.generation;
        match self.start(index, generation, Some(devices)) {
            Ok(()) => {
                let row = &mut self.table[index + 1];
                row.state = ProcessState::Running;
                println!("init: restarted '{name}' (generation {})", row.generation);
                Ok(InitReply::Done)
            }
            Err(error) => {
                self.table[index + 1].state = ProcessState::NotStarted;
                println!("init: cannot restart '{name}': {error}");
                Err(ErrorCode::NotFound)
            }
        }
    }

    /// Ends process `index` until a restart; if `hold`, its endpoint goes
    /// and its services are unavailable.
    fn stop(&mut self, index: usize, hold: bool) -> InitReply {
        self.end(index, !hold);
        let process = &self.description.processes[index];
        if hold {
            self.launcher.unavailable(process);
        }
        self.table[index + 1].state = ProcessState::Stopped;
        println!("init: stopped '{}'{}", process.name, if hold { ", held" } else { "" });
        InitReply::Done
    }

    /// The processes the supervisor watches.
    fn supervised_list(&self) -> InitReply {
        let list = (0..self.description.processes.len())
            .filter(|&index| self.supervised(index))
            .map(|index| {
                let process = &self.description.processes[index];
                let row = &self.table[index + 1];
                SupervisedInfo {
                    badge: index as u64 + 1,
                    name: process.name.clone(),
                    on_failure: process.on_failure,
                    heartbeat_ms: process.heartbeat_ms,
                    priority: process.priority,
                    generation: row.generation,
                    running: row.state == ProcessState::Running,
                }
            })
            .collect();
        InitReply::Supervised(list)
    }

    /// Mints the supervisor's control capability to process `index`'s
    /// endpoint into the reply slot.
    fn control(&self, index: usize) -> Result<Slot, ErrorCode> {
        let record = &self.records[index];
        let endpoint = record
            .endpoint
            .filter(|_| record.endpoint_live)
            .ok_or(ErrorCode::NotFound)?;
        let _ = capability::delete(Destination::own(self.reply_slot));
        capability::mint(
            Endpoint(endpoint),
            Destination::own(self.reply_slot),
            Rights::WRITE,
            CONTROL_BADGE,
        )
        .map_err(|_| ErrorCode::NotFound)?;
        Ok(self.reply_slot)
    }

    /// Which devices each driver owns, for a restarted pci server (only a
    /// process providing "pci" may ask).
    fn pci_owners(&self, caller: u64) -> Result<InitReply, ErrorCode> {
        let asker = caller
            .checked_sub(1)
            .and_then(|index| self.description.processes.get(index as usize));
        if !asker.is_some_and(|process| process.provides.iter().any(|service| service == "pci")) {
            return Err(ErrorCode::Denied);
        }
        let owners = self
            .records
            .iter()
            .enumerate()
            .flat_map(|(index, record)| {
                record.pci.iter().map(move |device| {
                    let address = device.address;
                    ([address.bus, address.device, address.function], index as u64 + 1)
                })
            })
            .collect();
        Ok(InitReply::PciOwners(owners))
    }

    /// A fault or exit of a process init watches: the supervisor is
    /// restarted, the others are reported and stay stopped.
    fn fault(&mut self, badge: u64, words: &[u64]) {
        let Some(index) = (badge as usize).checked_sub(1) else {
            return;
        };
        let Some(row) = self.table.get_mut(index + 1) else {
            return;
        };
        row.state = if words[word::VECTOR] == EXITED {
            println!(
                "init: process '{}' exited with status {}",
                row.name,
                words[word::ERROR_CODE]
            );
            ProcessState::Exited(words[word::ERROR_CODE])
        } else {
            println!(
                "init: process '{}' faulted: vector {} at rip {:#x}, address {:#x}",
                row.name,
                words[word::VECTOR],
                words[word::RIP],
                words[word::ADDRESS]
            );
            ProcessState::Faulted
        };
        if self.supervisor() == Some(index) {
            // Its endpoint stays: the faults that arrive meanwhile wait there.
            let _ = self.restart(index);
        } else if self.table[index + 1].state == ProcessState::Faulted {
            println!("init: '{}' stays stopped", self.table[index + 1].name);
        }
    }

    /// Restarts the machine through the PCI reset control register.
    fn reboot(&self) {
        println!("init: rebooting");
        const RESET_CONTROL: u16 = 0xcf9;
        if let Ok(slot) = self.launcher.slot()
            && let Ok(port) = PortControl(Slot(abi::init::slot::PORT_CONTROL)).create(RESET_CONTROL, 1, slot)
        {
            // Bit 1: hard reset; bit 2: do it now.
            let _ = port.write(RESET_CONTROL, 1, 0x02);
            let _ = port.write(RESET_CONTROL, 1, 0x06);
        }
    }

    /// Serves the process table, memory figures, process control and
    /// power-off, and hears faults.
    fn serve(&mut self) -> u64 {
        let buffer = Buffer::main_thread();
        let endpoint = self.launcher.endpoint();
        let mut received = match endpoint.receive() {
            Ok(received) => received,
            Err(error) => return stopped_serving(error),
        };
        loop {
            if received.message.label == FAULT_LABEL && received.badge & FAULT_BIT != 0 {
                // Leave the thread stopped (anything but FAULT_RESUME), then
                // act: a restart destroys the thread this reply goes to.
                let _ = runtime::ipc::reply(&Message::new(0, &[]));
                self.fault(received.badge & !FAULT_BIT, &received.message.words);
                received = match endpoint.receive() {
                    Ok(received) => received,
                    Err(error) => return stopped_serving(error),
                };
                continue;
            }
            let mut capability = None;
            let answer = match service::decode::<InitRequest>(&received.message, buffer) {
                Some(InitRequest::PowerOff) => {
                    println!("init: powering off");
                    return 0;
                }
                Some(InitRequest::Reboot) if self.may_control(received.badge) => {
                    self.reboot();
                    // Still here: the machine did not reset.
                    Err(ErrorCode::NotFound)
                }
                Some(InitRequest::Reboot) => Err(ErrorCode::Denied),
                Some(InitRequest::Memory) => Ok(self.memory()),
                Some(InitRequest::Processes) => Ok(InitReply::Processes(self.table.clone())),
                Some(InitRequest::Supervised) => Ok(self.supervised_list()),
                Some(InitRequest::PciOwners) => self.pci_owners(received.badge),
                Some(InitRequest::Restart { name }) => self
                    .controlled(received.badge, &name)
                    .and_then(|index| self.restart(index)),
                Some(InitRequest::Stop { name, hold }) => self
                    .controlled(received.badge, &name)
                    .map(|index| self.stop(index, hold)),
                Some(InitRequest::Control { name }) => self
                    .controlled(received.badge, &name)
                    .and_then(|index| self.control(index))
                    .map(|slot| {
                        capability = Some(slot);
                        InitReply::Done
                    }),
                None => Err(ErrorCode::Malformed),
            };
            let reply = match answer {
                Ok(reply) => {
                    let mut message = service::encode_reply::<Init>(&reply, buffer);
                    if let Some(slot) = capability {
                        buffer.set_send_capabilities(&[slot]);
                        message.capabilities = 1;
                    }
                    message
                }
                Err(code) => service::error_reply(code),
            };
            // A caller that died before the reply costs only the reply.
            received = match endpoint.reply_receive(&reply).or_else(|_| endpoint.receive()) {
                Ok(received) => received,
                Err(error) => return stopped_serving(error),
            };
        }
    }
}

/// init can no longer receive: says why; the system then stops.
fn stopped_serving(error: abi::Error) -> u64 {
    println!("init: cannot receive any more: {error:?}");
    1
}

/// Whether `process` is names (whose endpoint init made from the start).
fn provides_names(process: &Process) -> bool {
    process.provides.iter().any(|service| service == "names")
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
