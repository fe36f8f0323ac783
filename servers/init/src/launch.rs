//! Starting one process of the system description with exactly the
//! authority it lists.

use abi::init::slot;
use abi::{Error, Rights};
use alloc::string::String;
use alloc::vec::Vec;
use boot_archive::Archive;
use core::cell::OnceCell;
use pci::{Device, Pci, Resource};
use runtime::capability::{
    self, AddressSpace, CSpace, Destination, DeviceMemoryControl, Endpoint, IrqControl, Memory, PortControl, Slot,
    Slots,
};
use runtime::ipc::Buffer;
use runtime::process::Spawn;
use service::Client;
use service::names::{Names, NamesRequest};
use service::process::{CSPACE_SLOTS, Start, slot as child};
use system_description::Process;

const MEMORY: Memory = Memory(Slot(slot::MEMORY));
const OWN_SPACE: AddressSpace = AddressSpace(Slot(slot::ADDRESS_SPACE));

/// What starting processes needs.
pub struct Launcher<'a> {
    archive: &'a Archive<'static>,
    slots: Slots,
    /// init's endpoint: its service and every process's faults.
    endpoint: Endpoint,
    /// names' endpoint, which the process providing "names" receives on.
    names: Endpoint,
    /// pci's endpoint, looked up the first time a driver needs a device.
    pci: OnceCell<Slot>,
}

impl<'a> Launcher<'a> {
    /// Makes init's and names' endpoints.
    ///
    /// # Errors
    /// A failed syscall.
    pub fn new(archive: &'a Archive<'static>) -> Result<Self, Error> {
        let slots = Slots::new(slot::FIRST_FREE, FIRST_PROCESS_SLOT);
        let endpoint = MEMORY.create_endpoint(slots.allocate()?)?;
        let names = MEMORY.create_endpoint(slots.allocate()?)?;
        Ok(Self {
            archive,
            slots,
            endpoint,
            names,
            pci: OnceCell::new(),
        })
    }

    /// init's endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Makes an endpoint from init's memory: one that outlives the process
    /// that receives on it.
    ///
    /// # Errors
    /// A message saying what failed.
    pub fn create_endpoint(&self) -> Result<Endpoint, String> {
        self.create_endpoint_in(self.slot()?)
    }

    /// [`Launcher::create_endpoint`] into the empty `slot`.
    ///
    /// # Errors
    /// A message saying what failed.
    pub fn create_endpoint_in(&self, slot: Slot) -> Result<Endpoint, String> {
        MEMORY
            .create_endpoint(slot)
            .map_err(|error| alloc::format!("endpoint: {error:?}"))
    }

