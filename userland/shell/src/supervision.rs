//! The shell's supervision commands, through the supervisor: the process
//! table with generations and restarts, kill, crash, restart, faultlog.

use crate::Console;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::Slots;
use service::init::{Init, InitReply, InitRequest, ProcessState};
use service::{CallError, Client};
use supervisor::{Error, Event, Fault, Reply, Request, Row, State, Supervisor};

/// The commands this module runs, for the help text.
pub const HELP: &str = "  ps         the processes: state, priority, generation, restarts, memory quota
  kill NAME  tears process NAME down; its policy says what follows
  crash NAME FAULT  injects one fault: panic, hang, wild-write, corrupt,
             garbage (next reply) or stuck (next device request)
  restart NAME  ends process NAME and starts a fresh copy (also a held one)
  faultlog   what the supervisor saw and did, with times
";

/// Whether `name` is one of this module's commands.
pub fn is_supervision_command(name: &str) -> bool {
    matches!(name, "ps" | "kill" | "crash" | "restart" | "faultlog")
}

/// The supervisor, looked up on first use.
#[derive(Default)]
pub struct Connection {
    client: Option<Client<Supervisor>>,
}

impl Connection {
    /// Runs supervision command `name` with arguments `rest`.
    pub fn run(&mut self, name: &str, rest: &str, console: &Console, init: &Client<Init>, slots: &Slots) {
        if self.client.is_none() {
            self.client = slots
                .allocate()
                .ok()
                .and_then(|slot| Client::<Supervisor>::connect(slot, console.buffer).ok());
        }
        let supervisor = self.client.as_ref();
        let arguments: Vec<&str> = rest.split_whitespace().collect();
        let result = match (name, arguments.as_slice(), supervisor) {
            ("ps", [], _) => {
                ps(console, init, supervisor);
                return;
            }
            (_, _, None) => Err(String::from("no supervisor service")),
            ("faultlog", [], Some(supervisor)) => faultlog(console, supervisor),
            ("kill", [process], Some(supervisor)) => inject(supervisor, process, Fault::Kill),
            ("crash", [process, fault], Some(supervisor)) => match Fault::from_name(fault) {
                Some(Fault::Kill) | None => Err(format!("unknown fault '{fault}'")),
                Some(fault) => inject(supervisor, process, fault),
            },
            ("restart", [process], Some(supervisor)) => answer(supervisor.call(&Request::Restart {
                name: (*process).into(),
            }))
            .map(|_| format!("restarted {process}\n")),
            _ => Err(String::from("usage: see 'help'")),
        };
        match result {
            Ok(text) => console.write(&text),
            Err(reason) => console.write(&format!("{name}: {reason}\n")),
        }
    }
}

fn inject(supervisor: &Client<Supervisor>, process: &str, fault: Fault) -> Result<String, String> {
    let request = Request::Inject {
        name: process.into(),
        fault,
    };
    answer(supervisor.call(&request)).map(|_| format!("{}: {process}\n", fault.name()))
}

/// The supervisor's answer, or a sentence saying why not.
fn answer(reply: Result<Result<Reply, Error>, CallError>) -> Result<Reply, String> {
    match reply {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(Error::NoSuchProcess)) => Err(String::from("no such supervised process")),
        Ok(Err(Error::Unreachable)) => Err(String::from(
            "it cannot take that fault (no endpoint, or no heartbeat to notice a hang)",
        )),
        Ok(Err(Error::NotRunning)) => Err(String::from("it is not running")),
        Ok(Err(Error::StartFailed)) => Err(String::from("it could not be started again (see faultlog)")),
        Err(error) => Err(format!("{error:?}")),
    }
}

/// init's table, with the supervisor's restart counts and states.
fn ps(console: &Console, init: &Client<Init>, supervisor: Option<&Client<Supervisor>>) {
    let rows: Vec<Row> = match supervisor.map(|supervisor| supervisor.call(&Request::Status)) {
        Some(Ok(Ok(Reply::Status(rows)))) => rows,
        _ => Vec::new(),
    };
    let processes = match init.call(&InitRequest::Processes) {
        Ok(InitReply::Processes(processes)) => processes,
        other => {
            console.write(&format!("ps: {other:?}\n"));
            return;
        }
    };
    let mut table = String::from("NAME             STATE       PRIORITY  GEN  RESTARTS  MEMORY\n");
    for process in processes {
        let row = rows.iter().find(|row| row.name == process.name);
        let state = match (process.state, row.map(|row| row.state)) {
            (ProcessState::NotStarted, _) => String::from("failed"),
            (_, Some(State::Held)) => String::from("held"),
            (_, Some(State::BackingOff(ms))) => format!("wait {ms}ms"),
            (ProcessState::Running, _) => String::from("running"),
            (ProcessState::Faulted, _) => String::from("faulted"),
            (ProcessState::Exited(status), _) => format!("exited {status}"),
            (ProcessState::Stopped, _) => String::from("stopped"),
        };
        let restarts = row.map_or(String::from("-"), |row| format!("{}", row.restarts));
        let memory = if process.memory_kib == 0 {
            String::from("-")
        } else {
            format!("{} KiB", process.memory_kib)
        };
        table.push_str(&format!(
            "{:<16} {:<11} {:>8} {:>4} {:>9}  {memory}\n",
            process.name, state, process.priority, process.generation, restarts
        ));
    }
    console.write(&table);
}

/// Every entry of the supervisor's log.
fn faultlog(console: &Console, supervisor: &Client<Supervisor>) -> Result<String, String> {
    let mut from = 0;
    let mut text = String::new();
    loop {
        let (first, total, entries) = match answer(supervisor.call(&Request::Log { from }))? {
            Reply::Log { first, total, entries } => (first, total, entries),
            _ => return Err(String::from("unexpected reply")),
        };
        if first > from {
            text.push_str(&format!("({} older entries dropped)\n", first - from));
        }
        for entry in &entries {
            let seconds = entry.at_ms / 1000;
            text.push_str(&format!(
                "{:>5}.{:03}s {:<12} gen {:<4} {}\n",
                seconds,
                entry.at_ms % 1000,
                entry.name,
                entry.generation,
                describe(entry.event)
            ));
        }
        from = first + entries.len() as u32;
        if entries.is_empty() || from >= total {
            break;
        }
    }
    console.write(&text);
    Ok(String::new())
}

fn describe(event: Event) -> String {
    match event {
        Event::Faulted { vector, address, rip } => {
            format!("faulted: vector {vector} at rip {rip:#x}, address {address:#x}")
        }
        Event::Exited { status: 101 } => String::from("panicked (exit status 101)"),
        Event::Exited { status } => format!("exited with status {status}"),
        Event::Hung => String::from("missed its heartbeat: killed"),
        Event::Injected(fault) => format!("fault injected: {}", fault.name()),
        Event::Restarted { after_ms } => format!("restarted, {after_ms} ms after the failure"),
        Event::Held { quick_failures: 0 } => String::from("held (its policy)"),
        Event::Held { quick_failures } => format!("held after {quick_failures} quick failures in a row"),
        Event::Rebooting => String::from("rebooting the system (its policy)"),
        Event::SupervisorStarted => String::from("supervisor started"),
    }
}
