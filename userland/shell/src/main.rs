//! shell: a command line on the serial console, reading and writing
//! through the serial driver, asking init for the process table and to
//! power off, and working with files through the filesystem server.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod files;
mod line;
mod machines;
mod supervision;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use pci::Pci;
use runtime::capability::Slots;
use runtime::ipc::Buffer;
use serial::{Reply, Request, Serial};
use service::Client;
use service::init::{Init, InitReply, InitRequest};
use service::process::{CSPACE_SLOTS, slot};

runtime::entry!(main);

/// How long the shell waits between asking the serial driver for input.
const INPUT_POLL_MS: u64 = 10;

const HELP: &str = "commands:
  help       this list
  echo TEXT  prints TEXT
  uptime     time since boot
  meminfo    free memory, in all and in each process's quota
  lspci      the devices on the PCI bus
  poweroff   stops the system
";

/// The console, through the serial driver.
pub struct Console {
    serial: Client<Serial>,
    buffer: Buffer,
    /// Bytes read but left for the next reader (typed after a command
    /// line, before the command ran).
    unread: RefCell<Vec<u8>>,
}

impl Console {
    /// Writes text (`\n` becomes `\r\n`).
    pub fn write(&self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len());
        for byte in text.bytes() {
            if byte == b'\n' {
                bytes.push(b'\r');
            }
            bytes.push(byte);
        }
        for chunk in bytes.chunks(serial::MAX_WRITE) {
            let _ = self.serial.call(&Request::Write(chunk.to_vec()));
        }
    }

    /// Waits for typed bytes (asking the driver every few milliseconds).
    pub fn read(&self) -> Vec<u8> {
        loop {
            let bytes = self.poll();
            if !bytes.is_empty() {
                return bytes;
            }
            runtime::syscall::sleep_ms(INPUT_POLL_MS);
        }
    }

    /// Bytes typed so far, perhaps none; never waits.
    pub fn poll(&self) -> Vec<u8> {
        let unread = core::mem::take(&mut *self.unread.borrow_mut());
        if !unread.is_empty() {
            return unread;
        }
        match self.serial.call(&Request::Read { max: 64 }) {
            Ok(Reply::Data(bytes)) => bytes,
            _ => Vec::new(),
        }
    }

    /// Gives `bytes` back, to be read before anything typed after them.
    pub fn unread(&self, mut bytes: Vec<u8>) {
        let mut unread = self.unread.borrow_mut();
        bytes.append(&mut unread);
        *unread = bytes;
    }
}

fn main() -> u64 {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let buffer = Buffer::main_thread();
    let Ok(serial_slot) = slots.allocate() else { return 1 };
    let Ok(serial) = Client::<Serial>::connect(serial_slot, buffer) else {
        runtime::println!("shell: no serial service");
        return 1;
    };
    let console = Console {
        serial,
        buffer,
        unread: RefCell::new(Vec::new()),
    };
    let init = Client::<Init>::with_endpoint(slot::INIT, buffer);
    console.write("shell: type 'help' for the commands\n");
    let mut editor = line::Editor::new();
    let mut files = files::Connection::new();
    let mut supervision = supervision::Connection::default();
    let mut machines = machines::Connection::default();
    loop {
        console.write("> ");
        let command = editor.read_line(&console);
        run(
            command.trim(),
            &console,
            &init,
            &slots,
            &mut files,
            &mut supervision,
            &mut machines,
        );
    }
}

/// Lists the PCI devices, asking the pci server.
fn lspci(console: &Console, slots: &Slots) {
    let client = slots
        .allocate()
        .ok()
        .and_then(|slot| Client::<Pci>::connect(slot, console.buffer).ok());
    let Some(client) = client else {
        console.write("lspci: no pci service\n");
        return;
    };
    match client.call(&pci::Request::Devices) {
        Ok(pci::Reply::Devices(devices)) => {
            let mut text = String::new();
            for device in devices {
                let address = device.address;
                let [class, subclass, interface] = device.class;
                text.push_str(&format!(
                    "{:02x}:{:02x}.{} {:04x}:{:04x} class {class:02x}.{subclass:02x}.{interface:02x}",
                    address.bus, address.device, address.function, device.vendor, device.device
                ));
                for bar in device.bars {
                    match bar {
                        pci::Bar::Ports { base, size, .. } => {
                            text.push_str(&format!(" ports {base:#x}+{size:#x}"));
                        }
                        pci::Bar::Memory { base, size, .. } => {
                            text.push_str(&format!(" memory {base:#x}+{size:#x}"));
                        }
                    }
                }
                if device.interrupt_line != 255 {
                    text.push_str(&format!(" irq {}", device.interrupt_line));
                }
                text.push('\n');
            }
            console.write(&text);
        }
        Ok(_) => console.write("lspci: unexpected reply\n"),
        Err(error) => console.write(&format!("lspci: {error:?}\n")),
    }
}

fn run(
    command: &str,
    console: &Console,
    init: &Client<Init>,
    slots: &Slots,
    files: &mut files::Connection,
    supervision: &mut supervision::Connection,
    machines: &mut machines::Connection,
) {
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "" => {}
        "help" => {
            console.write(HELP);
            console.write(supervision::HELP);
            console.write(files::HELP);
            console.write(machines::HELP);
        }
        "echo" => console.write(&format!("{rest}\n")),
        "uptime" => {
            let seconds = runtime::syscall::uptime_seconds();
            console.write(&format!(
                "up {}:{:02}:{:02}\n",
                seconds / 3600,
                seconds / 60 % 60,
                seconds % 60
            ));
        }
        "meminfo" => match init.call(&InitRequest::Memory) {
            Ok(InitReply::Memory { free_kib, pools }) => {
                let mut text =
                    format!("free, not given to any process: {free_kib} KiB\nPROCESS          QUOTA      LEFT\n");
                for (name, quota, left) in pools {
                    text.push_str(&format!(
                        "{name:<16} {:>9} {:>9}\n",
                        format!("{quota} KiB"),
                        format!("{left} KiB")
                    ));
                }
                console.write(&text);
            }
            Ok(_) => console.write("meminfo: unexpected reply\n"),
            Err(error) => console.write(&format!("meminfo: {error:?}\n")),
        },
        "lspci" => lspci(console, slots),
        "vm" => machines.run(rest, console, slots),
        name if supervision::is_supervision_command(name) => supervision.run(name, rest, console, init, slots),
        name if files::is_file_command(name) => files.run(name, rest, console, slots),
        "poweroff" => {
            console.write("powering off\n");
            let _ = init.call(&InitRequest::PowerOff);
        }
        other => console.write(&format!("{other}: unknown command (try 'help')\n")),
    }
}
