//! The multiboot guest: a multiboot (version 1) kernel, made into a 32-bit
//! ELF file by the image builder. Its entry (32-bit code) records the
//! state it was entered in, builds page tables for the first GiB and
//! switches to long mode; then [`multiboot_main`] checks what the boot
//! loader gave it, printing `PASS name` or `FAIL name: why` on COM1 for
//! each, and ends through the exit port with the number of failures.
//!
//! The command line says what to expect: `ram-mib=N` (the RAM `vm start
//! -m` gave) and `modules=N`. A module whose string has the word `elf` must
//! start with the ELF magic number; one with `expect=TEXT` must start with
//! TEXT.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guest::{outb, report, write_str};

/// The header: magic, flags (page-align modules, memory information
/// wanted), checksum.
const HEADER_FLAGS: u32 = 0b11;
/// What EAX holds at the entry.
const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The identity map the entry builds covers this much.
const MAPPED: u64 = 1 << 30;

global_asm!(
    ".section .multiboot, \"a\"",
    ".balign 4",
    ".long 0x1badb002",
    ".long {flags}",
    ".long -(0x1badb002 + {flags})",
    "",
    ".section .text.entry, \"ax\"",
    ".code32",
    ".global multiboot_entry",
    "multiboot_entry:",
    "    movl $stack_top, %esp",
    "    movl %eax, %ebp",
    "    movl %cr0, %ecx",
    "    movl %ecx, entry_cr0",
    "    pushfl",
    "    popl entry_eflags",
    // PML4[0] -> PDPT, PDPT[0] -> PD, PD: 512 2-MiB pages.
    "    movl $pdpt + 3, pml4",
    "    movl $page_directory + 3, pdpt",
    "    xorl %ecx, %ecx",
    "1:  movl %ecx, %eax",
    "    shll $21, %eax",
    "    orl $0x83, %eax",
    "    movl %eax, page_directory(,%ecx,8)",
    "    incl %ecx",
    "    cmpl $512, %ecx",
    "    jne 1b",
    "    movl %cr4, %eax",
    "    orl $0x20, %eax", // PAE
    "    movl %eax, %cr4",
    "    movl $pml4, %eax",
    "    movl %eax, %cr3",
    "    movl $0xc0000080, %ecx", // EFER.LME
    "    rdmsr",
    "    orl $0x100, %eax",
    "    wrmsr",
    "    movl %cr0, %eax",
    "    orl $0x80000001, %eax", // PG, PE
    "    movl %eax, %cr0",
    "    lgdt gdt_pointer",
    "    ljmp $0x08, $long_mode",
    ".code64",
    "long_mode:",
    "    movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movl %ebp, %edi",
    "    movl %ebx, %esi",
    "    movl $stack_top, %esp",
    "    call multiboot_main",
    "2:  hlt",
    "    jmp 2b",
    "",
    ".section .rodata.gdt, \"a\"",
    ".balign 8",
    "gdt:",
    "    .quad 0",
    "    .quad 0x00af9a000000ffff",
    "    .quad 0x00cf92000000ffff",
    "gdt_pointer:",
    "    .word 23",
    "    .long gdt",
    "",
    ".section .bss.entry, \"aw\", @nobits",
    ".balign 4096",
    "pml4: .skip 4096",
    "pdpt: .skip 4096",
    "page_directory: .skip 4096",
    "stack: .skip 16384",
    "stack_top:",
    ".global entry_cr0",
    "entry_cr0: .skip 4",
    ".global entry_eflags",
    "entry_eflags: .skip 4",
    flags = const HEADER_FLAGS,
    options(att_syntax),
);

unsafe extern "C" {
    /// CR0 and EFLAGS as the loader entered the kernel.
    static entry_cr0: u32;
    static entry_eflags: u32;
    /// The end of the kernel's image, BSS included (from the linker script).
    static kernel_end: u8;
}

