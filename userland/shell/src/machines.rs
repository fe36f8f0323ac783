//! The shell's `vm` commands: start a guest image on an idle VMM instance,
//! list the instances and their guests, stop one, attach the console to
//! one's serial line.

use crate::Console;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use runtime::capability::Slots;
use service::{CallError, Client};
use vmm::{BootModule, MAX_INPUT, Refusal, Reply, Request, Vmm};

/// The commands this module runs, for the help text.
pub const HELP: &str = "  vm start [-m MIB] [--module PATH[,ARG]...]... [--disk FILE] IMAGE [ARGS]
             boots a guest image (64-bit ELF, multiboot or Linux
             bzImage) from the filesystem on an idle VMM instance, with
             MIB of RAM (16) and command line ARGS; each --module gives a
             multiboot kernel a module, its command line PATH and the
             ARGs, commas for spaces; a Linux kernel's one module is its
             initrd; --disk gives the guest a virtio disk whose sectors
             are FILE's (a whole number of 512-byte sectors), written in
             place
  vm start linux [--disk FILE]
             boots the Linux guest (/vmlinuz with /initrd.img, 128 MiB),
             with FILE as its virtio disk if given, and attaches the
             console to it, as vm console does
  vm list    the VMM instances, their guests and exits per second
  vm stop ID stops the guest of instance ID (vm0, vm1, ...)
  vm console ID
             types to guest ID's serial line (COM1) until Ctrl-] or the
             guest's end; its output keeps coming as before
";

/// The byte that ends `vm console`: Ctrl-].
const DETACH: u8 = 0x1d;
/// How long `vm console` waits between looks at the keyboard.
const CONSOLE_POLL_MS: u64 = 10;
/// Looks at the keyboard between asking whether the guest still runs.
const POLLS_PER_STATUS: u32 = 20;
/// The most typed bytes `vm console` keeps while the guest is not reading;
/// it drops what is typed beyond.
const MAX_HELD: usize = 256;

/// The VMM instances the system description gives the shell.
const INSTANCES: [&str; 2] = ["vm0", "vm1"];
/// RAM a guest gets unless the command says otherwise.
const DEFAULT_MIB: u32 = 16;

/// Where `vm start linux` finds the Linux guest's kernel and initrd.
const LINUX_KERNEL: &str = "/vmlinuz";
const LINUX_INITRD: &str = "/initrd.img";
/// RAM `vm start linux` gives: Debian's kernel needs 80 MiB to unpack
/// itself at 16 MiB, and some room beside it to run.
const LINUX_MIB: u32 = 128;

/// The VMM instances, each looked up on first use.
#[derive(Default)]
pub struct Connection {
    clients: Vec<(&'static str, Client<Vmm>)>,
}

impl Connection {
    /// Runs `vm` with arguments `rest`.
    pub fn run(&mut self, rest: &str, console: &Console, slots: &Slots) {
        if self.clients.is_empty() {
            for instance in INSTANCES {
                if let Some(client) = slots
                    .allocate()
                    .ok()
                    .and_then(|slot| Client::<Vmm>::connect_to(instance, slot, console.buffer).ok())
                {
                    self.clients.push((instance, client));
                }
            }
        }
        let arguments: Vec<&str> = rest.split_whitespace().collect();
        let result = match arguments.as_slice() {
            ["start", "linux", options @ ..] => parse_linux(options).and_then(|request| {
                let instance = self.start(&request)?;
                console.write(&format!("{instance}: starting {LINUX_KERNEL}\n"));
                self.attach(instance, console)
            }),
            ["start", options @ ..] => parse_start(options).and_then(|request| {
                let instance = self.start(&request)?;
                let Request::Start { image, .. } = request else {
                    return Err(String::from(USAGE));
                };
                Ok(format!("{instance}: starting {image}\n"))
            }),
            ["list"] => Ok(self.list()),
            ["stop", instance] => self.stop(instance),
            ["console", instance] => self.attach(instance, console),
            _ => Err(String::from(USAGE)),
        };
        match result {
            Ok(text) => console.write(&text),
            Err(reason) => console.write(&format!("vm: {reason}\n")),
        }
    }

    /// Starts `request` on the first idle instance; returns its name.
    fn start(&self, request: &Request) -> Result<&'static str, String> {
        if self.clients.is_empty() {
            return Err(String::from("no VMM instance"));
        }
        for (instance, client) in &self.clients {
            match answer(client.call(request)) {
                Ok(_) => return Ok(instance),
                Err(AnswerError::Refused(Refusal::Busy)) => {}
                Err(error) => return Err(format!("{instance}: {error}")),
            }
        }
        Err(String::from("every VMM instance is busy"))
    }

