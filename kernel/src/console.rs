//! Console input: COM1's receive interrupt, routed through the I/O APIC,
//! fills a small buffer that the kernel reports when the system stops.
//! (A user-space serial driver takes the port over in a later stage.)

use crate::arch::{acpi::InterruptRouting, apic, serial};
use spin::Mutex;

const CAPACITY: usize = 256;

struct Input {
    bytes: [u8; CAPACITY],
    len: usize,
    dropped: usize,
}

static INPUT: Mutex<Input> = Mutex::new(Input {
    bytes: [0; CAPACITY],
    len: 0,
    dropped: 0,
});
static COM1_LINE: spin::Once<u8> = spin::Once::new();

/// Routes COM1's interrupt to the kernel and takes what already arrived.
pub fn init(routing: &InterruptRouting) {
    let gsi = routing.isa_irq(serial::COM1_ISA_IRQ);
    let line = *COM1_LINE.call_once(|| gsi.number.saturating_sub(routing.ioapic_gsi_base) as u8);
    apic::set_line_masked(line, false);
    drain();
}

/// The I/O APIC line the kernel console uses (not for user drivers).
pub fn line() -> Option<u8> {
    COM1_LINE.get().copied()
}

/// Called for an interrupt on the console's line.
pub fn interrupt() {
    drain();
}

fn drain() {
    let mut input = INPUT.lock();
    while let Some(byte) = serial::read_byte() {
        let len = input.len;
        match input.bytes.get_mut(len) {
            Some(slot) => {
                *slot = byte;
                input.len += 1;
            }
            None => input.dropped += 1,
        }
    }
}

/// Whether the system may stop. Always, except in the console-input test,
/// where the kernel idles (taking COM1 interrupts) until a whole line has
/// arrived, so the test can check that typed input reaches the kernel.
pub fn ready_to_stop() -> bool {
    if cfg!(feature = "console-input-test") {
        static ANNOUNCED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if !ANNOUNCED.swap(true, core::sync::atomic::Ordering::Relaxed) {
            log::info!("console: waiting for a line of input");
        }
        let input = INPUT.lock();
        return input.bytes.iter().take(input.len).any(|&byte| byte == b'\n');
    }
    true
}

/// Logs what came in on the console, if anything.
pub fn report() {
    drain();
    let input = INPUT.lock();
    if input.len > 0 {
        let received = input.bytes.get(..input.len).unwrap_or_default();
        let text = core::str::from_utf8(received).unwrap_or("<not UTF-8>");
        log::info!(
            "console: received {} bytes of input: {:?}",
            input.len + input.dropped,
            text
        );
    }
}
