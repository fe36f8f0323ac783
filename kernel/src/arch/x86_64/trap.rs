//! What happens after an entry stub has saved state: exceptions,
//! interrupts and syscalls, from user mode and from the kernel itself.

use super::apic::{self, IOAPIC_VECTOR_BASE, SPURIOUS_VECTOR, TIMER_VECTOR};
use super::entry::TrapFrame;
use super::{backtrace, power};
use crate::log::write_emergency;
use crate::object;
use crate::sched;
use abi::debug_exit::Outcome;
use x86_64::registers::control::Cr2;

/// Number of I/O APIC lines the kernel gives vectors to.
const IOAPIC_LINES: u8 = 24;

/// What a CPU exception is called, by vector.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error",
        "debug",
        "non-maskable interrupt",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection fault",
        "page fault",
        "reserved",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point error",
        "virtualization exception",
        "control protection exception",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection exception",
        "VMM communication exception",
        "security exception",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Handles an interrupt that is not an exception; shared by both modes.
fn interrupt(vector: u8) {
    match vector {
        TIMER_VECTOR => {
            let now = apic::TICKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
            object::with(|objects| objects.ipc.wake_sleepers(now));
            apic::end_of_interrupt();
        }
        SPURIOUS_VECTOR => {} // no EOI for spurious interrupts
        vector if (IOAPIC_VECTOR_BASE..IOAPIC_VECTOR_BASE + IOAPIC_LINES).contains(&vector) => {
            let line = vector - IOAPIC_VECTOR_BASE;
            object::with(|objects| crate::syscall::device_interrupt(objects, line));
            apic::end_of_interrupt();
        }
        vector => {
            log::warn!("unexpected interrupt vector {vector:#x}");
            apic::end_of_interrupt();
        }
    }
}

/// Entry from user mode. `frame` is where the stub saved the registers:
/// the current thread's context, except for the three exceptions that run
/// on IST stacks.
pub extern "C" fn trap_from_user(frame: *const TrapFrame) -> ! {
    // SAFETY: the stub passes the frame it just filled; only the vector is
    // read, by value, before any other reference to the context is made.
    let vector = unsafe { (*frame).vector };
    match vector {
        // NMI, double fault and machine check: the machine's trouble, not
        // the thread's (and their frame is not in the thread).
        2 | 8 | 18 => {
            write_emergency(format_args!("FATAL: {} while in user mode\n", exception_name(vector)));
            power::exit(Outcome::KernelPanic)
        }
        // First FPU use since a thread switch: hand the FPU over.
        7 => object::with(|objects| {
            if let Some(thread) = objects.on_cpu {
                objects.take_fpu(thread);
            }
        }),
        0..=31 => {
            let address = if vector == 14 { Cr2::read_raw() } else { 0 };
            object::with(|objects| {
                let Some(thread) = objects.on_cpu else { return };
                let error_code = objects
                    .threads
                    .get(thread.0)
                    .map_or(0, |record| record.context.error_code);
                sched::fault(objects, thread, vector, error_code, address);
            });
        }
        _ => {
            interrupt(vector as u8);
            if vector == u64::from(TIMER_VECTOR) {
                object::with(|objects| objects.ipc.scheduler.tick());
            }
        }
    }
    sched::resume()
}

/// Entry from the kernel itself: interrupts while idle, or a kernel bug.
pub extern "C" fn trap_from_kernel(frame: &mut TrapFrame) {
    if frame.vector < 32 {
        kernel_exception(frame);
    }
    interrupt(frame.vector as u8);
}

/// Entry through SYSCALL: the frame is the current thread's saved context.
pub extern "C" fn syscall_from_user() -> ! {
    object::with(|objects| {
        if let Some(thread) = objects.on_cpu {
            crate::syscall::dispatch(objects, thread);
        }
    });
    sched::resume()
}

/// Reports an exception taken in ring 0 and stops the machine.
fn kernel_exception(frame: &TrapFrame) -> ! {
    write_emergency(format_args!(
        "KERNEL EXCEPTION: {} (vector {}) error code {:#x}\n  rip {:#018x} rsp {:#018x} cr2 {:#018x}\n",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.rsp,
        Cr2::read_raw(),
    ));
    backtrace::print(frame.rip, frame.rbp);
    power::exit(Outcome::KernelPanic)
}
