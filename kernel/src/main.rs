//! The microkernel: the only code that runs in ring 0.
//!
//! Principles, in order:
//! - Only what cannot live in user space lives here: address spaces,
//!   threads, IPC, capabilities, and the objects of hardware virtualisation.
//! - Never trust a user value. Check every argument first, then act in a
//!   step that cannot fail; a bad argument is an error code, never a panic.
//! - A user program's fault is a report, never the kernel's death.
//! - Simple, bounded paths over clever ones: the kernel runs with
//!   interrupts off and is not preemptible.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
// No panics on paths a user can reach: every exception carries its reason.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

extern crate alloc;

mod arch;
mod boot_modules;
mod loader;
mod log;
mod memory;
mod object;
mod panic;
mod sched;
mod syscall;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{BootInfo, entry_point};
use x86_64::VirtAddr;

/// What the kernel asks of the bootloader: all physical memory mapped at
/// a fixed place, and its own mappings kept in their own corner.
const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::FixedAddress(memory::layout::PHYSICAL_MAP));
    config.mappings.dynamic_range_start = Some(memory::layout::LOADER_START);
    config.kernel_stack_size = 64 * 1024;
    config
};

entry_point!(boot, config = &BOOTLOADER_CONFIG);

/// The program the kernel starts first.
const INIT: &str = "init";

fn boot(boot_info: &'static mut BootInfo) -> ! {
    log::init(::log::LevelFilter::Info);
    ::log::info!("kernel: booting");
    arch::paging::init();
    memory::frames::init(&boot_info.memory_regions);
    memory::heap::init();
    let ist = [
        memory::stacks::allocate(),
        memory::stacks::allocate(),
        memory::stacks::allocate(),
    ];
    arch::gdt::init(ist);
    arch::idt::init();
    let kernel_stack = memory::stacks::allocate();
    // SAFETY: the new stack is mapped, unused and 16-byte aligned; `start`
    // never returns, so nothing refers to the boot stack afterwards.
    unsafe { switch_stack(kernel_stack, boot_info) }
}

/// Continues `start` on `stack`, leaving the loader's stack behind.
///
/// # Safety
/// `stack` must be the top of a mapped, unused kernel stack.
unsafe fn switch_stack(stack: VirtAddr, boot_info: &'static mut BootInfo) -> ! {
    // SAFETY: per the contract the stack is valid; `start` takes its
    // argument in rdi and never returns.
    unsafe {
        core::arch::asm!(
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "call {start}",
            "ud2",
            stack = in(reg) stack.as_u64(),
            start = sym start,
            in("rdi") boot_info,
            in("rsi") stack.as_u64(),
            options(noreturn),
        )
    }
}

/// Boot, continued on the kernel's own stack, whose top is `stack_top`.
extern "C" fn start(boot_info: &'static mut BootInfo, stack_top: u64) -> ! {
    arch::fpu::init();
    arch::syscall::init();
    arch::percpu::init(VirtAddr::new(stack_top));

    let ramdisk = match boot_info.ramdisk_addr.into_option() {
        // SAFETY: the loader mapped the ramdisk at this address for
        // `ramdisk_len` bytes and never reuses it.
        Some(address) => unsafe { core::slice::from_raw_parts(address as *const u8, boot_info.ramdisk_len as usize) },
        None => panic!("no boot archive: the image was built without one"),
    };
    if let Err(error) = boot_modules::init(ramdisk, boot_info.kernel_image_offset) {
        panic!("boot archive refused: {error}");
    }

    let routing = boot_info
        .rsdp_addr
        .into_option()
        .and_then(arch::acpi::interrupt_routing)
        .unwrap_or_else(|| {
            ::log::warn!("acpi: no MADT found; assuming the legacy I/O APIC at 0xfec00000");
            arch::acpi::InterruptRouting::legacy()
        });
    arch::apic::init(&routing);
    arch::virt::init();

    #[cfg(feature = "kernel-fault-test")]
    panic::trigger_test_fault();

    let Some(init) = boot_modules::program(INIT) else {
        panic!("boot archive has no program '{INIT}'");
    };
    if let Err(error) = object::with(|objects| loader::start_init(objects, init.data, boot_modules::bytes())) {
        panic!("cannot start '{INIT}': {error}");
    }
    ::log::info!(
        "kernel: starting {INIT} ({} KiB free)",
        memory::frames::free_frames() * 4
    );
    sched::resume()
}
