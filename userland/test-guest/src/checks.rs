//! One check per platform feature; each prints `PASS name` or
//! `FAIL name: why`.

use crate::hardware::{self, write_hex, write_str};
use vm_platform::{COM1, CPUID_SIGNATURE, IO_APIC_PIT_PIN, LOCAL_APIC, LOCAL_APIC_TIMER_HZ, TEST_DEVICE, hypercall};

/// A check: `Err` says what went wrong. It gets the guest's RAM in MiB if
/// the command line said (`ram-mib=N`).
type Check = fn(Option<u32>) -> Result<(), &'static str>;

/// Runs every check; returns how many failed.
pub fn run(ram_mib: Option<u32>) -> u8 {
    let checks: [(&str, Check); 9] = [
        ("cpuid", |_| cpuid()),
        ("port-io", |_| port_io()),
        ("mmio", |_| mmio()),
        ("hypercall", |_| hypercall_ping()),
        ("pit-timer-and-hlt", |_| pit_timer()),
        ("lapic-timer-and-hlt", |_| lapic_timer()),
        ("ioapic", |_| ioapic()),
        ("cmos", cmos),
        ("control-registers", |_| control_registers()),
    ];
    let mut failures = 0;
    for (name, check) in checks {
        if !test_guest::report(name, check(ram_mib)) {
            failures += 1;
        }
    }
    failures
}

/// The hypervisor leaf names our VMM; leaf 1 says a hypervisor is present
/// and hides VMX; the extended leaf hides SVM.
fn cpuid() -> Result<(), &'static str> {
    let [top, ebx, ecx, edx] = hardware::cpuid(0x4000_0000);
    let mut signature = [0u8; 12];
    signature[0..4].copy_from_slice(&ebx.to_le_bytes());
    signature[4..8].copy_from_slice(&ecx.to_le_bytes());
    signature[8..12].copy_from_slice(&edx.to_le_bytes());
    if &signature != CPUID_SIGNATURE || top < 0x4000_0000 {
        return Err("leaf 0x40000000 does not name the VMM");
    }
    let [_, _, features, _] = hardware::cpuid(1);
    if features & (1 << 31) == 0 {
        return Err("leaf 1 does not report a hypervisor");
    }
    if features & (1 << 5) != 0 {
        return Err("leaf 1 offers VMX to the guest");
    }
    let [_, _, extended, _] = hardware::cpuid(0x8000_0001);
    if extended & (1 << 2) != 0 {
        return Err("leaf 0x80000001 offers SVM to the guest");
    }
    Ok(())
}

/// The UART's scratch register keeps what is written; its line status
/// says the transmitter is empty.
fn port_io() -> Result<(), &'static str> {
    for value in [0x5a, 0xa5, 0x00, 0xff] {
        hardware::outb(COM1 + 7, value);
        if hardware::inb(COM1 + 7) != value {
            return Err("the scratch register did not keep its value");
        }
    }
    if hardware::inb(COM1 + 5) & 0x60 != 0x60 {
        return Err("the line status does not show an empty transmitter");
    }
    Ok(())
}

/// The test device reflects a write at offset 0 and its inverse at 4.
fn mmio() -> Result<(), &'static str> {
    for value in [0x1234_5678, 0xdead_beef, 0] {
        hardware::mmio_write(TEST_DEVICE, value);
        if hardware::mmio_read(TEST_DEVICE) != value {
            return Err("offset 0 did not read back");
        }
        if hardware::mmio_read(TEST_DEVICE + 4) != !value {
            return Err("offset 4 is not the inverse");
        }
    }
    Ok(())
}

/// PING answers with the reply constant plus the argument; an unknown
/// number answers UNKNOWN.
fn hypercall_ping() -> Result<(), &'static str> {
    let answer = hardware::hypercall(hypercall::PING, 42);
    if answer != hypercall::PING_REPLY + 42 {
        write_str("hypercall answered ");
        write_hex(answer);
        write_str("\n");
        return Err("PING got the wrong answer");
    }
    if hardware::hypercall(0xdead, 0) != hypercall::UNKNOWN {
        return Err("an unknown hypercall did not answer UNKNOWN");
    }
    Ok(())
}

/// With the PIC and PIT programmed for 100 Hz, HLT wakes on timer
/// interrupts: ten of them arrive.
fn pit_timer() -> Result<(), &'static str> {
    hardware::install_idt();
    hardware::start_pit(100);
    for _ in 0..1_000 {
        if hardware::ticks() >= 10 {
            return Ok(());
        }
        hardware::wait_for_interrupt();
    }
    Err("fewer than ten timer interrupts in a thousand halts")
}

/// Local APIC registers the checks use.
mod lapic {
    pub const VERSION: u64 = 0x30;
    pub const TASK_PRIORITY: u64 = 0x80;
    pub const SPURIOUS: u64 = 0xf0;
    pub const COMMAND_LOW: u64 = 0x300;
    pub const LVT_TIMER: u64 = 0x320;
    pub const INITIAL_COUNT: u64 = 0x380;
    pub const CURRENT_COUNT: u64 = 0x390;
    pub const DIVIDE: u64 = 0x3e0;
    /// LVT mask and timer periodic-mode bits.
    pub const MASKED: u32 = 1 << 16;
    pub const PERIODIC: u32 = 1 << 17;
}

