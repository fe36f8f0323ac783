//! One check per platform feature; each prints `PASS name` or
//! `FAIL name: why`.

use crate::hardware::{self, write_hex, write_str};
use vm_platform::{COM1, CPUID_SIGNATURE, TEST_DEVICE, hypercall};

/// A check: `Err` says what went wrong.
type Check = fn() -> Result<(), &'static str>;

/// Runs every check; returns how many failed.
pub fn run() -> u8 {
    let checks: [(&str, Check); 6] = [
        ("cpuid", cpuid),
        ("port-io", port_io),
        ("mmio", mmio),
        ("hypercall", hypercall_ping),
        ("pit-timer-and-hlt", pit_timer),
        ("control-registers", control_registers),
    ];
    let mut failures = 0;
    for (name, check) in checks {
        match check() {
            Ok(()) => {
                write_str("PASS ");
                write_str(name);
                write_str("\n");
            }
            Err(why) => {
                failures += 1;
                write_str("FAIL ");
                write_str(name);
                write_str(": ");
                write_str(why);
                write_str("\n");
            }
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
