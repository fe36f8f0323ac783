//! The parts kernel-tests plays in processes of its own: each copy finds
//! the capabilities it needs at fixed slots of its CSpace.

use abi::fault;
use runtime::capability::{self, Endpoint, Slot};
use runtime::ipc::{Buffer, Message};
use runtime::process::IPC_BUFFER;

/// Slot of the endpoint a child process serves or reports on.
pub const CHILD_ENDPOINT: Slot = Slot(1);
/// First empty slot of a child's CSpace, for capabilities it receives.
pub const CHILD_RECEIVE_SLOT: Slot = Slot(2);
/// An address nothing is mapped at, for the paging test.
pub const UNMAPPED: u64 = 0x0000_1000_0000_0000;
/// Label of a request that carries a capability to identify.
pub const LABEL_IDENTIFY: u32 = 3;
/// Label of a request whose words 0..n are summed.
pub const LABEL_SUM: u32 = 2;
/// Label asking a server to stop.
pub const LABEL_QUIT: u32 = 9;

/// A role a copy of kernel-tests plays.
#[derive(Clone, Copy)]
pub enum Role {
    /// Serves calls on its endpoint: echoes words plus one, sums long
    /// messages, identifies received capabilities.
    EchoServer = 0x1000,
    /// Writes to an unmapped address (so its pager must map it), then
    /// reports the value it reads back.
    PagedWriter = 0x1001,
    /// Deletes the last capabilities to its own address space and thread,
    /// so the kernel takes both down while the thread is running.
    SelfDestruct = 0x1002,
    /// Sets the direction flag and executes an invalid instruction: an
    /// exception from a thread whose DF is set, as a thread interrupted
    /// inside a backward copy has.
    BackwardFault = 0x1003,
}

/// Where a self-destructing child finds its own address space and thread.
pub const CHILD_OWN_ADDRESS_SPACE: Slot = Slot(3);
/// See [`CHILD_OWN_ADDRESS_SPACE`].
pub const CHILD_OWN_THREAD: Slot = Slot(4);

impl Role {
    /// The role `argument` names.
    pub fn from_argument(argument: u64) -> Option<Self> {
        match argument {
            0x1000 => Some(Self::EchoServer),
            0x1001 => Some(Self::PagedWriter),
            0x1002 => Some(Self::SelfDestruct),
            0x1003 => Some(Self::BackwardFault),
            _ => None,
        }
    }

    /// Plays the role; returns the exit status.
    pub fn run(self, argument: u64) -> u64 {
        // SAFETY: the spawner mapped this process's IPC buffer at IPC_BUFFER
        // and this is its only thread.
        let buffer = unsafe { Buffer::at(IPC_BUFFER) };
        match self {
            Self::EchoServer => echo_server(Endpoint(CHILD_ENDPOINT), buffer),
            Self::PagedWriter => paged_writer(argument),
            Self::SelfDestruct => {
                let _ = Endpoint(CHILD_ENDPOINT).send(&Message::new(Self::SelfDestruct as u32, &[]));
                let _ = capability::delete(capability::Destination::own(CHILD_OWN_ADDRESS_SPACE));
                let _ = capability::delete(capability::Destination::own(CHILD_OWN_THREAD));
                // Not reached: the thread died with its last capability.
                4
            }
            Self::BackwardFault => backward_fault(),
        }
    }
}

/// The reply to one echo-server request.
pub fn serve(request: &Message, buffer: Buffer) -> Message {
    match request.label {
        LABEL_SUM => {
            let count = usize::from(request.length);
            let registers: u64 = request.words.iter().take(count.min(8)).sum();
            let long: u64 = (8..count).map(|index| buffer.word(index)).sum();
            Message::new(LABEL_SUM, &[registers + long, u64::from(request.length)])
        }
        LABEL_IDENTIFY => {
            let identity = capability::identify(CHILD_RECEIVE_SLOT);
            let reply = match identity {
                Ok(identity) => [
                    1,
                    identity.object_type.map_or(0, |kind| kind as u64),
                    u64::from(identity.rights.bits()),
                ],
                Err(_) => [0, 0, 0],
            };
            let _ = capability::delete(capability::Destination::own(CHILD_RECEIVE_SLOT));
            Message::new(LABEL_IDENTIFY, &reply)
        }
        label => {
            let mut words = request.words;
            for word in &mut words {
                *word = word.wrapping_add(1);
            }
            let mut reply = Message::new(label, &words[..usize::from(request.length.min(8))]);
            reply.length = request.length.min(8);
            reply
        }
    }
}

fn echo_server(endpoint: Endpoint, buffer: Buffer) -> u64 {
    buffer.set_receive_slots(&[CHILD_RECEIVE_SLOT]);
    let Ok(mut request) = endpoint.receive() else { return 2 };
    loop {
        if request.message.label == LABEL_QUIT {
            let _ = runtime::ipc::reply(&Message::new(LABEL_QUIT, &[]));
            return 0;
        }
        let reply = serve(&request.message, buffer);
        buffer.set_receive_slots(&[CHILD_RECEIVE_SLOT]);
        request = match endpoint.reply_receive(&reply) {
            Ok(request) => request,
            Err(_) => return 3,
        };
    }
}

fn paged_writer(value: u64) -> u64 {
    let target = UNMAPPED as *mut u64;
    // SAFETY: deliberately touches an unmapped page: the kernel sends the
    // fault to this process's pager, which maps a frame there and resumes
    // it, after which the write and read are to ordinary memory.
    let read_back = unsafe {
        target.write_volatile(value);
        target.read_volatile()
    };
    let report = Message::new(fault::FAULT_RESUME, &[read_back]);
    let _ = Endpoint(CHILD_ENDPOINT).call(&report);
    0
}

fn backward_fault() -> u64 {
    // SAFETY: sets DF and raises #UD; nothing runs after it, since the
    // handler never resumes this thread.
    unsafe { core::arch::asm!("std", "ud2", options(noreturn)) }
}
