//! The supervisor's protocol: what operators (the shell) and fault
//! injectors may ask it.

#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
pub use fault_hooks::Fault;
use serde::{Deserialize, Serialize};
use system_description::OnFailure;

/// The protocol, for `service::Client` and `service::serve`.
pub struct Supervisor;

/// What the supervisor is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Every supervised process.
    Status,
    /// Fault-log entries from number `from` on (as many as fit).
    Log {
        /// The first entry wanted (entries are numbered from 0).
        from: u32,
    },
    /// Injects `fault` into process `name`: [`Fault::Kill`] tears it down
    /// here; every other fault the process carries out itself. What follows
    /// is its `on_failure` policy. The name "supervisor" means the
    /// supervisor itself, which takes a panic or a wild write (after
    /// replying) and is restarted by init.
    Inject {
        /// The process.
        name: String,
        /// The fault.
        fault: Fault,
    },
    /// Ends process `name` and starts a fresh copy, whatever its policy,
    /// and also when it is held.
    Restart {
        /// The process.
        name: String,
    },
}

/// What the supervisor answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Every supervised process.
    Status(Vec<Row>),
    /// Log entries: `first` is the number of the first one; `total` how
    /// many were ever logged (older ones may have been dropped).
    Log {
        /// Number of `entries[0]`.
        first: u32,
        /// Entries logged so far.
        total: u32,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// Done (the fault was injected, or the process restarted).
    Done,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    /// No supervised process has that name.
    NoSuchProcess,
    /// The process has no endpoint to receive an injected fault on.
    Unreachable,
    /// The process is held or being restarted.
    NotRunning,
    /// init could not start it again (the log says why).
    StartFailed,
}

/// One supervised process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Its name.
    pub name: String,
    /// What the supervisor thinks it is doing.
    pub state: State,
    /// Its generation: 1 for the first copy, one more for each start.
    pub generation: u32,
    /// How many times the supervisor restarted it after a failure.
    pub restarts: u32,
    /// How many injected faults it received.
    pub injected: u32,
    /// Its policy.
    pub on_failure: OnFailure,
    /// Its heartbeat deadline, if it has one.
    pub heartbeat_ms: Option<u32>,
}

/// A supervised process's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Running.
    Running,
    /// Failed; a fresh copy starts after a back-off of this many ms.
    BackingOff(u32),
    /// Stopped for good (its policy, or its restart budget ran out).
    Held,
}

/// One event in the fault log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When, in milliseconds since boot.
    pub at_ms: u64,
    /// The process.
    pub name: String,
    /// Its generation when it happened.
    pub generation: u32,
    /// What happened.
    pub event: Event,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A CPU exception stopped it.
    Faulted {
        /// Exception vector.
        vector: u64,
        /// Faulting address (page faults).
        address: u64,
        /// Where.
        rip: u64,
    },
    /// It exited (101: it panicked).
    Exited {
        /// Exit status.
        status: u64,
    },
    /// It missed its heartbeat deadline.
    Hung,
    /// A fault was injected.
    Injected(Fault),
    /// A fresh copy started, this many ms after the failure.
    Restarted {
        /// Failure to the new copy's start.
        after_ms: u64,
    },
    /// It is held: its policy says so, or it failed too often.
    Held {
        /// Failures in a row, each soon after its start.
        quick_failures: u32,
    },
    /// Its policy asks for a reboot.
    Rebooting,
    /// The supervisor itself (re)started.
    SupervisorStarted,
}

impl service::Protocol for Supervisor {
    const SERVICE: &'static str = system_description::SUPERVISOR;
    type Request = Request;
    type Reply = Result<Reply, Error>;

    /// Reading is safe to repeat; injecting and restarting are not.
    fn idempotent(request: &Request) -> bool {
        matches!(request, Request::Status | Request::Log { .. })
    }
}