/// A word of guest memory at `address`, if it lies in the identity map.
fn load<T: Copy>(address: u64) -> Option<T> {
    let end = address.checked_add(core::mem::size_of::<T>() as u64)?;
    if end > MAPPED {
        return None;
    }
    // SAFETY: the entry identity-maps the first GiB, which the check above
    // keeps the read inside; RAM (or, past it, the VMM's refusal) is all
    // there is, and any bit pattern is a valid `T` of the integer types
    // used here.
    Some(unsafe { core::ptr::read_unaligned(address as *const T) })
}

/// The NUL-terminated string at `address` (at most 4 KiB), or "".
fn string(address: u64) -> &'static str {
    let mut length = 0;
    while length < 4096 && load::<u8>(address + length).is_some_and(|byte| byte != 0) {
        length += 1;
    }
    if length == 0 {
        return "";
    }
    // SAFETY: `length` bytes from `address` lie in the identity map (each
    // was loaded above); nothing writes the boot information while the
    // checks run.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, length as usize) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// The boot information structure at `address`.
struct Information(u64);

impl Information {
    fn word(&self, offset: u64) -> u32 {
        load(self.0 + offset).unwrap_or(0)
    }

    fn has(&self, flag: u32) -> bool {
        self.word(0) & (1 << flag) != 0
    }
}

/// The value of `key=` among the command line's words.
fn option<'a>(command_line: &'a str, key: &str) -> Option<&'a str> {
    command_line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// The Rust side of the entry: `magic` was in EAX, `information` in EBX.
#[unsafe(no_mangle)]
extern "C" fn multiboot_main(magic: u32, information: u32) -> ! {
    write_str("multiboot-guest: running\n");
    let information = Information(u64::from(information));
    let command_line = if information.has(2) {
        string(u64::from(information.word(16)))
    } else {
        ""
    };
    write_str("multiboot-guest: command line: ");
    write_str(command_line);
    write_str("\n");
    let ram_mib: Option<u32> = option(command_line, "ram-mib").and_then(|value| value.parse().ok());
    let checks = [
        ("multiboot-magic", check_entry(magic)),
        ("multiboot-memory", check_memory(&information, ram_mib)),
        ("multiboot-mmap", check_memory_map(&information, ram_mib)),
        ("multiboot-cmdline", check_command_line(&information, command_line)),
        ("multiboot-modules", check_modules(&information, command_line)),
    ];
    let mut failures = 0u8;
    for (name, result) in checks {
        if !report(name, result) {
            failures += 1;
        }
    }
    write_str("multiboot-guest: done\n");
    outb(vm_platform::EXIT_PORT, failures);
    loop {
        core::hint::spin_loop();
    }
}

/// EAX held the boot loader's magic number; the kernel started in
/// protected mode with paging and interrupts off.
fn check_entry(magic: u32) -> Result<(), &'static str> {
    if magic != BOOTLOADER_MAGIC {
        return Err("EAX did not hold 0x2badb002");
    }
    // SAFETY: the entry wrote both words before anything else ran; they
    // are not written again.
    let (cr0, eflags) = unsafe { (entry_cr0, entry_eflags) };
    if cr0 & 1 == 0 || cr0 & (1 << 31) != 0 {
        return Err("not entered in protected mode with paging off");
    }
    if eflags & (1 << 9) != 0 {
        return Err("entered with interrupts on");
    }
    Ok(())
}

/// mem_lower is 640 KiB; mem_upper is the RAM above 1 MiB.
fn check_memory(information: &Information, ram_mib: Option<u32>) -> Result<(), &'static str> {
    if !information.has(0) {
        return Err("no memory information (flag 0)");
    }
    if information.word(4) != 640 {
        return Err("mem_lower is not 640 KiB");
    }
    let upper = information.word(8);
    match ram_mib {
        Some(mib) if upper != mib.saturating_sub(1) * 1024 => Err("mem_upper does not match the RAM"),
        None => Err("the command line does not say ram-mib"),
        _ => Ok(()),
    }
}

