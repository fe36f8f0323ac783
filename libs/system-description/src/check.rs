//! Checking a description before it is packed: every mistake found is
//! reported with the process and the field it is in.

use crate::{HEARTBEAT_MS, MAX_PRIORITY, OnFailure, Process, SUPERVISOR, SystemDescription, valid_name};
use abi::KERNEL_PORTS;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Interrupt lines the kernel hands out.
const INTERRUPT_LINES: u8 = 24;
/// What a process needs besides its program's bytes: stack, IPC buffer,
/// page tables and kernel objects.
const PROCESS_OVERHEAD_KIB: u64 = 128;

/// One thing wrong with a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The process it is in, or `None` for a top-level field.
    pub process: Option<String>,
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match &self.process {
            Some(process) => write!(
                formatter,
                "process '{process}', field '{}': {}",
                self.field, self.message
            ),
            None => write!(formatter, "field '{}': {}", self.field, self.message),
        }
    }
}

fn overlaps(first: (u32, u32), second: (u32, u32)) -> bool {
    first.0 < second.1 && second.0 < first.1
}

impl SystemDescription {
    /// Checks the description. `program_size` says how many bytes a program
    /// of that name loads, or `None` if there is no such program.
    ///
    /// # Errors
    /// Every problem found, each naming its process and field.
    pub fn check(&self, program_size: impl Fn(&str) -> Option<u64>) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        let mut report = |process: Option<&Process>, field: &'static str, message: String| {
            problems.push(Problem {
                process: process.map(|process| process.name.clone()),
                field,
                message,
            });
        };
        if program_size(&self.init).is_none() {
            report(None, "init", format!("unknown program '{}'", self.init));
        }
        let mut total_kib = 0u64;
        for (index, process) in self.processes.iter().enumerate() {
            let earlier = &self.processes[..index];
            let here = Some(process);
            if !valid_name(&process.name) {
                report(here, "name", String::from("must be 1-32 of a-z, 0-9 and '-'"));
            }
            if earlier.iter().any(|other| other.name == process.name) {
                report(here, "name", String::from("another process has this name"));
            }
            match program_size(&process.program) {
                None => report(here, "program", format!("unknown program '{}'", process.program)),
                Some(bytes) => {
                    let needed = bytes.div_ceil(1024) + PROCESS_OVERHEAD_KIB;
                    if u64::from(process.memory_kib) < needed {
                        report(
                            here,
                            "memory_kib",
                            format!(
                                "{} KiB cannot hold program '{}': it needs at least {needed} KiB",
                                process.memory_kib, process.program
                            ),
                        );
                    }
                }
            }
            total_kib += u64::from(process.memory_kib);
            if process.priority > MAX_PRIORITY {
                report(
                    here,
                    "priority",
                    format!("{} is above the highest, {MAX_PRIORITY}", process.priority),
                );
            }
            for &line in &process.interrupts {
                if line >= INTERRUPT_LINES {
                    report(
                        here,
                        "interrupts",
                        format!("line {line} does not exist (0..{INTERRUPT_LINES})"),
                    );
                }
                if let Some(other) = earlier.iter().find(|other| other.interrupts.contains(&line)) {
                    report(
                        here,
                        "interrupts",
                        format!("line {line} is already given to process '{}'", other.name),
                    );
                }
            }
            for (range_index, range) in process.ports.iter().enumerate() {
                let span = (u32::from(range.first), u32::from(range.first) + u32::from(range.count));
                if range.count == 0 || span.1 > 0x1_0000 {
                    report(
                        here,
                        "ports",
                        format!("{:#x} + {} is not a range of ports", range.first, range.count),
                    );
                    continue;
                }
                let kernel = KERNEL_PORTS
                    .iter()
                    .any(|&(first, count)| overlaps(span, (u32::from(first), u32::from(first) + u32::from(count))));
                if kernel {
                    report(
                        here,
                        "ports",
                        format!("{:#x}..{:#x} includes ports the kernel keeps", span.0, span.1),
                    );
                }
                let mine = process.ports[..range_index].iter();
                let others = earlier
                    .iter()
                    .flat_map(|other| other.ports.iter().map(move |range| (Some(other), range)));
                for (owner, other) in mine.map(|range| (None, range)).chain(others) {
                    let other_span = (u32::from(other.first), u32::from(other.first) + u32::from(other.count));
                    if overlaps(span, other_span) {
                        let whose = owner.map_or(String::from("another range of this process"), |owner| {
                            format!("process '{}'", owner.name)
                        });
                        report(here, "ports", format!("{:#x}..{:#x} overlaps {whose}", span.0, span.1));
                    }
                }
            }
            for region in &process.device_memory {
                if region.address % 4096 != 0 || region.pages == 0 {
                    report(
                        here,
                        "device_memory",
                        format!(
                            "{:#x} x {} pages is not a run of whole pages",
                            region.address, region.pages
                        ),
                    );
                }
            }
            if !process.pci_devices.is_empty() {
                let provider = earlier
                    .iter()
                    .find(|other| other.provides.iter().any(|name| name == "pci"));
                if provider.is_none() {
                    report(
                        here,
                        "pci_devices",
                        String::from("needs a process providing 'pci' listed before it (init claims devices from it)"),
                    );
                }
            }
            for service in &process.provides {
                if !valid_name(service) {
                    report(here, "provides", format!("'{service}' is not a valid service name"));
                }
                if let Some(other) = earlier.iter().find(|other| other.provides.contains(service)) {
                    report(
                        here,
                        "provides",
                        format!("'{service}' is already provided by process '{}'", other.name),
                    );
                }
            }
            for service in &process.uses {
                if self.provider(service).is_none() {
                    report(here, "uses", format!("no process provides '{service}'"));
                }
            }
            let supervisor = self.supervisor();
            let is_supervisor = supervisor.is_some_and(|supervisor| supervisor.name == process.name);
            let watched_by_init = is_supervisor || process.provides.iter().any(|service| service == "names");
            if let Some(deadline) = process.heartbeat_ms {
                if !HEARTBEAT_MS.contains(&deadline) {
                    report(
                        here,
                        "heartbeat_ms",
                        format!(
                            "{deadline} ms is outside {}..={} ms",
                            HEARTBEAT_MS.start(),
                            HEARTBEAT_MS.end()
                        ),
                    );
                }
                if process.provides.is_empty() {
                    report(
                        here,
                        "heartbeat_ms",
                        String::from("needs a service endpoint to answer on: the process provides nothing"),
                    );
                }
            }
            let supervised = process.heartbeat_ms.is_some() || process.on_failure != OnFailure::Hold;
            if supervised && watched_by_init {
                report(
                    here,
                    "on_failure",
                    String::from(
                        "names and the supervisor are watched by init, which restarts the supervisor and holds names",
                    ),
                );
            } else if supervised && supervisor.is_none() {
                report(
                    here,
                    "on_failure",
                    format!("needs a process providing '{SUPERVISOR}' to carry it out"),
                );
            }
            if is_supervisor && !process.control {
                report(
                    here,
                    "control",
                    String::from("the supervisor needs control = true to stop and start processes"),
                );
            }
        }
        if total_kib > u64::from(self.memory_budget_kib) {
            report(
                None,
                "memory_budget_kib",
                format!(
                    "the processes' pools add up to {total_kib} KiB, more than the {} KiB budget",
                    self.memory_budget_kib
                ),
            );
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::{OnFailure, PciDevice, PortRange};
    use alloc::string::ToString;
    use alloc::vec;

    fn process(name: &str) -> Process {
        Process {
            name: name.into(),
            program: "serial".into(),
            priority: 100,
            memory_kib: 512,
            interrupts: vec![],
            ports: vec![],
            device_memory: vec![],
            pci_devices: vec![],
            provides: vec![],
            uses: vec![],
            on_failure: OnFailure::Hold,
            heartbeat_ms: None,
            control: false,
        }
    }

    fn description(processes: Vec<Process>) -> SystemDescription {
        SystemDescription {
            init: "init".into(),
            memory_budget_kib: 64 * 1024,
            processes,
        }
    }

    fn sizes(program: &str) -> Option<u64> {
        match program {
            "init" | "serial" => Some(40 * 1024),
            "huge" => Some(10 << 20),
            _ => None,
        }
    }

    /// The single problem `processes` has, as text.
    fn problem(processes: Vec<Process>) -> String {
        let problems = description(processes).check(sizes).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems[0].to_string()
    }

    #[test]
    fn a_good_description_passes() {
        let mut serial = process("serial");
        serial.interrupts = vec![4];
        serial.ports = vec![PortRange { first: 0x3f8, count: 8 }];
        serial.provides = vec!["serial".into()];
        let mut shell = process("shell");
        shell.uses = vec!["serial".into()];
        assert_eq!(description(vec![serial, shell]).check(sizes), Ok(()));
    }

    #[test]
    fn unknown_programs_are_named() {
        let mut bad = process("serial");
        bad.program = "nonesuch".into();
        assert_eq!(
            problem(vec![bad]),
            "process 'serial', field 'program': unknown program 'nonesuch'"
        );
        let mut top = description(vec![]);
        top.init = "nonesuch".into();
        assert_eq!(
            top.check(sizes).unwrap_err()[0].to_string(),
            "field 'init': unknown program 'nonesuch'"
        );
    }

    #[test]
    fn overlapping_ports_are_refused() {
        let mut first = process("first");
        first.ports = vec![PortRange { first: 0x3f8, count: 8 }];
        let mut second = process("second");
        second.ports = vec![PortRange { first: 0x3fc, count: 8 }];
        assert_eq!(
            problem(vec![first, second]),
            "process 'second', field 'ports': 0x3fc..0x404 overlaps process 'first'"
        );
        let mut twice = process("twice");
        twice.ports = vec![PortRange { first: 0x60, count: 1 }, PortRange { first: 0x60, count: 1 }];
        assert!(problem(vec![twice]).contains("overlaps another range of this process"));
        let mut kernel = process("kernel");
        kernel.ports = vec![PortRange { first: 0x40, count: 1 }];
        assert!(problem(vec![kernel]).contains("includes ports the kernel keeps"));
        let mut empty = process("empty");
        empty.ports = vec![PortRange {
            first: 0xffff,
            count: 2,
        }];
        assert!(problem(vec![empty]).contains("is not a range of ports"));
    }

    #[test]
    fn an_interrupt_given_twice_is_refused() {
        let mut first = process("first");
        first.interrupts = vec![4];
        let mut second = process("second");
        second.interrupts = vec![4];
        assert_eq!(
            problem(vec![first, second]),
            "process 'second', field 'interrupts': line 4 is already given to process 'first'"
        );
        let mut missing = process("missing");
        missing.interrupts = vec![24];
        assert!(problem(vec![missing]).contains("line 24 does not exist"));
    }

    #[test]
    fn pci_devices_need_the_bus_server_started_first() {
        let mut driver = process("driver");
        driver.pci_devices = vec![PciDevice {
            vendor: 0x1af4,
            device: 0x1001,
        }];
        let mut bus = process("bus");
        bus.provides = vec!["pci".into()];
        assert_eq!(
            problem(vec![driver.clone(), bus.clone()]),
            "process 'driver', field 'pci_devices': needs a process providing 'pci' listed before it \
             (init claims devices from it)"
        );
        assert_eq!(description(vec![bus, driver]).check(sizes), Ok(()));
    }

    #[test]
    fn a_service_nobody_provides_is_refused() {
        let mut shell = process("shell");
        shell.uses = vec!["filesystem".into()];
        assert_eq!(
            problem(vec![shell]),
            "process 'shell', field 'uses': no process provides 'filesystem'"
        );
        let mut first = process("first");
        first.provides = vec!["serial".into()];
        let mut second = process("second");
        second.provides = vec!["serial".into()];
        assert!(problem(vec![first, second]).contains("'serial' is already provided by process 'first'"));
    }

    #[test]
    fn quotas_that_cannot_fit_are_refused() {
        let mut small = process("small");
        small.memory_kib = 100;
        assert_eq!(
            problem(vec![small]),
            "process 'small', field 'memory_kib': 100 KiB cannot hold program 'serial': it needs at least 168 KiB"
        );
        let mut huge = process("huge");
        huge.program = "huge".into();
        huge.memory_kib = 20 * 1024;
        let mut another = process("another");
        another.memory_kib = 60 * 1024;
        let problems = description(vec![huge, another]).check(sizes).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .to_string()
                .starts_with("field 'memory_budget_kib': the processes' pools add up to")
        );
    }

    #[test]
    fn names_priorities_and_device_memory_are_checked() {
        let bad_name = process("Bad Name");
        assert!(problem(vec![bad_name]).contains("field 'name'"));
        assert!(problem(vec![process("twin"), process("twin")]).contains("another process has this name"));
        let mut proud = process("proud");
        proud.priority = 200;
        assert!(problem(vec![proud]).contains("200 is above the highest, 127"));
        let mut device = process("device");
        device.device_memory = vec![crate::DeviceMemory {
            address: 0xfebf_0001,
            pages: 1,
        }];
        assert!(problem(vec![device]).contains("field 'device_memory'"));
    }

    #[test]
    fn descriptions_survive_packing_and_garbage_is_refused() {
        let mut serial = process("serial");
        serial.ports = vec![PortRange { first: 0x3f8, count: 8 }];
        serial.on_failure = OnFailure::Restart;
        let original = description(vec![serial, process("shell")]);
        let bytes = original.to_bytes().unwrap();
        assert_eq!(SystemDescription::from_bytes(&bytes).unwrap(), original);
        for length in 0..bytes.len() {
            let _ = SystemDescription::from_bytes(&bytes[..length]);
        }
        assert!(SystemDescription::from_bytes(&[0xff; 16]).is_err());
    }

    #[test]
    fn supervision_needs_a_supervisor_an_endpoint_and_a_sane_deadline() {
        let mut driver = process("driver");
        driver.on_failure = OnFailure::Restart;
        assert!(problem(vec![driver.clone()]).contains("needs a process providing 'supervisor'"));
        let mut supervisor = process("supervisor");
        supervisor.provides = vec!["supervisor".to_string()];
        assert!(problem(vec![supervisor.clone(), driver.clone()]).contains("needs control = true"));
        supervisor.control = true;
        assert!(
            description(vec![supervisor.clone(), driver.clone()])
                .check(sizes)
                .is_ok()
        );
        driver.heartbeat_ms = Some(10);
        let found: Vec<String> = description(vec![supervisor.clone(), driver.clone()])
            .check(sizes)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("outside 50..=60000"), "{found:?}");
        assert!(found[1].contains("provides nothing"), "{found:?}");
        supervisor.on_failure = OnFailure::Restart;
        assert!(problem(vec![supervisor]).contains("watched by init"));
    }
}