/// Halts until `index` of the local-APIC counters reaches `count`, at most
/// `halts` times; whether it did.
fn halt_until_local(index: usize, count: u64, halts: u32) -> bool {
    for _ in 0..halts {
        if hardware::local_ticks(index) >= count {
            return true;
        }
        hardware::wait_for_interrupt();
    }
    hardware::local_ticks(index) >= count
}

/// CPUID and IA32_APIC_BASE show an enabled APIC at the usual address; its
/// timer interrupts once in one-shot mode (and then reads zero) and every
/// period in periodic mode, waking HLT; a self-IPI waits while the task
/// priority holds its class back.
fn lapic_timer() -> Result<(), &'static str> {
    let [_, _, _, features] = hardware::cpuid(1);
    if features & (1 << 9) == 0 {
        return Err("CPUID leaf 1 does not report the APIC");
    }
    let base = hardware::rdmsr(0x1b);
    if base & !0xfff != LOCAL_APIC || base & (1 << 11) == 0 {
        return Err("IA32_APIC_BASE does not show the APIC enabled at 0xfee00000");
    }
    if hardware::lapic_read(lapic::VERSION) & 0xff != 0x14 || hardware::lapic_read(lapic::SPURIOUS) & 0x100 == 0 {
        return Err("the APIC's version or software enable is wrong");
    }
    hardware::install_idt();
    // Only the local APIC interrupts from here: the PIC is masked.
    hardware::outb(0x21, 0xff);
    // Divide by 16: 10 ms is this many counts.
    let ten_ms = (LOCAL_APIC_TIMER_HZ / 16 / 100) as u32;
    hardware::lapic_write(lapic::DIVIDE, 0b0011);
    hardware::lapic_write(lapic::LVT_TIMER, u32::from(hardware::LAPIC_TIMER_VECTOR));
    let start = hardware::local_ticks(0);
    hardware::lapic_write(lapic::INITIAL_COUNT, ten_ms);
    if hardware::lapic_read(lapic::CURRENT_COUNT) > ten_ms {
        return Err("the current count is above the initial count");
    }
    if !halt_until_local(0, start + 1, 1_000) {
        return Err("the one-shot timer did not interrupt");
    }
    if hardware::lapic_read(lapic::CURRENT_COUNT) != 0 {
        return Err("a one-shot timer that fired does not read zero");
    }
    hardware::lapic_write(lapic::LVT_TIMER, u32::from(hardware::LAPIC_TIMER_VECTOR) | lapic::PERIODIC);
    let start = hardware::local_ticks(0);
    hardware::lapic_write(lapic::INITIAL_COUNT, ten_ms);
    let periodic = halt_until_local(0, start + 10, 1_000);
    hardware::lapic_write(lapic::LVT_TIMER, lapic::MASKED);
    hardware::lapic_write(lapic::INITIAL_COUNT, 0);
    if !periodic {
        return Err("fewer than ten periodic timer interrupts in a thousand halts");
    }
    // A self-IPI in class 4 waits while the task priority is 5.
    hardware::lapic_write(lapic::TASK_PRIORITY, 0x50);
    let before = hardware::local_ticks(1);
    hardware::lapic_write(lapic::COMMAND_LOW, (0b01 << 18) | u32::from(hardware::SELF_IPI_VECTOR));
    hardware::enable_interrupts_briefly();
    let held = hardware::local_ticks(1) == before;
    hardware::lapic_write(lapic::TASK_PRIORITY, 0);
    hardware::enable_interrupts_briefly();
    if !held || hardware::local_ticks(1) != before + 1 {
        return Err("the self-IPI did not respect the task priority");
    }
    Ok(())
}

