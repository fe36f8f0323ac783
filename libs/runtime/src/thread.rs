//! More threads in this address space, each running a closure on a stack
//! and with an IPC buffer of its own.

use crate::capability::{AddressSpace, CSpace, Endpoint, Memory, Slots, Thread};
use crate::ipc::Buffer;
use abi::{Error, Rights};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};

/// Pages of stack a thread gets unless [`ThreadSpawn::stack_pages`] says
/// otherwise.
pub const STACK_PAGES: u64 = 8;
/// The most pages of stack a thread may ask for.
pub const MAX_STACK_PAGES: u64 = 64;
/// Where the next thread's stack and IPC buffer go: each thread takes a
/// stride of address space, with an unmapped page under its stack.
static NEXT_REGION: AtomicU64 = AtomicU64::new(0x0000_5000_0000_0000);
const REGION_STRIDE: u64 = (MAX_STACK_PAGES + 4) * 4096;

/// What a new thread is made from.
pub struct ThreadSpawn<'a> {
    /// Pays for the thread, its stack and IPC buffer.
    pub memory: Memory,
    /// This process's address space.
    pub address_space: AddressSpace,
    /// This process's CSpace.
    pub cspace: CSpace,
    /// Free slots of this CSpace.
    pub slots: &'a Slots,
    /// Where its faults go.
    pub fault_endpoint: Option<Endpoint>,
    /// Its priority (at most the caller's); `None` keeps the caller's.
    pub priority: Option<u8>,
    /// Pages of stack (1..=[`MAX_STACK_PAGES`]).
    pub stack_pages: u64,
}

impl ThreadSpawn<'_> {
    /// Starts a thread running `body`, which gets the thread's IPC buffer;
    /// the thread exits with the status `body` returns.
    ///
    /// # Errors
    /// A failed syscall (memory, slots).
    pub fn spawn(&self, body: impl FnOnce(Buffer) -> u64 + Send + 'static) -> Result<Thread, Error> {
        let region = NEXT_REGION.fetch_add(REGION_STRIDE, Ordering::Relaxed);
        let buffer_address = region;
        let stack_bottom = region + 2 * 4096; // one unmapped guard page between
        let stack_pages = self.stack_pages.clamp(1, MAX_STACK_PAGES);
        let stack_top = stack_bottom + stack_pages * 4096;
        let buffer = self.memory.create_frame(self.slots.allocate()?)?;
        self.address_space
            .map(buffer, buffer_address, Rights::READ | Rights::WRITE)?;
        for page in 0..stack_pages {
            let frame = self.memory.create_frame(self.slots.allocate()?)?;
            self.address_space
                .map(frame, stack_bottom + page * 4096, Rights::READ | Rights::WRITE)?;
        }
        let thread = self.memory.create_thread(self.slots.allocate()?)?;
        thread.configure(self.cspace, self.address_space, buffer_address, self.fault_endpoint)?;
        if let Some(priority) = self.priority {
            thread.set_priority(priority)?;
        }
        let body: Box<Box<dyn FnOnce(Buffer) -> u64 + Send>> = Box::new(Box::new(body));
        let body = Box::into_raw(body) as u64;
        let entry = thread_entry as *const () as u64;
        thread.write_registers(entry, stack_top, body, buffer_address)?;
        thread.start()?;
        Ok(thread)
    }
}

// Threads start like programs: aligned stack, no return address.
core::arch::global_asm!(
    ".global runtime_thread_start",
    "runtime_thread_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym thread_main,
);

unsafe extern "C" {
    #[link_name = "runtime_thread_start"]
    safe fn thread_entry();
}

extern "C" fn thread_main(body: u64, buffer: u64) -> ! {
    // SAFETY: `spawn` passed a pointer from `Box::into_raw` of exactly this
    // type, and starts each thread once, so it is taken back once.
    let body = unsafe { Box::from_raw(body as *mut Box<dyn FnOnce(Buffer) -> u64 + Send>) };
    // SAFETY: `spawn` mapped this page writable as this thread's own IPC
    // buffer and registered it with the kernel.
    let buffer = unsafe { Buffer::at(buffer) };
    crate::syscall::exit(body(buffer))
}
