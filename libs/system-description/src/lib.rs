//! The system description: every process the system runs, and exactly what
//! each may touch.
//!
//! People write it in TOML (`system.toml`); the image builder reads it,
//! [`SystemDescription::check`]s it, and packs it with postcard into the
//! boot archive, where init reads it ([`SystemDescription::from_bytes`]).
//! init gives each process the authority listed here and nothing else.
//!
//! ```toml
//! init = "init"                  # the program the kernel starts first
//!
//! [[process]]
//! name = "serial"                # unique; used in reports
//! program = "serial"             # a program crate under servers/ or userland/
//! priority = 100                 # 0..=127 (init runs at 128)
//! memory_kib = 512               # its memory pool: all it may allocate
//! interrupts = [4]               # interrupt lines it may bind
//! ports = [{ first = 0x3f8, count = 8 }]
//! pci_devices = []               # PCI devices it drives, e.g. [{ vendor = 0x1af4, device = 0x1001 }]
//! provides = ["serial"]          # services it registers with names
//! uses = []                      # services it may look up and call
//! on_failure = "restart"         # hold | restart | reboot (the supervisor's policy)
//! heartbeat_ms = 300             # the supervisor kills it if a heartbeat waits longer
//! control = false                # may ask init to stop and start processes
//! ```

#![no_std]

extern crate alloc;

mod check;

pub use check::Problem;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The whole description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDescription {
    /// The program the kernel starts as the first process.
    pub init: String,
    /// Memory all processes' pools may add up to, in KiB.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_kib: u32,
    /// The processes init starts, in order.
    #[serde(default, rename = "process")]
    pub processes: Vec<Process>,
}

fn default_memory_budget() -> u32 {
    256 * 1024
}

/// One process and its authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Unique name, for reports and the process table.
    pub name: String,
    /// The program it runs.
    pub program: String,
    /// Scheduling priority, below init's.
    pub priority: u8,
    /// Size of its memory pool, in KiB.
    pub memory_kib: u32,
    /// Interrupt lines it may bind.
    #[serde(default)]
    pub interrupts: Vec<u8>,
    /// I/O port ranges it may use.
    #[serde(default)]
    pub ports: Vec<PortRange>,
    /// Device memory it may map.
    #[serde(default)]
    pub device_memory: Vec<DeviceMemory>,
    /// PCI devices it drives: init claims each from the pci server (the
    /// next free function with these ids) and gives the driver its
    /// interrupt and BARs, after the capabilities above.
    #[serde(default)]
    pub pci_devices: Vec<PciDevice>,
    /// Services it registers with names.
    #[serde(default)]
    pub provides: Vec<String>,
    /// Services it may look up.
    #[serde(default)]
    pub uses: Vec<String>,
    /// What the supervisor does when it faults, exits, hangs or is killed.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// If set, the supervisor sends it a heartbeat and kills it if the
    /// answer takes longer than this many milliseconds (a hang). Needs a
    /// service endpoint (`provides`).
    #[serde(default)]
    pub heartbeat_ms: Option<u32>,
    /// It may ask init to stop, start and inspect processes and to reboot
    /// (the supervisor).
    #[serde(default)]
    pub control: bool,
}

/// A range of I/O ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Number of ports.
    pub count: u16,
}

/// A run of device-memory pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceMemory {
    /// Physical address of the first page.
    pub address: u64,
    /// Number of 4 KiB pages.
    pub pages: u32,
}

/// A PCI function, by its ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciDevice {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

/// What the supervisor does when a process fails (faults, exits, misses
/// its heartbeat or is killed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// It stays stopped, and its services are reported unavailable.
    #[default]
    Hold,
    /// A fresh copy is started, within the restart budget.
    Restart,
    /// The whole system restarts.
    Reboot,
}

/// The service the supervisor provides; the process providing it hears
/// the faults of every other process but names.
pub const SUPERVISOR: &str = "supervisor";
/// Heartbeat deadlines the description may ask for, in milliseconds.
pub const HEARTBEAT_MS: core::ops::RangeInclusive<u32> = 50..=60_000;

impl SystemDescription {
    /// Reads a description packed by [`SystemDescription::to_bytes`].
    ///
    /// # Errors
    /// postcard's error for bytes that are not a description.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Packs the description for the boot archive.
    ///
    /// # Errors
    /// postcard's error (none for a description that fits in memory).
    pub fn to_bytes(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// The process named `name`.
    pub fn process(&self, name: &str) -> Option<&Process> {
        self.processes.iter().find(|process| process.name == name)
    }

    /// The supervisor: the process that provides [`SUPERVISOR`].
    pub fn supervisor(&self) -> Option<&Process> {
        self.provider(SUPERVISOR)
    }

    /// The process that provides `service`.
    pub fn provider(&self, service: &str) -> Option<&Process> {
        self.processes
            .iter()
            .find(|process| process.provides.iter().any(|provided| provided == service))
    }
}

impl Process {
    /// Its memory pool in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_kib) * 1024
    }
}

/// The highest priority a process may have: init's own is 128 and a
/// process never outranks the one that starts it.
pub const MAX_PRIORITY: u8 = 127;

/// A name for a service or process: what [`check`](SystemDescription::check) accepts.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}
