//! The few instructions and devices the checks use: port I/O, the serial
//! port, CPUID, MSRs, hypercalls, an IDT with interrupt handlers that
//! count, the PIC and PIT, the local APIC and I/O APIC, the CMOS.

use core::arch::{asm, naked_asm};
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU64, Ordering};

pub use test_guest::{inb, outb, write_hex, write_str};

/// CPUID of `leaf` (subleaf 0): eax, ebx, ecx, edx.
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let result = core::arch::x86_64::__cpuid_count(leaf, 0);
    [result.eax, result.ebx, result.ecx, result.edx]
}

/// Whether the CPU says it is AMD (so the hypercall is `VMMCALL`).
pub fn is_amd() -> bool {
    let [_, ebx, _, _] = cpuid(0);
    ebx == u32::from_le_bytes(*b"Auth")
}

/// Makes hypercall `number` with `argument`; returns the result.
pub fn hypercall(number: u64, argument: u64) -> u64 {
    let result: u64;
    if is_amd() {
        // SAFETY: VMMCALL exits to the VMM, which sets rax; rdi is read only.
        unsafe { asm!("vmmcall", inout("rax") number => result, in("rdi") argument, options(nostack)) };
    } else {
        // SAFETY: as above, with VT-x's VMCALL.
        unsafe { asm!("vmcall", inout("rax") number => result, in("rdi") argument, options(nostack)) };
    }
    result
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let value: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes CR0.
pub fn write_cr0(value: u64) {
    // SAFETY: the callers change only CR0.NE (how x87 errors are
    // reported), which nothing in the guest depends on.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let value: u64;
    // SAFETY: as in `read_cr0`.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads the 32-bit register at guest-physical (= virtual, identity
/// mapped) `address`. Always a plain `MOV`: the VMM emulates only moves
/// on MMIO, and an optimised volatile read may become a `CMP` with a
/// memory operand.
pub fn mmio_read(address: u64) -> u32 {
    let value: u32;
    // SAFETY: the VMM emulates the device page at `address`; the access
    // exits and never touches real memory.
    unsafe { asm!("mov {:e}, dword ptr [{}]", out(reg) value, in(reg) address, options(nostack, preserves_flags)) };
    value
}

/// Writes the 32-bit register at `address`, with a plain `MOV`.
pub fn mmio_write(address: u64, value: u32) {
    // SAFETY: as in `mmio_read`.
    unsafe { asm!("mov dword ptr [{}], {:e}", in(reg) address, in(reg) value, options(nostack, preserves_flags)) };
}

/// Reads model-specific register `msr`.
pub fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDMSR exits to the VMM, which answers or injects #GP (which
    // ends the checks through the exception handler).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// Timer interrupts taken (PIC line 0).
pub static TICKS: AtomicU64 = AtomicU64::new(0);
/// Interrupts taken through the local APIC, by vector:
/// [`LAPIC_TIMER_VECTOR`], [`SELF_IPI_VECTOR`], [`IO_APIC_VECTOR`],
/// [`SERIAL_VECTOR`].
pub static LOCAL_TICKS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// The vector the PIC's line 0 (the PIT) arrives on.
pub const TIMER_VECTOR: u8 = 0x20;
/// The local APIC timer's vector.
pub const LAPIC_TIMER_VECTOR: u8 = 0x40;
/// The vector the checks send themselves as an IPI.
pub const SELF_IPI_VECTOR: u8 = 0x41;
/// The vector the I/O APIC delivers the PIT on.
pub const IO_APIC_VECTOR: u8 = 0x52;
/// The vector the I/O APIC delivers COM1 on.
pub const SERIAL_VECTOR: u8 = 0x53;
/// The local APIC's end-of-interrupt register.
const LAPIC_EOI: u64 = vm_platform::LOCAL_APIC + 0xb0;

/// An interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    options: u16,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

static mut IDT: [Gate; 256] = [Gate {
    offset_low: 0,
    selector: 0,
    options: 0,
    offset_middle: 0,
    offset_high: 0,
    reserved: 0,
}; 256];

fn gate(handler: u64) -> Gate {
    Gate {
        offset_low: handler as u16,
        selector: 0x08,
        options: 0x8e00, // present, interrupt gate, DPL 0
        offset_middle: (handler >> 16) as u16,
        offset_high: (handler >> 32) as u32,
        reserved: 0,
    }
}

/// Loads an IDT: every exception ends the guest with status 0xfe; the
/// timer vector counts [`TICKS`].
pub fn install_idt() {
    let idt = addr_of_mut!(IDT);
    // SAFETY: the guest runs one CPU with interrupts off here; nothing
    // else reads the table while it is written, and it is static, so it
    // outlives the LIDT that points to it.
    unsafe {
        for vector in 0..32 {
            (*idt)[vector] = gate(exception as *const () as u64);
        }
        (*idt)[usize::from(TIMER_VECTOR)] = gate(timer as *const () as u64);
        for (vector, handler) in [
            (LAPIC_TIMER_VECTOR, local_timer as extern "C" fn()),
            (SELF_IPI_VECTOR, self_ipi),
            (IO_APIC_VECTOR, io_apic_interrupt),
            (SERIAL_VECTOR, serial_interrupt),
        ] {
            (*idt)[usize::from(vector)] = gate(handler as *const () as u64);
        }
        let pointer: [u64; 2] = [(256 * 16 - 1) | ((idt as u64) << 16), (idt as u64) >> 48];
        asm!("lidt [{}]", in(reg) pointer.as_ptr().cast::<u8>(), options(readonly, nostack));
    }
}

/// Any exception: the check run is over.
#[unsafe(naked)]
extern "C" fn exception() {
    naked_asm!("mov dx, 0xf4", "mov al, 0xfe", "out dx, al", "2:", "hlt", "jmp 2b");
}

/// The timer: count, acknowledge at the PIC.
#[unsafe(naked)]
extern "C" fn timer() {
    naked_asm!(
        "push rax",
        "lock inc qword ptr [rip + {ticks}]",
        "mov al, 0x20",
        "out 0x20, al",
        "pop rax",
        "iretq",
        ticks = sym TICKS,
    );
}

/// A handler for an interrupt from the local APIC: counts in
/// `LOCAL_TICKS[$index]` and writes the APIC's end of interrupt.
macro_rules! local_handler {
    ($name:ident, $index:literal) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!(
                "push rax",
                "lock inc qword ptr [rip + {ticks} + {offset}]",
                "mov rax, {eoi}",
                "mov dword ptr [rax], 0",
                "pop rax",
                "iretq",
                ticks = sym LOCAL_TICKS,
                offset = const $index * 8,
                eoi = const LAPIC_EOI,
            );
        }
    };
}

