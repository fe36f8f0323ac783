//! The GDT and TSS: flat segments for ring 0 and ring 3, and the stacks the
//! CPU switches to on entry from user mode and on the three exceptions that
//! must never run on a possibly broken stack.
//!
//! The selector order is fixed by SYSCALL/SYSRET: kernel code, kernel data,
//! then user data and user code, so that `STAR` can derive all four.

use core::ptr::addr_of_mut;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based in the IDT, 0-based here) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot of the NMI stack.
pub const NMI_IST: u16 = 1;
/// IST slot of the machine-check stack.
pub const MACHINE_CHECK_IST: u16 = 2;

/// Kernel code selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DATA: u16 = 0x10;
/// User data selector, RPL 3.
pub const USER_DATA: u16 = 0x18 | 3;
/// User code selector, RPL 3.
pub const USER_CODE: u16 = 0x20 | 3;

static mut TSS: TaskStateSegment = TaskStateSegment::new();
static GDT: Once<GlobalDescriptorTable> = Once::new();

/// Loads the GDT and TSS. `ist_tops` are the tops of the double-fault, NMI
/// and machine-check stacks, each with a guard page below it.
#[expect(
    clippy::indexing_slicing,
    reason = "three IST stacks fill slots 0..3 of the TSS's seven"
)]
pub fn init(ist_tops: [VirtAddr; 3]) {
    let tss = addr_of_mut!(TSS);
    // SAFETY: runs once at boot on the one CPU before the TSS is loaded, so
    // nothing else reads it while it is written.
    unsafe {
        for (slot, top) in ist_tops.into_iter().enumerate() {
            (*tss).interrupt_stack_table[slot] = top;
        }
    }
    let gdt = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        gdt.append(Descriptor::kernel_code_segment());
        gdt.append(Descriptor::kernel_data_segment());
        gdt.append(Descriptor::user_data_segment());
        gdt.append(Descriptor::user_code_segment());
        // SAFETY: TSS is a static that lives for the whole run and is only
        // otherwise touched through `set_kernel_entry_stack`, which writes
        // one field through a raw pointer.
        gdt.append(Descriptor::tss_segment(unsafe { &*tss }));
        gdt
    });
    gdt.load();
    // SAFETY: the selectors name the descriptors appended above in that
    // order; the TSS descriptor is at index 5.
    unsafe {
        CS::set_reg(SegmentSelector(KERNEL_CODE));
        SS::set_reg(SegmentSelector(KERNEL_DATA));
        DS::set_reg(SegmentSelector(0));
        ES::set_reg(SegmentSelector(0));
        load_tss(SegmentSelector(0x28));
    }
}

/// Sets the stack the CPU switches to when an interrupt or exception arrives
/// from ring 3 (TSS.RSP0).
pub fn set_kernel_entry_stack(top: VirtAddr) {
    // SAFETY: a single aligned 8-byte store into the static TSS; the CPU
    // reads the field only on the next ring-3 to ring-0 transition, and the
    // kernel runs with interrupts off on one CPU.
    unsafe { (*addr_of_mut!(TSS)).privilege_stack_table[0] = top };
}