/// The memory map has the RAM above 1 MiB available, the legacy hole and
/// the local APIC's page reserved, and nothing available where RAM is not.
fn check_memory_map(information: &Information, ram_mib: Option<u32>) -> Result<(), &'static str> {
    if !information.has(6) {
        return Err("no memory map (flag 6)");
    }
    let (length, start) = (u64::from(information.word(44)), u64::from(information.word(48)));
    let ram = u64::from(ram_mib.unwrap_or(0)) << 20;
    let (mut high_memory, mut legacy_hole, mut local_apic) = (false, false, false);
    let mut at = start;
    while at < start + length {
        let (Some(size), Some(base), Some(bytes), Some(kind)) =
            (load::<u32>(at), load::<u64>(at + 4), load::<u64>(at + 12), load::<u32>(at + 20))
        else {
            return Err("the memory map lies outside memory");
        };
        match (kind, base) {
            (1, 0x10_0000) => high_memory = Some(bytes) == ram.checked_sub(0x10_0000),
            (2, 0xa_0000) => legacy_hole = true,
            (2, vm_platform::LOCAL_APIC) => local_apic = true,
            (1, _) if base + bytes > ram => return Err("memory past RAM is said to be available"),
            _ => {}
        }
        at += u64::from(size) + 4;
    }
    if !high_memory {
        return Err("no available entry for the RAM above 1 MiB");
    }
    if !legacy_hole || !local_apic {
        return Err("the legacy hole or the local APIC is not reserved");
    }
    Ok(())
}

/// The command line starts with the image's path and says what to expect.
fn check_command_line(information: &Information, command_line: &str) -> Result<(), &'static str> {
    if !information.has(2) {
        return Err("no command line (flag 2)");
    }
    if !command_line.starts_with("/guests/multiboot-guest ") || option(command_line, "modules").is_none() {
        return Err("the command line is not the image's path and its arguments");
    }
    if !information.has(9) || string(u64::from(information.word(64))).is_empty() {
        return Err("no boot loader name");
    }
    Ok(())
}

/// As many modules as the command line says, page-aligned, after the
/// kernel, each starting with what its string says.
fn check_modules(information: &Information, command_line: &str) -> Result<(), &'static str> {
    if !information.has(3) {
        return Err("no modules (flag 3)");
    }
    let expected: u32 = option(command_line, "modules")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let count = information.word(20);
    if count != expected {
        return Err("a different number of modules than the command line says");
    }
    let list = u64::from(information.word(24));
    let mut previous_end = &raw const kernel_end as u64;
    for index in 0..u64::from(count) {
        let entry = list + index * 16;
        let (Some(start), Some(end), Some(text)) = (load::<u32>(entry), load::<u32>(entry + 4), load::<u32>(entry + 8))
        else {
            return Err("the module list lies outside memory");
        };
        let (start, end) = (u64::from(start), u64::from(end));
        if start % 4096 != 0 || start < previous_end || end < start {
            return Err("a module is not page-aligned after the kernel and the one before");
        }
        previous_end = end;
        let text = string(u64::from(text));
        let starts_with = |prefix: &[u8]| {
            prefix.len() as u64 <= end - start
                && prefix
                    .iter()
                    .enumerate()
                    .all(|(offset, byte)| load::<u8>(start + offset as u64) == Some(*byte))
        };
        if text.split_whitespace().any(|word| word == "elf") && !starts_with(b"\x7fELF") {
            return Err("a module said to be ELF does not start with the ELF magic number");
        }
        if let Some(prefix) = option(text, "expect")
            && !starts_with(prefix.as_bytes())
        {
            return Err("a module does not hold what its string says");
        }
    }
    Ok(())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write_str("FAIL panic\n");
    outb(vm_platform::EXIT_PORT, 0xff);
    loop {
        core::hint::spin_loop();
    }
}