    /// Starts copy `generation` of `process`, whose capabilities carry
    /// `badge`; its faults go to
    /// `faults` (init's endpoint or the supervisor's) badged
    /// `FAULT_BIT | badge`, and it receives on `service_endpoint`. Tells
    /// names what it may provide and use.
    ///
    /// `claimed` holds the PCI devices of an earlier start of the same
    /// process (a restart keeps its devices); `None` claims them from pci.
    /// Every capability init keeps for the process lies in its own range
    /// of init's slots ([`process_slots`]), which [`Launcher::tear_down`]
    /// empties. Returns the slot of the process's memory pool (init keeps
    /// the original: revoking it ends the process) and its PCI devices.
    ///
    /// # Errors
    /// A message saying what failed.
    pub fn start(
        &self,
        process: &Process,
        badge: u64,
        generation: u32,
        faults: Endpoint,
        service_endpoint: Option<Endpoint>,
        claimed: Option<&[Device]>,
    ) -> Result<(Slot, Vec<Device>), String> {
        let failed = |what: &str, error: Error| alloc::format!("{what}: {error:?}");
        let slots = process_slots(badge).ok_or_else(|| String::from("init has no slots for so many processes"))?;
        let slot = || {
            slots
                .allocate()
                .map_err(|_| String::from("the process's range of init's slots is full"))
        };
        let image = self
            .archive
            .find(&process.program)
            .ok_or_else(|| alloc::format!("no program '{}' in the boot archive", process.program))?
            .data;
        let pool = MEMORY
            .create_pool(slot()?, process.memory_bytes())
            .map_err(|error| failed("memory pool", error))?;
        let fault_endpoint = Endpoint(slot()?);
        capability::mint(
            faults,
            Destination::own(fault_endpoint.0),
            Rights::WRITE,
            service::init::FAULT_BIT | badge,
        )
        .map_err(|error| failed("fault endpoint", error))?;
        let pci_devices = match claimed {
            Some(devices) => devices.to_vec(),
            None => self.claim_pci_devices(process, badge)?,
        };
        let pci_resources: Vec<Resource> = pci_devices.iter().flat_map(pci::resources).collect();
        let devices = (process.interrupts.len() + process.ports.len())
            + process
                .device_memory
                .iter()
                .map(|region| region.pages as usize)
                .sum::<usize>()
            + pci_resources.len();
        let first_free = child::FIRST_DEVICE.0 + devices as u64;
        let spawn = Spawn {
            memory: pool,
            own_address_space: OWN_SPACE,
            slots: &slots,
            cspace_slots: CSPACE_SLOTS,
            fault_endpoint: Some(fault_endpoint),
        };
        let started = spawn
            .spawn(
                image,
                Start {
                    first_free,
                    badge: badge as u32,
                    generation,
                }
                .arguments(),
            )
            .map_err(|error| alloc::format!("{error:?}"))?;
        let give = |source: Slot, into: Slot| capability::copy(source, Destination::in_cspace(started.cspace, into.0));
        let provides_names = process.provides.iter().any(|service| service == "names");
        if provides_names {
            give(self.names.0, child::NAMES).map_err(|error| failed("names endpoint", error))?;
        } else {
            capability::mint(
                self.names,
                Destination::in_cspace(started.cspace, child::NAMES.0),
                Rights::WRITE | Rights::GRANT,
                badge,
            )
            .map_err(|error| failed("names capability", error))?;
        }
        capability::mint(
            self.endpoint,
            Destination::in_cspace(started.cspace, child::INIT.0),
            Rights::WRITE,
            badge,
        )
        .map_err(|error| failed("init capability", error))?;
        if let Some(endpoint) = service_endpoint {
            give(endpoint.0, child::ENDPOINT).map_err(|error| failed("service endpoint", error))?;
        }
        give(pool.0, child::MEMORY).map_err(|error| failed("pool", error))?;
        give(started.thread.0, child::THREAD).map_err(|error| failed("thread", error))?;
        give(started.address_space.0, child::ADDRESS_SPACE).map_err(|error| failed("address space", error))?;
        give(started.cspace.0, child::CSPACE).map_err(|error| failed("cspace", error))?;
        self.give_devices(process, &pci_resources, started.cspace, slot()?)
            .map_err(|error| failed("devices", error))?;
        started
            .thread
            .set_priority(process.priority)
            .map_err(|error| failed("priority", error))?;
        if !provides_names {
            let names = Client::<Names>::with_endpoint(self.names.0, Buffer::main_thread());
            let allow = NamesRequest::Allow {
                client: badge,
                provides: process.provides.clone(),
                uses: process.uses.clone(),
            };
            names
                .call(&allow)
                .map_err(|error| alloc::format!("telling names: {error:?}"))?;
        }
        started.start().map_err(|error| failed("start", error))?;
        Ok((pool.0, pci_devices))
    }

    /// Ends the process started with `badge` whose pool is `pool`: revoking
    /// the pool destroys everything made from it (threads, address space,
    /// CSpace with its device capabilities, frames, endpoints it made);
    /// then every capability init kept for it goes, and its slots are free
    /// for the next start.
    pub fn tear_down(&self, badge: u64, pool: Slot) {
        let _ = capability::revoke(Destination::own(pool));
        if let Some(range) = process_slot_range(badge) {
            for index in range {
                // Most are empty by now; that error means nothing.
                let _ = capability::delete(Destination::own(Slot(index)));
            }
        }
    }

    /// Tells names that the services `process` provides will not come, so
    /// their clients get an error rather than waiting for ever.
    pub fn unavailable(&self, process: &Process) {
        if process.provides.is_empty() {
            return;
        }
        let names = Client::<Names>::with_endpoint(self.names.0, Buffer::main_thread());
        let request = NamesRequest::Unavailable {
            services: process.provides.clone(),
        };
        if let Err(error) = names.call(&request) {
            runtime::println!("init: cannot tell names: {error:?}");
        }
    }

