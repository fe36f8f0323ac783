//! The supervisor: the fault handler of every process but init, names and
//! itself.
//!
//! The threads share one table of the processes it watches:
//! - the main thread receives on the supervisor's endpoint, which init
//!   made: the kernel's fault messages (badged `FAULT_BIT | badge`), a
//!   tick from the ticker, and requests from operators and fault
//!   injectors ([`supervisor::Request`]). On a failure it applies the
//!   process's policy through init, which holds every process's authority:
//!   restart (tear down, start a fresh copy with the same devices and
//!   endpoint), hold, or reboot;
//! - a pinger thread for each process calls it, if it has a heartbeat
//!   deadline, through its control capability, and delivers injected
//!   faults;
//! - the ticker wakes the main thread, which then kills a process whose
//!   heartbeat has waited past its deadline and starts the copies whose
//!   back-off is over. A process that spins starves those of lower
//!   priority, whose heartbeats then wait too: only an overdue process
//!   with no higher-priority one also waiting is taken to be hung.
//!
//! Restart budget: a failure of a copy that never answered its supervisor
//! and lived under [`QUICK_MS`] is quick; each quick failure in a row
//! doubles the back-off before the next start (from [`FIRST_BACKOFF_MS`]),
//! and after [`MAX_QUICK_FAILURES`] the process is held and reported.
//!
//! If the supervisor itself dies, init starts it again on the same
//! endpoint: faults that arrive meanwhile wait there, and the new copy
//! reads the table from init. Its fault log and restart counts start
//! afresh. To test this, a fault injected into the process named
//! "supervisor" (a panic or a wild write) strikes the supervisor itself.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Rights;
use abi::fault::{EXITED, FAULT_LABEL, word};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::{self, Destination, Endpoint, Slot, Slots};
use runtime::ipc::{Buffer, Message};
use runtime::println;
use runtime::syscall::{sleep_ms, uptime_ms};
use service::control::{Control, ControlReply, ControlRequest};
use service::init::{FAULT_BIT, Init, InitReply, InitRequest};
use service::process::{CSPACE_SLOTS, Start, slot};
use service::{Client, ErrorCode};
use spin::Mutex;
use supervisor::{Entry, Error, Event, Fault, Reply, Request, Row, State, Supervisor};
use system_description::OnFailure;

runtime::entry!(main, heap_kib = 256);

/// The badge of the ticker's capability to the endpoint.
const TICK_BADGE: u64 = 1 << 61;
/// How often the ticker wakes the main thread.
const TICK_MS: u64 = 10;
/// How often the pinger sends heartbeats.
const PING_MS: u64 = 20;
/// A failure sooner than this after the start, by a copy that never
/// answered the supervisor, is quick.
const QUICK_MS: u64 = 2_000;
/// The back-off after the first quick failure; it doubles with each.
const FIRST_BACKOFF_MS: u64 = 50;
/// Quick failures in a row after which a process is held.
const MAX_QUICK_FAILURES: u32 = 5;
/// The least time a fresh copy gets to answer its first heartbeat: it
/// must start and set up its device first.
const START_GRACE_MS: u64 = 1_000;
/// A heartbeat that has waited longer than this shows its process busy (or
/// hung): processes of lower priority may be starved by it.
const BUSY_MS: u64 = 50;
/// Fault-log entries kept.
const LOG_CAPACITY: usize = 1024;
/// Log entries in one reply (so that it fits in a message).
const LOG_PAGE: usize = 10;

/// What the supervisor knows about one process.
struct Watched {
    badge: u64,
    name: String,
    on_failure: OnFailure,
    heartbeat_ms: Option<u32>,
    priority: u8,
    generation: u32,
    restarts: u32,
    /// Faults injected into it (delivered).
    injected: u32,
    state: State,
    /// When the current copy started.
    started_ms: u64,
    /// Whether the current copy answered a control message.
    answered: bool,
    quick_failures: u32,
    /// When it failed last (for the log's restart delay).
    failed_ms: u64,
    /// When a back-off ends.
    backoff_until_ms: u64,
    /// Its control capability (`None`: it has no endpoint).
    control: Option<Slot>,
    /// Since when the pinger has been waiting for it, and for which copy.
    waiting_since: Option<(u64, u32)>,
    /// A fault for the pinger to deliver.
    pending: Option<Fault>,
}

