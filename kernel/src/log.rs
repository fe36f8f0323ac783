//! Kernel logging with levels, on the serial console.
//!
//! Uses the `log` facade so every module writes `log::info!` and friends.
//! Lines are written whole under one lock so that output stays readable.

use crate::arch::serial;
use core::fmt::{self, Write};
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

/// Serialises writers to the console.
static CONSOLE: Mutex<Console> = Mutex::new(Console);

struct Console;

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        serial::write_bytes(text.as_bytes());
        Ok(())
    }
}

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let _ = writeln!(CONSOLE.lock(), "[{level}] {}", record.args());
    }

    fn flush(&self) {}
}

/// Starts the console and installs the logger at `level`.
pub fn init(level: LevelFilter) {
    serial::init();
    // Only fails if a logger is already set, which would be a second call.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Writes raw bytes to the console as one unit (the `DebugWrite` syscall).
pub fn write_raw(bytes: &[u8]) {
    let _console = CONSOLE.lock();
    serial::write_bytes(bytes);
}

/// Writes formatted text without a level prefix, for reports that must get
/// out even when the console lock is held by the code that failed.
pub fn write_emergency(arguments: fmt::Arguments) {
    // SAFETY: the kernel runs with interrupts off on one CPU and this is
    // only called on the way to stopping the machine, so no other holder of
    // the lock can resume and observe the broken exclusion.
    unsafe { CONSOLE.force_unlock() };
    let _ = CONSOLE.lock().write_fmt(arguments);
}
