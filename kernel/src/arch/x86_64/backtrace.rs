//! Walks the kernel's frame-pointer chain (the kernel is built with frame
//! pointers) and prints each return address with its symbol.

use crate::log::write_emergency;
use crate::memory::stacks;

const MAX_FRAMES: usize = 32;

/// Prints `rip`, then the return addresses found from frame pointer `rbp`.
pub fn print(rip: u64, mut rbp: u64) {
    write_emergency(format_args!("backtrace:\n"));
    print_frame(0, rip);
    for index in 1..MAX_FRAMES {
        // A frame record is [saved rbp, return address]; read it only if it
        // lies inside a kernel stack, so a corrupt chain ends the walk.
        if rbp % 8 != 0 || !stacks::contains(rbp..rbp.saturating_add(16)) {
            break;
        }
        // SAFETY: the record is 8-aligned and inside a mapped kernel stack
        // (checked just above).
        let (next, return_address) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if return_address == 0 {
            break;
        }
        // The call instruction is just before the return address.
        print_frame(index, return_address - 1);
        rbp = next;
    }
}

fn print_frame(index: usize, address: u64) {
    match crate::boot_modules::symbolise(address) {
        Some((name, offset)) => write_emergency(format_args!("  #{index:<2} {address:#018x} {name}+{offset:#x}\n")),
        None => write_emergency(format_args!("  #{index:<2} {address:#018x} <unknown>\n")),
    }
}