/// The I/O APIC has 24 pins; a redirection entry reads back as written;
/// the PIT's interrupts arrive through pin 2 with the PIC masked, and
/// COM1's transmitter-empty interrupt through pin 4.
fn ioapic() -> Result<(), &'static str> {
    let version = hardware::ioapic_read(1);
    if version & 0xff != 0x11 || (version >> 16) & 0xff != 23 {
        return Err("the version register does not show 24 pins");
    }
    let low_index = 0x10 + IO_APIC_PIT_PIN * 2;
    let entry = u32::from(hardware::IO_APIC_VECTOR); // fixed, physical, edge, unmasked
    hardware::ioapic_write(low_index + 1, 0); // to APIC ID 0
    hardware::ioapic_write(low_index, entry);
    if hardware::ioapic_read(low_index) != entry || hardware::ioapic_read(low_index + 1) != 0 {
        return Err("the redirection entry did not read back");
    }
    hardware::install_idt();
    hardware::start_pit(100);
    hardware::outb(0x21, 0xff);
    let start = hardware::local_ticks(2);
    let arrived = halt_until_local(2, start + 5, 1_000);
    hardware::ioapic_write(low_index, entry | (1 << 16));
    if !arrived {
        return Err("fewer than five PIT interrupts through the I/O APIC in a thousand halts");
    }
    // COM1: OUT2 and the transmitter-empty interrupt on, pin 4 unmasked.
    let serial_index = 0x10 + vm_platform::COM1_INTERRUPT * 2;
    hardware::ioapic_write(serial_index + 1, 0);
    hardware::ioapic_write(serial_index, u32::from(hardware::SERIAL_VECTOR));
    let before = hardware::local_ticks(3);
    hardware::outb(COM1 + 4, 0x08);
    hardware::outb(COM1 + 1, 0x02);
    hardware::enable_interrupts_briefly();
    let identified = hardware::inb(COM1 + 2);
    hardware::outb(COM1 + 1, 0);
    hardware::ioapic_write(serial_index, u32::from(hardware::SERIAL_VECTOR) | (1 << 16));
    if hardware::local_ticks(3) != before + 1 || identified & 0x0f != 0x02 {
        return Err("COM1's transmitter-empty interrupt did not arrive through pin 4");
    }
    Ok(())
}

/// A CMOS register as a binary number from BCD; `None` if it is not BCD.
fn bcd(value: u8) -> Option<u8> {
    let (high, low) = (value >> 4, value & 0xf);
    (high < 10 && low < 10).then_some(high * 10 + low)
}

/// A 16-bit CMOS value from registers `low` and `low + 1`.
fn cmos_word(low: u8) -> u32 {
    u32::from(hardware::cmos_read(low)) | (u32::from(hardware::cmos_read(low + 1)) << 8)
}

/// The clock reads in BCD and in range, and its seconds advance while the
/// guest halts; the memory-size registers agree with each other and with
/// the RAM the command line names; the rest is storage.
fn cmos(ram_mib: Option<u32>) -> Result<(), &'static str> {
    if hardware::cmos_read(0x0d) & 0x80 == 0 {
        return Err("register D does not report valid time");
    }
    if hardware::cmos_read(0x0b) & 0x06 != 0x02 {
        return Err("register B is not BCD, 24-hour");
    }
    let time = || {
        // Wait out an update in progress, as a driver must.
        for _ in 0..10_000 {
            if hardware::cmos_read(0x0a) & 0x80 == 0 {
                break;
            }
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(|index| bcd(hardware::cmos_read(index)))
    };
    let [Some(second), Some(minute), Some(hour), Some(day), Some(month), Some(_), Some(century)] = time() else {
        return Err("a clock register is not BCD");
    };
    if second > 59 || minute > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return Err("a clock register is out of range");
    }
    if century < 20 {
        return Err("the century is before 2000");
    }
    hardware::install_idt();
    hardware::start_pit(100);
    let mut advanced = false;
    for _ in 0..300 {
        hardware::wait_for_interrupt();
        if time()[0] != Some(second) {
            advanced = true;
            break;
        }
    }
    hardware::outb(0x21, 0xff);
    if !advanced {
        return Err("the seconds did not advance in three seconds");
    }
    let extended = cmos_word(0x17);
    if cmos_word(0x15) != 640 || cmos_word(0x30) != extended {
        return Err("the base or extended memory registers disagree");
    }
    if let Some(mib) = ram_mib {
        let above_16m = mib.saturating_sub(16) * 16;
        // The extended-memory registers stop at 0xFFFF KiB (64 MiB).
        let extended_kib = (mib.saturating_sub(1) * 1024).min(0xffff);
        if extended != extended_kib || cmos_word(0x34) != above_16m {
            write_str("cmos: extended memory ");
            write_hex(u64::from(extended));
            write_str("\n");
            return Err("the memory-size registers do not match the RAM");
        }
    }
    hardware::cmos_write(0x40, 0x5a);
    if hardware::cmos_read(0x40) != 0x5a {
        return Err("CMOS storage did not keep a byte");
    }
    Ok(())
}

/// CR0 and CR4 read back what the guest wrote, and nothing the
/// virtualisation extension adds: VT-x keeps CR0.NE and CR4.VMXE set
/// under the guest, and must hide both.
fn control_registers() -> Result<(), &'static str> {
    const NUMERIC_ERROR: u64 = 1 << 5;
    const VMX_ENABLE: u64 = 1 << 13;
    let cr0 = hardware::read_cr0();
    if hardware::read_cr4() & VMX_ENABLE != 0 {
        return Err("CR4.VMXE is visible");
    }
    hardware::write_cr0(cr0 & !NUMERIC_ERROR);
    let cleared = hardware::read_cr0();
    hardware::write_cr0(cr0 | NUMERIC_ERROR);
    let set = hardware::read_cr0();
    hardware::write_cr0(cr0);
    if cleared != cr0 & !NUMERIC_ERROR {
        return Err("CR0 does not read back with NE cleared");
    }
    if set != cr0 | NUMERIC_ERROR {
        return Err("CR0 does not read back with NE set");
    }
    Ok(())
}
