//! The scheduler: which thread runs, switching between threads, and what
//! happens when a thread ends.
//!
//! Round robin for now; fixed priorities and time slices arrive with the
//! kernel core. When the last user thread has ended, the kernel reports how
//! init ended and stops the machine.

use crate::arch::{apic, entry, percpu, power};
use crate::console;
use crate::object::thread::Thread;
use abi::debug_exit::Outcome;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::sync::atomic::Ordering;
use spin::Mutex;
use x86_64::registers::control::Cr3;

/// How a thread ended.
#[derive(Clone, Copy, Debug)]
pub enum ThreadEnd {
    /// It called `Exit` with this status.
    Exited(u64),
    /// A CPU exception stopped it.
    Faulted {
        /// Exception vector.
        vector: u64,
        /// Exception error code.
        error_code: u64,
        /// Faulting address (CR2) for page faults, else 0.
        address: u64,
        /// Instruction pointer at the fault.
        rip: u64,
        /// Stack pointer at the fault.
        rsp: u64,
    },
}

struct Scheduler {
    current: Option<Box<Thread>>,
    ready: VecDeque<Box<Thread>>,
    /// The current thread's registers are in the CPU's FPU.
    fpu_loaded: bool,
    /// How the first thread (init) ended, once it has.
    init_end: Option<ThreadEnd>,
    started: u64,
}

static SCHEDULER: Mutex<Scheduler> = Mutex::new(Scheduler {
    current: None,
    ready: VecDeque::new(),
    fpu_loaded: false,
    init_end: None,
    started: 0,
});

/// Makes `thread` runnable.
pub fn spawn(thread: Box<Thread>) {
    let mut scheduler = SCHEDULER.lock();
    scheduler.started += 1;
    scheduler.ready.push_back(thread);
}

/// Runs `f` on the current thread.
///
/// # Panics
/// If there is no current thread: only entries from user mode call this.
pub fn with_current<R>(f: impl FnOnce(&mut Thread) -> R) -> R {
    let mut scheduler = SCHEDULER.lock();
    f(scheduler
        .current
        .as_mut()
        .expect("an entry from user mode has a current thread"))
}

/// Ends the current thread and frees what it owned.
pub fn end_current(end: ThreadEnd) {
    let mut scheduler = SCHEDULER.lock();
    let Some(thread) = scheduler.current.take() else { return };
    scheduler.fpu_loaded = false;
    match end {
        ThreadEnd::Exited(status) => log::info!("thread '{}' exited with status {status}", thread.name),
        ThreadEnd::Faulted {
            vector,
            error_code,
            address,
            rip,
            rsp,
        } => log::warn!(
            "thread '{}' killed by {} (vector {vector}, error code {error_code:#x}) at rip {rip:#x}, \
             address {address:#x}, rsp {rsp:#x}; the kernel carries on",
            thread.name,
            crate::arch::trap::exception_name(vector),
        ),
    }
    if scheduler.init_end.is_none() {
        scheduler.init_end = Some(end);
    }
    // The address space may be the one CR3 holds; leave it before freeing.
    // SAFETY: the kernel's root maps the whole kernel half, which is all the
    // kernel touches from here on.
    unsafe { Cr3::write(crate::arch::paging::kernel_root(), Cr3::read().1) };
    drop(thread);
}

/// Leaves the kernel: runs the current thread, or the next ready one, or
/// idles until one is ready. Stops the machine when no thread is left.
pub fn resume() -> ! {
    loop {
        let mut scheduler = SCHEDULER.lock();
        if scheduler.current.is_none() {
            scheduler.current = scheduler.ready.pop_front();
        }
        if let Some(thread) = scheduler.current.as_ref() {
            if !scheduler.fpu_loaded {
                thread.fpu.restore();
                let root = thread.address_space.root();
                if Cr3::read().0 != root {
                    // SAFETY: the root's kernel half is the kernel's own, so
                    // the code and stack in use stay mapped.
                    unsafe { Cr3::write(root, Cr3::read().1) };
                }
                percpu::set_context_top(thread.context_top());
                scheduler.fpu_loaded = true;
            }
            drop(scheduler);
            // SAFETY: `context_top` points past the current thread's frame,
            // which `Thread::new` or a kernel entry filled with user
            // selectors and user addresses.
            unsafe { entry::return_to_user() }
        }
        if scheduler.ready.is_empty() && scheduler.started > 0 && console::ready_to_stop() {
            let end = scheduler.init_end;
            drop(scheduler);
            shut_down(end);
        }
        drop(scheduler);
        // Nothing to run: wait for an interrupt with interrupts briefly on.
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
}

/// Timer tick from user mode: the current thread goes to the back of the
/// queue if another is ready (round robin, one tick per slice).
pub fn preempt() {
    let mut scheduler = SCHEDULER.lock();
    if scheduler.ready.is_empty() {
        return;
    }
    if let Some(mut thread) = scheduler.current.take() {
        thread.fpu.save();
        scheduler.fpu_loaded = false;
        scheduler.ready.push_back(thread);
    }
}

fn shut_down(init_end: Option<ThreadEnd>) -> ! {
    console::report();
    let ticks = apic::TICKS.load(Ordering::Relaxed);
    log::info!("kernel: no user threads left after {ticks} timer ticks; stopping");
    match init_end {
        Some(ThreadEnd::Exited(0)) => power::exit(Outcome::Success),
        _ => power::exit(Outcome::InitFailed),
    }
}
