//! Interrupt controllers and the timer: the legacy PIC is remapped and
//! masked, the local APIC delivers a periodic tick calibrated against the
//! PIT, and the I/O APIC starts with every line masked.

use super::acpi::InterruptRouting;
use super::paging;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;
use x86_64::{PhysAddr, VirtAddr};

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of I/O APIC line 0; line `n` uses `IOAPIC_VECTOR_BASE + n`.
pub const IOAPIC_VECTOR_BASE: u8 = 0x30;
/// Vector of spurious local APIC interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Timer ticks per second.
pub const TICK_HZ: u64 = 100;

const IA32_APIC_BASE: u32 = 0x1b;
const LAPIC_ID: usize = 0x20;
const LAPIC_EOI: usize = 0xb0;
const LAPIC_SPURIOUS: usize = 0xf0;
const LAPIC_TIMER_LVT: usize = 0x320;
const LAPIC_TIMER_INITIAL: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;

/// Polarity and trigger of each I/O APIC line, from the MADT (bit 13
/// active low, bit 15 level-triggered, as in a redirection entry).
static LINE_MODES: spin::Mutex<[u32; 24]> = spin::Mutex::new([0; 24]);

static LAPIC: AtomicU64 = AtomicU64::new(0);
/// Physical pages of the local and I/O APIC: the kernel's, never a driver's.
static APIC_PAGES: [AtomicU64; 2] = [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)];
/// Timer ticks since boot.
pub static TICKS: AtomicU64 = AtomicU64::new(0);
static IOAPIC: AtomicU64 = AtomicU64::new(0);
static IOAPIC_GSI_BASE: AtomicU64 = AtomicU64::new(0);

fn lapic_register(offset: usize) -> *mut u32 {
    (LAPIC.load(Ordering::Relaxed) as usize + offset) as *mut u32
}

fn lapic_read(offset: usize) -> u32 {
    // SAFETY: `init` mapped the LAPIC page uncached before any caller runs;
    // offsets are the architectural register offsets.
    unsafe { lapic_register(offset).read_volatile() }
}

fn lapic_write(offset: usize, value: u32) {
    // SAFETY: as in `lapic_read`.
    unsafe { lapic_register(offset).write_volatile(value) }
}

fn ioapic_write(register: u32, value: u32) {
    let base = IOAPIC.load(Ordering::Relaxed) as *mut u32;
    // SAFETY: `init` mapped the I/O APIC's select (offset 0) and window
    // (offset 0x10) registers uncached.
    unsafe {
        base.write_volatile(register);
        base.add(4).write_volatile(value);
    }
}

fn ioapic_read(register: u32) -> u32 {
    let base = IOAPIC.load(Ordering::Relaxed) as *mut u32;
    // SAFETY: as in `ioapic_write`.
    unsafe {
        base.write_volatile(register);
        base.add(4).read_volatile()
    }
}

/// Whether the page at `physical` holds the kernel's interrupt controllers.
pub fn is_kernel_device_page(physical: u64) -> bool {
    APIC_PAGES
        .iter()
        .any(|page| page.load(Ordering::Relaxed) == physical & !0xfff)
}

/// Signals end of interrupt to the local APIC.
pub fn end_of_interrupt() {
    lapic_write(LAPIC_EOI, 0);
}

