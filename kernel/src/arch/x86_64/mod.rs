//! Everything that touches x86-64 registers and tables.

pub mod acpi;
pub mod apic;
pub mod backtrace;
pub mod entry;
pub mod fpu;
pub mod gdt;
pub mod idt;
pub mod paging;
pub mod percpu;
pub mod port;
pub mod power;
pub mod serial;
pub mod syscall;
pub mod trap;
pub mod virt;
