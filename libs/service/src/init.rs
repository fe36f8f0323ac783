//! init's own service: the process table and powering off. Every process
//! init starts holds a capability to it (`process::slot::INIT`).

use crate::Protocol;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// init's protocol.
pub struct Init;

/// What init is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitRequest {
    /// The process table.
    Processes,
    /// How much memory is free, in all and in each process's pool.
    Memory,
    /// Stop the system (init exits; the kernel then powers off).
    PowerOff,
    /// Ends process `name` (everything made from its memory pool goes with
    /// it) and starts a fresh copy with the same authority, devices and
    /// service endpoint. The requests from here on need `control = true`
    /// in the asker's description; errors: `Denied`, `NotFound` (no such
    /// process, or it could not be started again).
    Restart {
        /// The process's name in the system description.
        name: String,
    },
    /// Ends process `name` and keeps it stopped until a `Restart`. If
    /// `hold`, its service endpoint goes too (callers get `PeerDied`) and
    /// names answers lookups of its services with "not found"; if not,
    /// callers wait on the endpoint for the next copy.
    Stop {
        /// The process's name.
        name: String,
        /// Whether it stays stopped for good (until an operator restarts it).
        hold: bool,
    },
    /// The processes the supervisor watches: all but init, names and the
    /// supervisor itself.
    Supervised,
    /// The supervisor's capability to process `name`'s endpoint, badged
    /// `control::CONTROL_BADGE`; it comes with the reply. `NotFound` if
    /// the process has no endpoint.
    Control {
        /// The process's name.
        name: String,
    },
    /// Restart the machine.
    Reboot,
    /// Which process owns each claimed PCI function (for a restarted pci
    /// server; only a process providing "pci" may ask).
    PciOwners,
}

/// What init answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitReply {
    /// The process table.
    Processes(Vec<ProcessInfo>),
    /// Done: the process was restarted or stopped; the control capability
    /// came with the reply.
    Done,
    /// The supervised processes, by badge.
    Supervised(Vec<SupervisedInfo>),
    /// Each claimed PCI function (bus, device, function) and its owner's
    /// badge.
    PciOwners(Vec<([u8; 3], u64)>),
    /// Free memory.
    Memory {
        /// KiB not yet given to any pool.
        free_kib: u64,
        /// Each process's name, quota and what is left of it, in KiB.
        pools: Vec<(String, u32, u64)>,
    },
}

/// One row of the process table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its name in the system description.
    pub name: String,
    /// What it is doing.
    pub state: ProcessState,
    /// Its priority.
    pub priority: u8,
    /// Its memory quota in KiB.
    pub memory_kib: u32,
    /// How many times it was started (1 until its first restart).
    pub generation: u32,
}

/// A process the supervisor watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisedInfo {
    /// Its badge: its faults arrive with `FAULT_BIT | badge`.
    pub badge: u64,
    /// Its name.
    pub name: String,
    /// Its policy.
    pub on_failure: system_description::OnFailure,
    /// Its heartbeat deadline.
    pub heartbeat_ms: Option<u32>,
    /// Its scheduling priority.
    pub priority: u8,
    /// Its generation now.
    pub generation: u32,
    /// Whether it is running (not failed to start, not stopped).
    pub running: bool,
}

/// Set in the badge of the fault messages the kernel sends for a process;
/// the rest of the badge is the process's own.
pub const FAULT_BIT: u64 = 1 << 63;

/// A process's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    /// Started and not known to have ended.
    Running,
    /// Stopped by a fault.
    Faulted,
    /// It exited with this status.
    Exited(u64),
    /// Stopped on purpose (a policy, or its restart budget ran out).
    Stopped,
    /// Could not be started (init printed why).
    NotStarted,
}

impl Protocol for Init {
    const SERVICE: &'static str = "init";
    type Request = InitRequest;
    type Reply = InitReply;

    fn idempotent(request: &InitRequest) -> bool {
        matches!(
            request,
            InitRequest::Processes | InitRequest::Memory | InitRequest::Supervised | InitRequest::PciOwners
        )
    }
}
