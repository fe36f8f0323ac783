//! The hostile syscall test: 100,000 random, seeded syscalls from ring 3,
//! with helper threads blocked on the objects being deleted under them.

use abi::debug_exit::Outcome;
use image_builder::qemu::Firmware;
use std::time::Duration;
use tests::{Machine, with_system};

#[test]
fn random_syscalls_never_break_the_kernel() {
    let machine = Machine::boot(&with_system("systems/syscall-fuzzer.toml"), Firmware::Bios);
    let finished = machine.wait_exit(Duration::from_secs(600));
    let output = &finished.output;
    let summary = output
        .lines()
        .find(|line| line.starts_with("syscall-fuzzer: ") && line.contains(" calls: "))
        .unwrap_or_else(|| panic!("no summary; output:\n{output}"));
    println!("{summary}");
    let calls: u64 = summary["syscall-fuzzer: ".len()..]
        .split(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap();
    assert!(calls >= 100_000, "{summary}");
    assert!(summary.ends_with(" 0 malformed"), "{summary}");
    assert!(output.contains("syscall-fuzzer: seed 0x"), "the seed is printed");
    assert!(
        output.contains("syscall-fuzzer: the kernel still works"),
        "output:\n{output}"
    );
    assert!(!output.contains("KERNEL"), "kernel trouble:\n{output}");
    assert_eq!(finished.outcome, Some(Outcome::Success), "output:\n{output}");
}