local_handler!(local_timer, 0);
local_handler!(self_ipi, 1);
local_handler!(io_apic_interrupt, 2);
local_handler!(serial_interrupt, 3);

/// Interrupts taken on local-APIC vector `index` of [`LOCAL_TICKS`].
pub fn local_ticks(index: usize) -> u64 {
    LOCAL_TICKS[index].load(Ordering::Relaxed)
}

/// Reads local APIC register `offset`.
pub fn lapic_read(offset: u64) -> u32 {
    mmio_read(vm_platform::LOCAL_APIC + offset)
}

/// Writes local APIC register `offset`.
pub fn lapic_write(offset: u64, value: u32) {
    mmio_write(vm_platform::LOCAL_APIC + offset, value);
}

/// Reads I/O APIC register `index` through its select and window.
pub fn ioapic_read(index: u8) -> u32 {
    mmio_write(vm_platform::IO_APIC, u32::from(index));
    mmio_read(vm_platform::IO_APIC + 0x10)
}

/// Writes I/O APIC register `index`.
pub fn ioapic_write(index: u8, value: u32) {
    mmio_write(vm_platform::IO_APIC, u32::from(index));
    mmio_write(vm_platform::IO_APIC + 0x10, value);
}

/// Reads CMOS register `index` (NMIs stay enabled).
pub fn cmos_read(index: u8) -> u8 {
    outb(0x70, index);
    inb(0x71)
}

/// Writes CMOS register `index`.
pub fn cmos_write(index: u8, value: u8) {
    outb(0x70, index);
    outb(0x71, value);
}

/// Programs the PIC pair to vectors 0x20 and 0x28 with only line 0
/// unmasked, and the PIT's channel 0 to interrupt at `hz`.
pub fn start_pit(hz: u32) {
    for (command, data, base, cascade) in [(0x20, 0x21, 0x20, 4), (0xa0, 0xa1, 0x28, 2)] {
        outb(command, 0x11); // ICW1: edge, cascade, ICW4 follows
        outb(data, base); // ICW2: vector base
        outb(data, cascade); // ICW3
        outb(data, 0x01); // ICW4: 8086 mode
    }
    outb(0x21, 0xfe);
    outb(0xa1, 0xff);
    let divisor = (1_193_182 / hz) as u16;
    outb(0x43, 0x34); // channel 0, low then high byte, rate generator
    outb(0x40, divisor as u8);
    outb(0x40, (divisor >> 8) as u8);
}

/// Ticks so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Enables interrupts and halts until one arrives.
pub fn wait_for_interrupt() {
    // SAFETY: STI; HLT wakes on the next interrupt (the shadow after STI
    // keeps one from arriving between the two); the handlers are installed.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// Enables interrupts for a moment, so pending ones are taken, without
/// halting.
pub fn enable_interrupts_briefly() {
    // SAFETY: the handlers are installed; an interrupt may arrive between
    // STI's shadow and CLI.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Stops for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts off, HLT only waits.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