    fn list(&self) -> String {
        let mut text = String::from("ID    STATE     EXITS     EXITS/S  IMAGE\n");
        for (instance, client) in &self.clients {
            let line = match answer(client.call(&Request::Status)) {
                Ok(Reply::Status(Some(status))) => format!(
                    "{instance:<5} {:<9} {:>9} {:>8}  {}{}\n",
                    if status.running { "running" } else { "ended" },
                    status.exits,
                    status.exits_per_second,
                    status.image,
                    status.ended.map(|end| format!(" ({end})")).unwrap_or_default(),
                ),
                Ok(_) => format!("{instance:<5} idle\n"),
                Err(error) => format!("{instance:<5} ({error})\n"),
            };
            text.push_str(&line);
        }
        text
    }

    fn stop(&self, instance: &str) -> Result<String, String> {
        answer(self.client(instance)?.call(&Request::Stop))
            .map(|_| format!("{instance}: stopping\n"))
            .map_err(|error| error.to_string())
    }

    /// The client of instance `instance`.
    fn client(&self, instance: &str) -> Result<&Client<Vmm>, String> {
        self.clients
            .iter()
            .find(|(name, _)| *name == instance)
            .map(|(_, client)| client)
            .ok_or_else(|| format!("no instance '{instance}'"))
    }

    /// `vm console`: sends what is typed to the guest's serial line until
    /// Ctrl-] or until the guest ends (noticed when input is refused, or
    /// by asking its status every so often while nothing is typed). Typed
    /// bytes the guest has not taken wait here, up to [`MAX_HELD`]; those
    /// still waiting when Ctrl-] comes are dropped.
    fn attach(&self, instance: &str, console: &Console) -> Result<String, String> {
        let client = self.client(instance)?;
        if let Some(end) = ended(client)? {
            return Err(format!("{instance}: no guest runs{end}"));
        }
        console.write(&format!("{instance}: console attached; Ctrl-] returns to the shell\n"));
        let mut held: Vec<u8> = Vec::new();
        let mut dropped = 0usize;
        let mut idle_polls = 0;
        loop {
            let polled = console.poll();
            let detach = polled.iter().position(|&byte| byte == DETACH);
            let typed = &polled[..detach.unwrap_or(polled.len())];
            let room = MAX_HELD.saturating_sub(held.len());
            dropped += typed.len().saturating_sub(room);
            held.extend(typed.iter().take(room));
            if detach.is_some() {
                let note = if held.is_empty() {
                    String::new()
                } else {
                    format!(" ({} typed bytes the guest did not take were dropped)", held.len())
                };
                return Ok(format!("{instance}: console detached{note}\n"));
            }
            if let Some(end) = send(client, &mut held)? {
                return Ok(format!("{instance}: the guest ended{end}\n"));
            }
            if dropped > 0 {
                console.write(&format!("{instance}: the guest is not reading: {dropped} typed bytes dropped\n"));
                dropped = 0;
            }
            idle_polls = if typed.is_empty() { idle_polls + 1 } else { 0 };
            if idle_polls >= POLLS_PER_STATUS {
                idle_polls = 0;
                if let Some(end) = ended(client)? {
                    return Ok(format!("{instance}: the guest ended{end}\n"));
                }
            }
            runtime::syscall::sleep_ms(CONSOLE_POLL_MS);
        }
    }
}

