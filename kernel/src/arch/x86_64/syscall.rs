//! SYSCALL/SYSRET set-up: the MSRs that make `syscall` enter the kernel at
//! `entry::syscall_entry`.

use super::entry::syscall_entry;
use super::gdt::{KERNEL_CODE, KERNEL_DATA, USER_CODE, USER_DATA};
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::SegmentSelector;

/// Enables SYSCALL (and no-execute pages) and points it at the entry stub.
#[expect(
    clippy::expect_used,
    reason = "the GDT layout is fixed at compile time; a mismatch is a kernel bug found at the first boot"
)]
pub fn init() {
    // SAFETY: SCE enables the instruction this kernel handles; NXE makes the
    // NO_EXECUTE page bit meaningful, which the kernel's tables rely on.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::SYSTEM_CALL_EXTENSIONS | EferFlags::NO_EXECUTE_ENABLE)) };
    Star::write(
        SegmentSelector(USER_CODE),
        SegmentSelector(USER_DATA),
        SegmentSelector(KERNEL_CODE),
        SegmentSelector(KERNEL_DATA),
    )
    .expect("GDT layout matches what SYSCALL/SYSRET require");
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    // Interrupts stay off in the kernel; clear flags a user could use to
    // trip it (trap, direction, alignment check, nested task).
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK
            | RFlags::IOPL_HIGH
            | RFlags::IOPL_LOW,
    );
}
