//! Syscall dispatch: decode the number and arguments from the caller's
//! saved registers, check every one, then act.

use crate::sched::{self, ThreadEnd};
use abi::{DEBUG_WRITE_MAX, Error, ErrorKind, Syscall};
use x86_64::VirtAddr;

/// Handles the syscall the current thread just made. The result goes into
/// the thread's saved `rax`; a thread that ended gets no result.
pub fn dispatch() {
    let (number, arguments) = sched::with_current(|thread| {
        let context = &thread.context;
        (
            context.rax,
            [
                context.rdi,
                context.rsi,
                context.rdx,
                context.r10,
                context.r8,
                context.r9,
            ],
        )
    });
    let result = match Syscall::from_number(number) {
        None => Err(Error::new(ErrorKind::UnknownSyscall)),
        Some(Syscall::DebugWrite) => debug_write(arguments[0], arguments[1]),
        Some(Syscall::Exit) => {
            sched::end_current(ThreadEnd::Exited(arguments[0]));
            return;
        }
        // Defined by the ABI, not implemented by this kernel yet.
        Some(_) => Err(Error::new(ErrorKind::UnknownSyscall)),
    };
    let status = match result {
        Ok(()) => 0,
        Err(error) => error.to_status(),
    };
    sched::with_current(|thread| thread.context.rax = status);
}

fn debug_write(address: u64, length: u64) -> Result<(), Error> {
    let length = usize::try_from(length)
        .ok()
        .filter(|&length| length <= DEBUG_WRITE_MAX)
        .ok_or(Error::in_argument(ErrorKind::InvalidLength, 1))?;
    let address = VirtAddr::try_new(address).map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 0))?;
    let mut buffer = [0u8; DEBUG_WRITE_MAX];
    let bytes = &mut buffer[..length];
    sched::with_current(|thread| thread.address_space.read_user(address, bytes))
        .map_err(|_| Error::in_argument(ErrorKind::InvalidAddress, 0))?;
    crate::log::write_raw(bytes);
    Ok(())
}