    /// Claims the process's PCI devices from pci for it.
    fn claim_pci_devices(&self, process: &Process, badge: u64) -> Result<Vec<Device>, String> {
        let mut devices = Vec::new();
        if process.pci_devices.is_empty() {
            return Ok(devices);
        }
        let buffer = Buffer::main_thread();
        let pci = match self.pci.get() {
            Some(&slot) => slot,
            None => {
                let slot = self.slot()?;
                service::names::look_up_through(self.names.0, "pci", slot, buffer)
                    .map_err(|error| alloc::format!("looking up pci: {error:?}"))?;
                *self.pci.get_or_init(|| slot)
            }
        };
        let pci = Client::<Pci>::with_endpoint(pci, buffer);
        for wanted in &process.pci_devices {
            let claim = pci::Request::Claim {
                vendor: wanted.vendor,
                device: wanted.device,
                owner: badge,
            };
            match pci.call(&claim) {
                Ok(pci::Reply::Device(device)) => devices.push(device),
                Ok(_) => return Err(String::from("pci answered a claim with something else")),
                Err(error) => {
                    return Err(alloc::format!(
                        "no free PCI device {:04x}:{:04x} ({error:?})",
                        wanted.vendor,
                        wanted.device
                    ));
                }
            }
        }
        Ok(devices)
    }

    /// Puts the process's interrupt, port and device-memory capabilities
    /// in its CSpace from `FIRST_DEVICE` on, in the description's order,
    /// then those of its PCI devices. Each is made in `scratch` and moved.
    fn give_devices(
        &self,
        process: &Process,
        pci_resources: &[Resource],
        cspace: CSpace,
        scratch: Slot,
    ) -> Result<(), Error> {
        let described = process
            .interrupts
            .iter()
            .map(|&line| Resource::Interrupt(line))
            .chain(process.ports.iter().map(|range| Resource::Ports {
                bar: 0,
                first: range.first,
                count: range.count,
            }))
            .chain(process.device_memory.iter().flat_map(|region| {
                (0..u64::from(region.pages)).map(|page| Resource::MemoryPage {
                    bar: 0,
                    address: region.address + page * 4096,
                })
            }));
        for (next, resource) in (child::FIRST_DEVICE.0..).zip(described.chain(pci_resources.iter().copied())) {
            let made = match resource {
                Resource::Interrupt(line) => IrqControl(Slot(slot::IRQ_CONTROL)).create(line, scratch)?.0,
                Resource::Ports { first, count, .. } => {
                    PortControl(Slot(slot::PORT_CONTROL)).create(first, count, scratch)?.0
                }
                Resource::MemoryPage { address, .. } => {
                    DeviceMemoryControl(Slot(slot::DEVICE_MEMORY_CONTROL))
                        .create(address, scratch)?
                        .0
                }
            };
            capability::move_to(made, Destination::in_cspace(cspace, next))?;
        }
        Ok(())
    }

    /// One of init's own slots, for what lives as long as init.
    pub fn slot(&self) -> Result<Slot, String> {
        self.slots
            .allocate()
            .map_err(|_| String::from("init has no free slots"))
    }
}

/// Slots of init's CSpace for each process's capabilities: the pool, the
/// fault endpoint, what `Spawn` keeps (address space, CSpace, thread, the
/// CSpace of its frames, a scratch slot) and a scratch slot for devices.
const SLOTS_PER_PROCESS: u64 = 8;
/// The first of them; below are init's own.
const FIRST_PROCESS_SLOT: u64 = 256;

/// The range of init's slots that holds process `badge`'s capabilities.
fn process_slot_range(badge: u64) -> Option<core::ops::Range<u64>> {
    let first = FIRST_PROCESS_SLOT.checked_add(badge.checked_mul(SLOTS_PER_PROCESS)?)?;
    let end = first + SLOTS_PER_PROCESS;
    (end <= abi::init::CSPACE_SLOTS).then_some(first..end)
}

/// A fresh allocator over [`process_slot_range`] (whose slots
/// [`Launcher::tear_down`] has emptied).
pub fn process_slots(badge: u64) -> Option<Slots> {
    process_slot_range(badge).map(|range| Slots::new(range.start, range.end))
}
