//! The shell's `vm` commands: start a guest image on an idle VMM instance,
//! list the instances and their guests, stop one.

use crate::Console;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use runtime::capability::Slots;
use service::{CallError, Client};
use vmm::{BootModule, Refusal, Reply, Request, Vmm};

/// The commands this module runs, for the help text.
pub const HELP: &str = "  vm start [-m MIB] [--module PATH[,ARG]...]... IMAGE [ARGS]
             boots a guest image (64-bit ELF or multiboot) from the
             filesystem on an idle VMM instance, with MIB of RAM (16) and
             command line ARGS; each --module gives a multiboot kernel a
             module, its command line PATH and the ARGs, commas for spaces
  vm list    the VMM instances, their guests and exits per second
  vm stop ID stops the guest of instance ID (vm0, vm1, ...)
";

/// The VMM instances the system description gives the shell.
const INSTANCES: [&str; 2] = ["vm0", "vm1"];
/// RAM a guest gets unless the command says otherwise.
const DEFAULT_MIB: u32 = 16;

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
            ["start", options @ ..] => parse_start(options).and_then(|request| self.start(request)),
            ["list"] => Ok(self.list()),
            ["stop", instance] => self.stop(instance),
            _ => Err(String::from(USAGE)),
        };
        match result {
            Ok(text) => console.write(&text),
            Err(reason) => console.write(&format!("vm: {reason}\n")),
        }
    }

    fn start(&self, request: Request) -> Result<String, String> {
        if self.clients.is_empty() {
            return Err(String::from("no VMM instance"));
        }
        let Request::Start { image, .. } = &request else {
            return Err(String::from(USAGE));
        };
        for (instance, client) in &self.clients {
            match answer(client.call(&request)) {
                Ok(_) => return Ok(format!("{instance}: starting {image}\n")),
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
        let (_, client) = self
            .clients
            .iter()
            .find(|(name, _)| *name == instance)
            .ok_or_else(|| format!("no instance '{instance}'"))?;
        answer(client.call(&Request::Stop))
            .map(|_| format!("{instance}: stopping\n"))
            .map_err(|error| error.to_string())
    }
}

/// The `vm` command's forms.
const USAGE: &str = "usage: vm start [-m MIB] [--module PATH[,ARG]...]... IMAGE [ARGS] | vm list | vm stop ID";

/// Parses `vm start`'s options, image and arguments into a request. The
/// options come first, in any order; the first word that is not one is the
/// image.
fn parse_start(words: &[&str]) -> Result<Request, String> {
    let mut memory_mib = DEFAULT_MIB;
    let mut modules = Vec::new();
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
            ["-m" | "--module"] | [] => return Err(String::from(USAGE)),
            [image, command_line @ ..] => {
                return Ok(Request::Start {
                    image: String::from(*image),
                    arguments: command_line.join(" "),
                    memory_mib,
                    modules,
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
            Self::Refused(Refusal::BadMemorySize) => write!(f, "memory must be 1..={} MiB", vmm::MAX_MEMORY_MIB),
            Self::Refused(Refusal::CannotRun(why)) => write!(f, "cannot run: {why}"),
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