/// Sets up the PIC, local APIC, timer and I/O APIC.
pub fn init(routing: &InterruptRouting) {
    disable_pic();
    // SAFETY: IA32_APIC_BASE is architectural on every x86-64 CPU.
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() } & 0x000f_ffff_ffff_f000;
    LAPIC.store(
        paging::map_device(PhysAddr::new(base), 4096).as_u64(),
        Ordering::Relaxed,
    );
    lapic_write(LAPIC_SPURIOUS, 0x100 | u32::from(SPURIOUS_VECTOR));
    APIC_PAGES[0].store(base, Ordering::Relaxed);
    APIC_PAGES[1].store(routing.ioapic_address & !0xfff, Ordering::Relaxed);

    let ticks_per_10ms = calibrate_timer();
    lapic_write(LAPIC_TIMER_DIVIDE, 0x3); // divide by 16, as in calibration
    lapic_write(LAPIC_TIMER_LVT, u32::from(TIMER_VECTOR) | LVT_PERIODIC);
    let per_tick = (u64::from(ticks_per_10ms) * 100 / TICK_HZ).max(1) as u32;
    lapic_write(LAPIC_TIMER_INITIAL, per_tick);

    let ioapic: VirtAddr = paging::map_device(PhysAddr::new(routing.ioapic_address), 0x20);
    IOAPIC.store(ioapic.as_u64(), Ordering::Relaxed);
    IOAPIC_GSI_BASE.store(u64::from(routing.ioapic_gsi_base), Ordering::Relaxed);
    let lines = ((ioapic_read(1) >> 16) & 0xff) + 1;
    for line in 0..lines {
        ioapic_write(0x10 + 2 * line, LVT_MASKED);
    }
    // ISA lines are edge-triggered and active high unless the MADT says
    // otherwise; PCI lines (16 and up) are level-triggered, active low.
    let mut modes = LINE_MODES.lock();
    for (line, mode) in modes.iter_mut().enumerate() {
        *mode = if line < 16 { 0 } else { (1 << 13) | (1 << 15) };
    }
    for irq in 0..16 {
        let gsi = routing.isa_irq(irq);
        let line = gsi.number.saturating_sub(routing.ioapic_gsi_base) as usize;
        if let Some(mode) = modes.get_mut(line) {
            *mode = u32::from(gsi.active_low) << 13 | u32::from(gsi.level_triggered) << 15;
        }
    }
    drop(modes);
    log::info!(
        "apic: local APIC {:#x} timer {} Hz ({} bus ticks/10 ms), I/O APIC {:#x} with {} lines",
        base,
        TICK_HZ,
        ticks_per_10ms * 16,
        routing.ioapic_address,
        lines
    );
}

/// Masks or unmasks I/O APIC `line`, which delivers to this CPU on vector
/// `IOAPIC_VECTOR_BASE + line` with the line's polarity and trigger mode.
pub fn set_line_masked(line: u8, masked: bool) {
    let Some(&mode) = LINE_MODES.lock().get(usize::from(line)) else {
        return;
    };
    let line = u32::from(line);
    let low = (u32::from(IOAPIC_VECTOR_BASE) + line) | mode | if masked { LVT_MASKED } else { 0 };
    let destination = lapic_read(LAPIC_ID) >> 24;
    ioapic_write(0x11 + 2 * line, destination << 24);
    ioapic_write(0x10 + 2 * line, low);
}

/// Remaps the 8259 pair away from the exception vectors, then masks it.
fn disable_pic() {
    let writes: [(u16, u8); 10] = [
        (0x20, 0x11),
        (0xa0, 0x11), // ICW1: initialise, ICW4 follows
        (0x21, 0xf0),
        (0xa1, 0xf8), // ICW2: vectors 0xf0.. and 0xf8..
        (0x21, 0x04),
        (0xa1, 0x02), // ICW3: cascade on IRQ 2
        (0x21, 0x01),
        (0xa1, 0x01), // ICW4: 8086 mode
        (0x21, 0xff),
        (0xa1, 0xff), // mask everything
    ];
    for (port, value) in writes {
        // SAFETY: the 8259 command and data ports; this is the documented
        // initialisation sequence and touches no memory.
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

/// Counts local APIC timer ticks (divide by 16) during 10 ms of PIT
/// channel 2.
fn calibrate_timer() -> u32 {
    const PIT_HZ: u32 = 1_193_182;
    let count = (PIT_HZ / 100) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    lapic_write(LAPIC_TIMER_DIVIDE, 0x3);
    lapic_write(LAPIC_TIMER_LVT, LVT_MASKED);
    // SAFETY: PIT and speaker-gate ports; no memory is touched. Channel 2
    // is wired to nothing but the speaker, whose output bit 1 stays off.
    unsafe {
        let value = gate.read();
        gate.write((value & !0x02) | 0x01);
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let value = gate.read();
        gate.write(value & !0x01); // restart the count
        gate.write(value | 0x01);
        lapic_write(LAPIC_TIMER_INITIAL, u32::MAX);
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
    }
    let elapsed = u32::MAX - lapic_read(LAPIC_TIMER_CURRENT);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    elapsed
}
