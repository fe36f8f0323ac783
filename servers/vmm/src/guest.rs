//! Running a guest: the loop of `VcpuRun` calls and the handling of every
//! exit, with interrupts from the emulated devices injected as the guest
//! can take them.

use crate::clock::{self, Nanoseconds};
use crate::decode;
use vmm::devices::virtio::GuestRam;
use vmm::devices::virtio::block::Backing;
use vmm::devices::{Devices, Effect};
use vmm::input::Input;
use crate::machine::{Machine, RamForDevices};
use crate::policy;
use abi::vcpu::{Event, ExitKind, VcpuState, access, group, instruction, io};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use runtime::println;
use spin::Mutex;
use vm_platform::hypercall;

/// RFLAGS.IF.
const INTERRUPTS_ENABLED: u64 = 1 << 9;

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It wrote its status to the exit port.
    Exited(u8),
    /// It triple-faulted (or otherwise shut down), at this instruction.
    Shutdown {
        /// `rip` when it happened.
        rip: u64,
    },
    /// It halted with interrupts off, which nothing but an NMI (never
    /// sent) ends: how a guest with no power-off device powers off (Linux's
    /// `poweroff` without ACPI).
    Halted {
        /// `rip` after the HLT.
        rip: u64,
    },
    /// It was asked to stop.
    Stopped,
    /// The VMM stopped it: it did something the platform does not allow.
    Killed(String),
}

impl core::fmt::Display for End {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Exited(status) => write!(f, "exited with status {status}"),
            Self::Shutdown { rip } => write!(f, "shut down (triple fault) at rip {rip:#x}"),
            Self::Halted { rip } => write!(f, "powered off (halted with interrupts off) at rip {rip:#x}"),
            Self::Stopped => write!(f, "stopped"),
            Self::Killed(why) => write!(f, "killed: {why}"),
        }
    }
}

/// What the serving thread sees of a running guest.
pub struct Shared {
    /// Set to ask the guest to stop.
    pub stop: AtomicBool,
    /// Exits handled.
    pub exits: AtomicU64,
    /// Exits in the last whole second.
    pub exits_per_second: AtomicU64,
    /// Bytes typed for the guest that its UART has not taken yet: the
    /// serving thread offers, the guest's thread delivers.
    pub input: Mutex<Input>,
}

impl Shared {
    /// Nothing counted yet.
    pub const fn new() -> Self {
        Self {
            stop: AtomicBool::new(false),
            exits: AtomicU64::new(0),
            exits_per_second: AtomicU64::new(0),
            input: Mutex::new(Input::new()),
        }
    }
}

/// The guest's virtio disk: where its sectors live and how many bytes.
pub struct Disk<'a> {
    /// Its file.
    pub backing: &'a mut dyn Backing,
    /// Its size.
    pub bytes: u64,
}

/// Runs the guest from `state` until it ends. `name` prefixes its console
/// output; `disk`, if there is one, backs its virtio disk.
pub fn run(machine: &Machine, mut state: VcpuState, name: &str, shared: &Shared, mut disk: Option<Disk<'_>>) -> End {
    let mut devices = Devices::new(machine.ram.len() as u64, disk.as_ref().map(|disk| disk.bytes));
    let ram = RamForDevices(&machine.ram);
    // The MMIO decoder needs the control registers and CS on every exit.
    state.store = group::CONTROL | group::SEGMENTS;
    let mut second = (clock::now(), 0u64);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return End::Stopped;
        }
        let now = clock::now();
        devices.tick(now);
        devices.receive(&mut shared.input.lock(), &ram);
        offer_interrupt(&mut state, &mut devices);
        machine.page.write(&state);
        let kind = match machine.vcpu.run() {
            Ok(kind) => kind,
            Err(error) => return End::Killed(format!("the kernel refused to run it: {error:?}")),
        };
        state = machine.page.read();
        let exits = shared.exits.fetch_add(1, Ordering::Relaxed) + 1;
        if now.0.saturating_sub(second.0.0) >= 1_000_000_000 {
            shared.exits_per_second.store(exits - second.1, Ordering::Relaxed);
            second = (now, exits);
        }
        let Some(kind) = ExitKind::from_number(kind) else {
            return End::Killed(format!("an exit the VMM does not know ({kind})"));
        };
        if let Some(end) = handle(kind, &mut state, machine, &mut devices, name, shared) {
            return end;
        }
        if kind == ExitKind::PortIo {
            let backing: Option<&mut dyn Backing> = match disk.as_mut() {
                Some(disk) => Some(&mut *disk.backing),
                None => None,
            };
            for effect in devices.serve_virtio(&ram, backing, clock::now()) {
                report(effect, name);
            }
        }
    }
}

