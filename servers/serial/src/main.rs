//! serial: drives the 16550 UART on COM1. A second thread takes each
//! receive interrupt and moves the typed bytes into a buffer; the server
//! thread answers reads from it (at once, also when nothing was typed) and
//! writes.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use runtime::capability::{self, Destination, Endpoint, IoPorts, Irq, Memory, Notification, Slot, Slots};
use runtime::ipc::Buffer;
use serial::{MAX_READ, MAX_WRITE, Reply, Request, Serial};
use service::process::{CSPACE_SLOTS, slot};
use service::{ErrorCode, Response};
use spin::Mutex;

runtime::entry!(main);

/// COM1's interrupt line, as the system description gives it.
const IRQ: Irq = Irq(slot::FIRST_DEVICE);
/// COM1's eight ports.
const PORTS: IoPorts = IoPorts(Slot(slot::FIRST_DEVICE.0 + 1));
const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const DATA_READY: u64 = 1;
const TRANSMIT_EMPTY: u64 = 1 << 5;

/// Bytes typed and not yet read.
static INPUT: Mutex<VecDeque<u8>> = Mutex::new(VecDeque::new());

fn main() -> u64 {
    match run() {
        Ok(()) => 0,
        Err(error) => {
            runtime::println!("serial: cannot start: {error:?}");
            1
        }
    }
}

fn run() -> Result<(), abi::Error> {
    let [first_free, _] = runtime::start_arguments();
    let slots = Slots::new(first_free, CSPACE_SLOTS);
    let memory = Memory(slot::MEMORY);
    let buffer = Buffer::main_thread();
    // Interrupts arrive on a notification.
    let interrupts = memory.create_notification(slots.allocate()?)?;
    let interrupt_signal = Notification(slots.allocate()?);
    capability::mint(interrupts, Destination::own(interrupt_signal.0), abi::Rights::WRITE, 1)?;
    IRQ.bind(interrupt_signal)?;
    PORTS.write(COM1 + 1, 1, 1)?; // receive-data interrupt on
    service::process::thread_spawner(&slots).spawn(move |_| receive_loop(interrupts))?;
    let endpoint = Endpoint(slot::ENDPOINT);
    service::names::register("serial", endpoint.0, buffer)
        .map_err(|_| abi::Error::new(abi::ErrorKind::InvalidState))?;
    let error = service::serve::<Serial>(endpoint, buffer, None, |request| handle(request.body));
    Err(error)
}

/// The interrupt thread: acknowledge, drain the UART into the buffer, wait.
///
/// COM1's line is edge-triggered, and the I/O APIC drops an edge that
/// arrives while the line is masked. Unmasking before draining means a byte
/// that arrives after the last look raises an edge the kernel sees; draining
/// before unmasking would lose it, and with it every later interrupt, since
/// the UART holds its line up until the byte is read.
fn receive_loop(interrupts: Notification) -> u64 {
    loop {
        let _ = IRQ.acknowledge();
        // Also drains what arrived before the line was bound.
        while PORTS.read(LINE_STATUS, 1).is_ok_and(|status| status & DATA_READY != 0) {
            let Ok(byte) = PORTS.read(COM1, 1) else { break };
            INPUT.lock().push_back(byte as u8);
        }
        if interrupts.wait().is_err() {
            return 1;
        }
    }
}

fn handle(request: Request) -> Result<Response<Reply>, ErrorCode> {
    match request {
        Request::Write(bytes) => {
            if bytes.len() > MAX_WRITE {
                return Err(ErrorCode::TooLong);
            }
            for byte in bytes {
                while PORTS
                    .read(LINE_STATUS, 1)
                    .is_ok_and(|status| status & TRANSMIT_EMPTY == 0)
                {
                    core::hint::spin_loop();
                }
                PORTS.write(COM1, 1, u64::from(byte)).map_err(|_| ErrorCode::Denied)?;
            }
            Ok(Reply::Written.into())
        }
        Request::Read { max } => {
            let max = usize::from(max.min(MAX_READ));
            let mut input = INPUT.lock();
            let count = input.len().min(max);
            Ok(Reply::Data(input.drain(..count).collect()).into())
        }
    }
}
