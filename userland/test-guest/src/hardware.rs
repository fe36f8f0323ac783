//! The few instructions and devices the checks use: port I/O, the serial
//! port, CPUID, hypercalls, an IDT with a timer handler, the PIC and PIT.

use core::arch::{asm, naked_asm};
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU64, Ordering};

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O in the guest's own (virtual) machine; it touches no
    // memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes text to COM1, waiting for the transmitter each byte.
pub fn write_str(text: &str) {
    for byte in text.bytes() {
        while inb(vm_platform::COM1 + 5) & 0x20 == 0 {}
        outb(vm_platform::COM1, byte);
    }
}

/// Writes `value` in hexadecimal to COM1.
pub fn write_hex(value: u64) {
    let digits = b"0123456789abcdef";
    let mut text = [0u8; 18];
    text[0] = b'0';
    text[1] = b'x';
    for (index, byte) in text[2..].iter_mut().enumerate() {
        *byte = digits[((value >> (60 - 4 * index)) & 0xf) as usize];
    }
    write_str(core::str::from_utf8(&text).unwrap_or("?"));
}

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

/// Timer interrupts taken.
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// The vector the PIC's line 0 (the PIT) arrives on.
pub const TIMER_VECTOR: u8 = 0x20;

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

/// Stops for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts off, HLT only waits.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