/// Offers `held` to the guest, [`MAX_INPUT`] bytes a request, and removes
/// what it took; stops early when its input is full. Returns how the guest
/// ended (`Some`) if it no longer runs.
fn send(client: &Client<Vmm>, held: &mut Vec<u8>) -> Result<Option<String>, String> {
    while !held.is_empty() {
        let bytes = held.iter().take(MAX_INPUT).copied().collect();
        match answer(client.call(&Request::Input { bytes })) {
            Ok(Reply::Taken { count }) => {
                held.drain(..(count as usize).min(held.len()));
            }
            Ok(_) => return Err(String::from("unexpected reply")),
            Err(AnswerError::Refused(Refusal::InputFull)) => break,
            Err(AnswerError::Refused(Refusal::NotRunning)) => {
                return ended(client).map(|end| Some(end.unwrap_or_default()));
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(None)
}

/// How the instance's guest ended, as ` (why)`, or `None` while it runs.
fn ended(client: &Client<Vmm>) -> Result<Option<String>, String> {
    match answer(client.call(&Request::Status)) {
        Ok(Reply::Status(Some(status))) if status.running => Ok(None),
        Ok(Reply::Status(status)) => Ok(Some(
            status
                .and_then(|status| status.ended)
                .map(|end| format!(" ({end})"))
                .unwrap_or_default(),
        )),
        Ok(_) => Err(String::from("unexpected reply")),
        Err(error) => Err(error.to_string()),
    }
}

/// The `vm` command's forms.
const USAGE: &str = "usage: vm start [-m MIB] [--module PATH[,ARG]...]... [--disk FILE] IMAGE [ARGS] | vm start linux \
                     [--disk FILE] | vm list | vm stop ID | vm console ID";

/// What `vm start linux [--disk FILE]` asks for: the kernel with its
/// initrd and the default command line, and FILE as its disk if given.
fn parse_linux(words: &[&str]) -> Result<Request, String> {
    let disk = match words {
        [] => None,
        ["--disk", file] => Some(String::from(*file)),
        ["--disk"] => return Err(String::from("vm start linux: --disk needs a FILE")),
        ["--disk", _, extra, ..] | [extra, ..] => {
            return Err(format!("vm start linux: '{extra}' is not --disk FILE"));
        }
    };
    Ok(Request::Start {
        image: String::from(LINUX_KERNEL),
        arguments: String::new(),
        memory_mib: LINUX_MIB,
        modules: alloc::vec![BootModule {
            path: String::from(LINUX_INITRD),
            arguments: String::new(),
        }],
        disk,
    })
}

/// Parses `vm start`'s options, image and arguments into a request. The
/// options come first, in any order; the first word that is not one is the
/// image.
fn parse_start(words: &[&str]) -> Result<Request, String> {
    let mut memory_mib = DEFAULT_MIB;
    let mut modules = Vec::new();
    let mut disk = None;
    let mut rest = words;
    loop {
        match rest {
            ["-m", mib, after @ ..] => {
                memory_mib = mib.parse().map_err(|_| format!("'{mib}' is not a number of MiB"))?;
                rest = after;
            }
            ["--module", module, after @ ..] => {
                let mut parts = module.split(',');
                let path = parts.next().unwrap_or_default();
                modules.push(BootModule {
                    path: String::from(path),
                    arguments: parts.collect::<Vec<_>>().join(" "),
                });
                rest = after;
            }
            ["--disk", file, after @ ..] => {
                if disk.replace(String::from(*file)).is_some() {
                    return Err(String::from("a guest has one --disk"));
                }
                rest = after;
            }
            ["-m" | "--module" | "--disk"] | [] => return Err(String::from(USAGE)),
            [image, command_line @ ..] => {
                return Ok(Request::Start {
                    image: String::from(*image),
                    arguments: command_line.join(" "),
                    memory_mib,
                    modules,
                    disk,
                });
            }
        }
    }
}

/// Why a VMM request failed.
enum AnswerError {
    Refused(Refusal),
    Call(CallError),
}

impl core::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(Refusal::Busy) => write!(f, "busy"),
            Self::Refused(Refusal::NoImage(why)) => write!(f, "no image: {why}"),
            Self::Refused(Refusal::BadImage(why)) => write!(f, "bad image: {why}"),
            Self::Refused(Refusal::BadDisk(why)) => write!(f, "bad disk: {why}"),
            Self::Refused(Refusal::BadMemorySize) => write!(f, "memory must be 1..={} MiB", vmm::MAX_MEMORY_MIB),
            Self::Refused(Refusal::CannotRun(why)) => write!(f, "cannot run: {why}"),
            Self::Refused(Refusal::NotRunning) => write!(f, "no guest runs"),
            Self::Refused(Refusal::BadInput) => write!(f, "input must be 1..={MAX_INPUT} bytes"),
            Self::Refused(Refusal::InputFull) => write!(f, "the guest is not reading its input"),
            Self::Call(error) => write!(f, "{error:?}"),
        }
    }
}

fn answer(reply: Result<Result<Reply, Refusal>, CallError>) -> Result<Reply, AnswerError> {
    match reply {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(refusal)) => Err(AnswerError::Refused(refusal)),
        Err(error) => Err(AnswerError::Call(error)),
    }
}