/// Handles one exit; returns how the guest ended if it did.
fn handle(
    kind: ExitKind,
    state: &mut VcpuState,
    machine: &Machine,
    devices: &mut Devices,
    name: &str,
    shared: &Shared,
) -> Option<End> {
    let exit = state.exit;
    // Completing an instruction for the guest also ends an interrupt shadow
    // it was in (`STI; HLT` halts with interrupts deliverable).
    let step = |state: &mut VcpuState| {
        state.registers.rip = state.registers.rip.wrapping_add(u64::from(exit.instruction_length));
        state.interrupt_shadow = 0;
    };
    match kind {
        ExitKind::PortIo => {
            if exit.b & io::STRING != 0 {
                return Some(End::Killed(String::from("string port I/O is not emulated")));
            }
            let port = exit.a as u16;
            let size = (exit.b & io::SIZE_MASK) as u8;
            let now = clock::now();
            if exit.b & io::WRITE != 0 {
                if let Some(end) = report(devices.port_write(port, size, exit.c as u32, now), name) {
                    return Some(end);
                }
            } else {
                let value = u64::from(devices.port_read(port, size, now));
                let mask = match size {
                    1 => 0xff,
                    2 => 0xffff,
                    _ => 0xffff_ffff,
                };
                // A 32-bit IN clears the upper half, as any 32-bit write does.
                state.registers.rax = if size == 4 {
                    value
                } else {
                    (state.registers.rax & !mask) | value
                };
            }
            step(state);
        }
        ExitKind::NestedPageFault => {
            if exit.b & access::EXECUTE != 0 {
                return Some(End::Killed(format!(
                    "it executed at guest-physical {:#x}, where there is no RAM",
                    exit.a
                )));
            }
            match decode::emulate(state, &machine.ram, devices, exit.a) {
                Ok(effect) => {
                    if let Some(end) = report(effect, name) {
                        return Some(end);
                    }
                }
                Err(why) => return Some(End::Killed(why)),
            }
        }
        ExitKind::Cpuid => {
            let [eax, ebx, ecx, edx] = policy::cpuid(state.registers.rax as u32, state.registers.rcx as u32);
            state.registers.rax = u64::from(eax);
            state.registers.rbx = u64::from(ebx);
            state.registers.rcx = u64::from(ecx);
            state.registers.rdx = u64::from(edx);
            step(state);
        }
        ExitKind::Msr => {
            if policy::msr(state, exit.a as u32, exit.b != 0, &mut devices.lapic) {
                step(state);
            }
        }
        ExitKind::Hlt => {
            step(state);
            if state.registers.rflags & INTERRUPTS_ENABLED == 0 {
                return Some(End::Halted { rip: state.registers.rip });
            }
            wait_for_interrupt(devices, &RamForDevices(&machine.ram), shared, name);
        }
        ExitKind::Hypercall => {
            let argument = state.registers.rdi;
            state.registers.rax = match state.registers.rax {
                hypercall::PING => hypercall::PING_REPLY.wrapping_add(argument),
                hypercall::CONSOLE_WRITE => {
                    if let Some(line) = devices.uart.transmit(argument as u8) {
                        println!("{name}: {line}");
                    }
                    0
                }
                _ => hypercall::UNKNOWN,
            };
            step(state);
        }
        ExitKind::Shutdown => {
            return Some(End::Shutdown {
                rip: state.registers.rip,
            });
        }
        ExitKind::Exception => {
            // Only #DB and #AC are intercepted (a guest could loop on them
            // inside the CPU for ever); they go back to the guest.
            let vector = exit.a as u8;
            let error_code = (vector == 17).then_some(exit.b as u32);
            state.inject = Event::exception(vector, error_code);
        }
        ExitKind::Instruction => match exit.a {
            instruction::INVD | instruction::WBINVD => step(state),
            _ => state.inject = Event::exception(6, None),
        },
        ExitKind::InterruptWindow | ExitKind::Preempted => {}
        ExitKind::InvalidState => {
            return Some(End::Killed(format!(
                "the hardware refused its state (reason {:#x})",
                exit.a
            )));
        }
    }
    None
}

/// Prints what a device access asked to print; returns how the guest
/// ended if it asked to.
fn report(effect: Effect, name: &str) -> Option<End> {
    match effect {
        Effect::None => {}
        Effect::Output(line) => println!("{name}: {line}"),
        Effect::Ignored(what) => println!("vmm: {name}: {what}"),
        Effect::Exit(status) => return Some(End::Exited(status)),
    }
    None
}

/// Injects the pending interrupt (the PIC's or the local APIC's, see
/// [`Devices::pending_interrupt`]) if the guest can take it now, or asks
/// for an exit as soon as it can.
fn offer_interrupt(state: &mut VcpuState, devices: &mut Devices) {
    state.interrupt_window = 0;
    if state.inject.is_set() {
        return;
    }
    let Some(interrupt) = devices.pending_interrupt() else {
        return;
    };
    if state.registers.rflags & INTERRUPTS_ENABLED != 0 && state.interrupt_shadow == 0 {
        devices.acknowledge(interrupt);
        state.inject = Event::interrupt(interrupt.vector());
    } else {
        state.interrupt_window = 1;
    }
}

/// The guest halted: sleeps until a device raises an interrupt (a timer,
/// or input arriving for its console) or the guest is asked to stop. An
/// idle guest may be waiting at a prompt, so its unfinished line of output
/// is shown once its console has been quiet a while.
fn wait_for_interrupt(devices: &mut Devices, ram: &dyn GuestRam, shared: &Shared, name: &str) {
    loop {
        let now = clock::now();
        devices.tick(now);
        devices.receive(&mut shared.input.lock(), ram);
        if devices.pending_interrupt().is_some() || shared.stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(line) = devices.unfinished_line(now) {
            println!("{name}: {line}");
        }
        let wait = devices
            .next_deadline()
            .map_or(10, |deadline: Nanoseconds| deadline.0.saturating_sub(now.0) / 1_000_000);
        runtime::syscall::sleep_ms(wait.clamp(1, 10));
    }
}
