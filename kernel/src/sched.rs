//! Leaving the kernel: choosing the thread to run, switching to it, idling
//! when there is none; and what happens when a thread ends.
//!
//! The choice itself is `kernel_core::scheduler`'s; this module loads the
//! chosen thread's address space and saved registers. FPU registers move
//! lazily: they stay with the last thread that used them until another
//! thread's first FPU instruction traps (`device not available`). The
//! system lives as long as init: when init ends, the kernel reports how and
//! stops the machine.

use crate::arch::{apic, entry, fpu, percpu, power};
use crate::object::{self, Objects};
use abi::debug_exit::Outcome;
use core::sync::atomic::Ordering;
use kernel_core::scheduler::ThreadId;
use x86_64::registers::control::Cr3;

/// How a thread ended.
#[derive(Clone, Copy, Debug)]
pub enum ThreadEnd {
    /// It called `Exit` with this status.
    Exited(u64),
    /// A CPU exception stopped it and nobody handles its faults.
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

/// Stops a thread for good and reports it; if it is init, stops the system.
pub fn end_thread(objects: &mut Objects, thread: ThreadId, end: ThreadEnd) {
    objects.ipc.stop(thread);
    let name = objects.threads.get(thread.0).map_or("?", |record| record.name.as_str());
    match end {
        ThreadEnd::Exited(status) => log::info!("thread '{name}' exited with status {status}"),
        ThreadEnd::Faulted {
            vector,
            error_code,
            address,
            rip,
            rsp,
        } => log::warn!(
            "thread '{name}' killed by {} (vector {vector}, error code {error_code:#x}) at rip {rip:#x}, \
             address {address:#x}, rsp {rsp:#x}; the kernel carries on",
            crate::arch::trap::exception_name(vector),
        ),
    }
    if objects.init == Some(thread) {
        shut_down(end);
    }
}

/// A thread took an exception: its fault handler hears of it, or, if it
/// has none, the thread ends.
pub fn fault(objects: &mut Objects, thread: ThreadId, vector: u64, error_code: u64, address: u64) {
    let Some(record) = objects.threads.get_mut(thread.0) else {
        return;
    };
    record.fault = Some(object::thread::Fault {
        vector,
        error_code,
        address,
    });
    let (rip, rsp) = (record.context.rip, record.context.rsp);
    if !crate::syscall::ipc::send_fault(objects, thread) {
        end_thread(
            objects,
            thread,
            ThreadEnd::Faulted {
                vector,
                error_code,
                address,
                rip,
                rsp,
            },
        );
    }
}

/// Loads `thread` onto the CPU unless it is already there.
fn switch_to(objects: &mut Objects, thread: ThreadId) {
    if objects.on_cpu == Some(thread) {
        return;
    }
    let Some(next) = objects.threads.get(thread.0) else {
        return;
    };
    // The FPU keeps its owner's registers until another thread uses it.
    fpu::trap_next_use(objects.fpu_owner != Some(thread));
    if let Some(space) = next.address_space.and_then(|space| objects.address_spaces.get(space)) {
        let root = space.root();
        if Cr3::read().0 != root {
            // SAFETY: every address space's kernel half is the kernel's own,
            // so the code and stack in use stay mapped.
            unsafe { Cr3::write(root, Cr3::read().1) };
        }
    }
    percpu::set_context_top(next.context_top());
    objects.on_cpu = Some(thread);
}

/// Leaves the kernel: runs the chosen thread, or idles until one is ready.
pub fn resume() -> ! {
    loop {
        let chosen = object::with(|objects| {
            let chosen = objects.ipc.scheduler.choose()?;
            switch_to(objects, chosen);
            Some(chosen)
        });
        if chosen.is_some() {
            // SAFETY: `switch_to` pointed `context_top` past the chosen
            // thread's frame, which `Thread::new`, a register write (user
            // addresses only) or a kernel entry filled with user selectors.
            unsafe { entry::return_to_user() }
        }
        // Nothing to run: wait for an interrupt with interrupts briefly on.
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
}

fn shut_down(init_end: ThreadEnd) -> ! {
    let ticks = apic::TICKS.load(Ordering::Relaxed);
    log::info!("kernel: init has ended after {ticks} timer ticks; stopping");
    match init_end {
        ThreadEnd::Exited(0) => power::exit(Outcome::Success),
        _ => power::exit(Outcome::InitFailed),
    }
}