/// The table and the log, shared by the three threads.
struct Shared {
    watched: Vec<Watched>,
    log: VecDeque<Entry>,
    /// Entries ever logged.
    logged: u32,
}

impl Shared {
    /// Logs `event` of process `index`.
    fn log(&mut self, index: usize, event: Event) {
        let Some(process) = self.watched.get(index) else { return };
        let (name, generation) = (process.name.clone(), process.generation);
        self.append(name, generation, event);
    }

    fn append(&mut self, name: String, generation: u32, event: Event) {
        let entry = Entry {
            at_ms: uptime_ms(),
            name,
            generation,
            event,
        };
        println!(
            "supervisor: {} (generation {}): {:?}",
            entry.name, entry.generation, event
        );
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
        self.logged += 1;
    }
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    watched: Vec::new(),
    log: VecDeque::new(),
    logged: 0,
});

fn main() -> u64 {
    match run() {
        Ok(()) => 0,
        Err(error) => {
            println!("supervisor: {error}");
            1
        }
    }
}

fn run() -> Result<(), &'static str> {
    let start = Start::get();
    let slots = Slots::new(start.first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let endpoint = Endpoint(slot::ENDPOINT);
    let init = Client::<Init>::with_endpoint(slot::INIT, buffer);
    let Ok(InitReply::Supervised(list)) = init.call(&InitRequest::Supervised) else {
        return Err("init did not say whom to supervise");
    };
    {
        let mut shared = SHARED.lock();
        for process in list {
            let control = slots.allocate().map_err(|_| "no slots")?;
            let reachable = fetch_control(&init, buffer, &process.name, control);
            shared.watched.push(Watched {
                badge: process.badge,
                name: process.name,
                on_failure: process.on_failure,
                heartbeat_ms: process.heartbeat_ms,
                priority: process.priority,
                generation: process.generation,
                restarts: 0,
                injected: 0,
                state: if process.running { State::Running } else { State::Held },
                started_ms: uptime_ms(),
                answered: false,
                quick_failures: 0,
                failed_ms: 0,
                backoff_until_ms: 0,
                control: reachable.then_some(control),
                waiting_since: None,
                pending: None,
            });
        }
        println!(
            "supervisor: watching {} processes (generation {})",
            shared.watched.len(),
            start.generation
        );
        shared.append(
            String::from(system_description::SUPERVISOR),
            start.generation,
            Event::SupervisorStarted,
        );
    }
    let ticker = Endpoint(slots.allocate().map_err(|_| "no slots")?);
    capability::mint(endpoint, Destination::own(ticker.0), Rights::WRITE, TICK_BADGE)
        .map_err(|_| "cannot make the ticker's capability")?;
    let spawner = service::process::thread_spawner(&slots);
    spawner
        .spawn(move |_| {
            loop {
                sleep_ms(TICK_MS);
                let _ = ticker.send(&Message::new(0, &[]));
            }
        })
        .map_err(|_| "cannot start the ticker")?;
    let watched = SHARED.lock().watched.len();
    for index in 0..watched {
        spawner
            .spawn(move |buffer| pinger(index, buffer))
            .map_err(|_| "cannot start a pinger")?;
    }
    if service::names::register(system_description::SUPERVISOR, endpoint.0, buffer).is_err() {
        return Err("names refused the registration");
    }
    let mut main = Main {
        init,
        buffer,
        receive: slots.allocate().map_err(|_| "no slots")?,
    };
    main.serve(endpoint)
}

