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
    /// it) and starts a fresh copy with the same authority and devices.
    /// Only a process whose description says `control = true` may ask.
    /// Errors: `Denied`, `NotFound` (no such process, or it could not be
    /// started again).
    Restart {
        /// The process's name in the system description.
        name: String,
    },
}

/// What init answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitReply {
    /// The process table.
    Processes(Vec<ProcessInfo>),
    /// The process was restarted.
    Restarted,
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

/// A process's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    /// Started and not known to have ended.
    Running,
    /// Stopped by a fault.
    Faulted,
    /// Could not be started (init printed why).
    NotStarted,
}

impl Protocol for Init {
    const SERVICE: &'static str = "init";
    type Request = InitRequest;
    type Reply = InitReply;

    fn idempotent(request: &InitRequest) -> bool {
        !matches!(request, InitRequest::PowerOff)
    }
}
