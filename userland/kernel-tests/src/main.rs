//! kernel-tests: runs as init in a test image and checks every syscall's
//! success path and its documented errors, printing one line per check and
//! a closing count. It starts copies of itself as the other processes its
//! tests need (an echo server, a faulting program); `rdi` tells a copy its
//! role.

#![no_std]
#![no_main]

extern crate alloc;

mod checks;
mod roles;

use runtime::println;

runtime::entry!(main);

fn main() -> u64 {
    let [first, second] = runtime::start_arguments();
    if first == abi::init::BOOT_ARCHIVE {
        let failed = checks::run_all();
        return u64::from(failed > 0);
    }
    match roles::Role::from_argument(first) {
        Some(role) => role.run(second),
        None => {
            println!("kernel-tests: started with unknown role {first:#x}");
            1
        }
    }
}