/// Asks init for the control capability to process `name`, into `slot`.
fn fetch_control(init: &Client<Init>, buffer: Buffer, name: &str, slot: Slot) -> bool {
    let _ = capability::delete(Destination::own(slot));
    buffer.set_receive_slots(&[slot]);
    let reply = init.call(&InitRequest::Control { name: name.into() });
    buffer.set_receive_slots(&[]);
    matches!(reply, Ok(InitReply::Done)) && capability::identify(slot).is_ok()
}

/// A pinger thread: heartbeats and injected faults for process `index`.
fn pinger(index: usize, buffer: Buffer) -> u64 {
    loop {
        // Pick what to send, and note that we wait.
        let picked = {
            let mut shared = SHARED.lock();
            let process = &mut shared.watched[index];
            match (process.state, process.control) {
                (State::Running, Some(control)) => {
                    let request = match process.pending.take() {
                        Some(fault) => Some(ControlRequest::Inject(fault)),
                        None => process.heartbeat_ms.map(|_| ControlRequest::Heartbeat),
                    };
                    if request.is_some() {
                        process.waiting_since = Some((uptime_ms(), process.generation));
                    }
                    request.map(|request| (request, control, process.generation))
                }
                _ => None,
            }
        };
        if let Some((request, control, generation)) = picked {
            let answer = Client::<Control>::with_endpoint(control, buffer).call(&request);
            let mut shared = SHARED.lock();
            let process = &mut shared.watched[index];
            process.waiting_since = None;
            if process.generation == generation {
                if answer.is_ok() {
                    process.answered = true;
                }
                if let (ControlRequest::Inject(fault), Ok(ControlReply::Injected)) = (request, answer) {
                    process.injected += 1;
                    shared.log(index, Event::Injected(fault));
                }
            }
        }
        sleep_ms(PING_MS);
    }
}

/// The main thread's state.
struct Main {
    init: Client<Init>,
    buffer: Buffer,
    /// Receive slot for capabilities sent with requests (none are expected).
    receive: Slot,
}

impl Main {
    fn serve(&mut self, endpoint: Endpoint) -> Result<(), &'static str> {
        loop {
            self.buffer.set_receive_slots(&[self.receive]);
            let received = endpoint.receive().map_err(|_| "the endpoint failed")?;
            if received.message.capabilities > 0 {
                let _ = capability::delete(Destination::own(self.receive));
            }
            if received.badge == TICK_BADGE {
                self.tick();
            } else if received.message.label == FAULT_LABEL && received.badge & FAULT_BIT != 0 {
                // Leave the thread stopped; the process is torn down next.
                let _ = runtime::ipc::reply(&Message::new(0, &[]));
                self.fault(received.badge & !FAULT_BIT, &received.message.words);
            } else {
                let request = service::decode::<Request>(&received.message, self.buffer);
                let reply = match &request {
                    Some(request) => service::encode_reply::<Supervisor>(&self.handle(request.clone()), self.buffer),
                    None => service::error_reply(ErrorCode::Malformed),
                };
                let _ = runtime::ipc::reply(&reply);
                if let Some(Request::Inject { name, fault }) = request
                    && name == system_description::SUPERVISOR
                    && self_inflicted(fault)
                {
                    println!("supervisor: injecting {} into myself", fault.name());
                    fault_hooks::strike(fault);
                }
            }
        }
    }

    /// A fault or exit reported by the kernel.
    fn fault(&mut self, badge: u64, words: &[u64]) {
        let index = SHARED.lock().watched.iter().position(|process| process.badge == badge);
        let Some(index) = index else { return };
        let event = if words[word::VECTOR] == EXITED {
            Event::Exited {
                status: words[word::ERROR_CODE],
            }
        } else {
            Event::Faulted {
                vector: words[word::VECTOR],
                address: words[word::ADDRESS],
                rip: words[word::RIP],
            }
        };
        self.failed(index, event);
    }

    /// Kills processes whose heartbeat is overdue; starts those whose
    /// back-off is over.
    fn tick(&mut self) {
        let now = uptime_ms();
        let (hung, due): (Vec<usize>, Vec<usize>) = {
            let shared = SHARED.lock();
            let waiting = |process: &Watched| {
                process.state == State::Running
                    && process
                        .waiting_since
                        .is_some_and(|(_, generation)| generation == process.generation)
            };
            let overdue = |process: &Watched| {
                let since = process.waiting_since.map_or(now, |(since, _)| since);
                let deadline = |deadline: u32| match process.answered {
                    true => u64::from(deadline),
                    false => u64::from(deadline).max(START_GRACE_MS),
                };
                waiting(process)
                    && process
                        .heartbeat_ms
                        .is_some_and(|limit| now.saturating_sub(since) > deadline(limit))
            };
            // Busy: its heartbeat has waited a while (a healthy server
            // answers at once when it gets the processor), or it is a fresh
            // copy that may still be starting.
            let busy = |process: &Watched| {
                let waited = process.waiting_since.map_or(0, |(since, _)| now.saturating_sub(since));
                let starting = process.state == State::Running
                    && !process.answered
                    && now.saturating_sub(process.started_ms) < START_GRACE_MS;
                (waiting(process) && waited > BUSY_MS) || starting
            };
            let starved_by_another = |process: &Watched| {
                shared
                    .watched
                    .iter()
                    .any(|other| other.priority > process.priority && busy(other))
            };
            let hung = shared
                .watched
                .iter()
                .enumerate()
                .filter(|(_, process)| overdue(process) && !starved_by_another(process))
                .map(|(index, _)| index)
                .collect();
            let due = shared
                .watched
                .iter()
                .enumerate()
                .filter(|(_, process)| matches!(process.state, State::BackingOff(_)) && process.backoff_until_ms <= now)
                .map(|(index, _)| index)
                .collect();
            (hung, due)
        };
        for &index in &hung {
            self.failed(index, Event::Hung);
        }
        for index in due {
            let _ = self.restart(index, true);
        }
    }

    /// Process `index` failed: log it and apply its policy.
    fn failed(&mut self, index: usize, event: Event) {
        let now = uptime_ms();
        let (name, policy, quick_failures) = {
            let mut shared = SHARED.lock();
            shared.log(index, event);
            let process = &mut shared.watched[index];
            if process.state != State::Running {
                return;
            }
            let quick = !process.answered && now.saturating_sub(process.started_ms) < QUICK_MS;
            process.quick_failures = if quick { process.quick_failures + 1 } else { 0 };
            process.failed_ms = now;
            (process.name.clone(), process.on_failure, process.quick_failures)
        };
        match policy {
            OnFailure::Restart if quick_failures < MAX_QUICK_FAILURES => {
                if quick_failures == 0 {
                    let _ = self.restart(index, true);
                    return;
                }
                let delay = FIRST_BACKOFF_MS << (quick_failures - 1);
                // Stop it now (a hung copy would run on), keeping its
                // endpoint: callers wait for the next copy.
                let _ = self.init.call(&InitRequest::Stop { name, hold: false });
                restart_clocks();
                let mut shared = SHARED.lock();
                let process = &mut shared.watched[index];
                process.state = State::BackingOff(delay as u32);
                process.backoff_until_ms = now + delay;
            }
            OnFailure::Reboot => {
                SHARED.lock().log(index, Event::Rebooting);
                let _ = self.init.call(&InitRequest::Reboot);
            }
            OnFailure::Restart | OnFailure::Hold => {
                let _ = self.init.call(&InitRequest::Stop { name, hold: true });
                restart_clocks();
                let mut shared = SHARED.lock();
                shared.watched[index].state = State::Held;
                shared.log(index, Event::Held { quick_failures });
            }
        }
    }

    /// Starts a fresh copy of process `index` (after a failure if
    /// `failure`, else on request).
    fn restart(&mut self, index: usize, failure: bool) -> Result<(), Error> {
        let (name, was_held, control) = {
            let shared = SHARED.lock();
            let process = &shared.watched[index];
            (process.name.clone(), process.state == State::Held, process.control)
        };
        let restarted = self.init.call(&InitRequest::Restart { name: name.clone() });
        restart_clocks();
        let mut control = control;
        if was_held && let Some(slot) = control {
            // Holding it took its endpoint, and the control capability.
            if !fetch_control(&self.init, self.buffer, &name, slot) {
                control = None;
            }
        }
        let now = uptime_ms();
        let mut shared = SHARED.lock();
        let process = &mut shared.watched[index];
        process.control = control;
        match restarted {
            Ok(_) => {
                process.generation += 1;
                // A heartbeat the old copy had not taken waits for the new one.
                process.waiting_since = process.waiting_since.map(|_| (now, process.generation));
                process.state = State::Running;
                process.started_ms = now;
                process.answered = false;
                process.pending = None;
                let after_ms = now.saturating_sub(process.failed_ms);
                if failure {
                    process.restarts += 1;
                    shared.log(index, Event::Restarted { after_ms });
                }
                Ok(())
            }
            Err(_) => {
                process.state = State::Held;
                shared.log(index, Event::Held { quick_failures: 0 });
                Err(Error::StartFailed)
            }
        }
    }

    /// An operator's or fault injector's request.
    fn handle(&mut self, request: Request) -> Result<Reply, Error> {
        match request {
            Request::Status => Ok(Reply::Status(
                SHARED
                    .lock()
                    .watched
                    .iter()
                    .map(|process| Row {
                        name: process.name.clone(),
                        state: process.state,
                        generation: process.generation,
                        restarts: process.restarts,
                        injected: process.injected,
                        on_failure: process.on_failure,
                        heartbeat_ms: process.heartbeat_ms,
                    })
                    .collect(),
            )),
            Request::Log { from } => {
                let shared = SHARED.lock();
                let first = shared.logged - shared.log.len() as u32;
                let skip = from.saturating_sub(first) as usize;
                Ok(Reply::Log {
                    first: first.max(from).min(shared.logged),
                    total: shared.logged,
                    entries: shared.log.iter().skip(skip).take(LOG_PAGE).cloned().collect(),
                })
            }
            Request::Inject { name, fault } if name == system_description::SUPERVISOR => {
                // Carried out after the reply (see `serve`); init restarts us.
                if self_inflicted(fault) {
                    Ok(Reply::Done)
                } else {
                    Err(Error::Unreachable)
                }
            }
            Request::Inject { name, fault } => {
                let index = self.find(&name)?;
                let mut shared = SHARED.lock();
                let process = &mut shared.watched[index];
                if process.state != State::Running {
                    return Err(Error::NotRunning);
                }
                if fault == Fault::Kill {
                    process.injected += 1;
                    drop(shared);
                    self.failed(index, Event::Injected(Fault::Kill));
                    return Ok(Reply::Done);
                }
                if process.control.is_none() {
                    return Err(Error::Unreachable);
                }
                if matches!(fault, Fault::Hang | Fault::StuckRequest) && process.heartbeat_ms.is_none() {
                    // Nothing would notice: the process would hang for good.
                    return Err(Error::Unreachable);
                }
                process.pending = Some(fault);
                Ok(Reply::Done)
            }
            Request::Restart { name } => {
                let index = self.find(&name)?;
                self.restart(index, false).map(|()| Reply::Done)
            }
        }
    }

    fn find(&self, name: &str) -> Result<usize, Error> {
        SHARED
            .lock()
            .watched
            .iter()
            .position(|process| process.name == name)
            .ok_or(Error::NoSuchProcess)
    }
}

/// The faults the supervisor can take itself, because init notices them:
/// those that end it. (Nobody would notice it hang.)
fn self_inflicted(fault: Fault) -> bool {
    matches!(fault, Fault::Panic | Fault::WildWrite)
}

/// init ran (at the top priority) to stop or start a process, or a hung
/// process was spinning: heartbeats waiting meanwhile may have waited
/// behind it, so their clocks start again.
fn restart_clocks() {
    let now = uptime_ms();
    for process in SHARED.lock().watched.iter_mut() {
        if let Some((since, _)) = &mut process.waiting_since {
            *since = now;
        }
    }
}
