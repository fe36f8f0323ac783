//! The platform a guest of our VMM sees: where RAM is and where an image
//! is loaded, which ports and addresses the emulated devices answer, and
//! the hypercalls. The VMM (`servers/vmm`) implements it; guests built in
//! this repository (`userland/test-guest`) are written against it.

#![no_std]

/// RAM starts at guest-physical 0 and is contiguous.
pub const RAM_START: u64 = 0;
/// Where a 64-bit ELF guest is loaded (position-independent images are
/// moved here; others must link at or above it).
pub const IMAGE_BASE: u64 = 0x20_0000;
/// Top of the initial stack a 64-bit ELF guest starts with.
pub const STACK_TOP: u64 = 0x10_0000;
/// Where the VMM puts a 64-bit ELF guest's command line (at most
/// [`MAX_ARGUMENTS`] bytes, not terminated); the guest starts with its
/// address in `rdi` and its length in `rsi`.
pub const ARGUMENTS: u64 = 0x9000;
/// The longest command line.
pub const MAX_ARGUMENTS: usize = 4096;
/// The first serial port (16550), interrupt line 4.
pub const COM1: u16 = 0x3f8;
/// Writing a byte here ends the guest with that status (QEMU's
/// isa-debug-exit convention: the status is `value`).
pub const EXIT_PORT: u16 = 0xf4;
/// A page of test registers: a 32-bit write to offset 0 is read back
/// at offset 0 and, bitwise inverted, at offset 4. It exists so a guest
/// can check MMIO emulation.
pub const TEST_DEVICE: u64 = 0xd000_0000;
/// The local APIC's registers.
pub const LOCAL_APIC: u64 = 0xfee0_0000;
/// The local APIC timer's input clock in Hz (before its divider).
pub const LOCAL_APIC_TIMER_HZ: u64 = 100_000_000;
/// The I/O APIC's registers (24 pins). ISA interrupt 0 (the PIT) arrives
/// on pin 2, the others on the pin of their number (COM1: 4).
pub const IO_APIC: u64 = 0xfec0_0000;
/// The I/O APIC's ID (its ID register at reset, and what the MP table
/// says): 1, after the one CPU's local APIC ID 0.
pub const IO_APIC_ID: u8 = 1;
/// The I/O APIC pin the PIT's interrupt arrives on.
pub const IO_APIC_PIT_PIN: u8 = 2;
/// The I/O APIC pin (and 8259A line) COM1's interrupt arrives on.
pub const COM1_INTERRUPT: u8 = 4;
/// PCI configuration mechanism #1: the address register (32-bit accesses
/// only) and the data window's first port (0xCFC..=0xCFF).
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// See [`PCI_CONFIG_ADDRESS`].
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
/// The one PCI bus's devices: the host bridge in slot 0, then the
/// para-virtual (virtio) devices, each function 0 with interrupt pin INTA.
pub mod pci {
    /// The host bridge's slot.
    pub const HOST_BRIDGE_SLOT: u8 = 0;
    /// The virtio block device's slot (when the guest has a disk).
    pub const VIRTIO_BLOCK_SLOT: u8 = 1;
    /// The virtio console's slot.
    pub const VIRTIO_CONSOLE_SLOT: u8 = 2;
    /// The slots whose INTA the platform routes (the MP table's PCI
    /// interrupt entries): every device's but the host bridge's.
    pub const INTERRUPTING_SLOTS: [u8; 2] = [VIRTIO_BLOCK_SLOT, VIRTIO_CONSOLE_SLOT];
    /// Where the VMM, playing firmware, puts the I/O BARs: slot `n`'s at
    /// `IO_BASE + n * IO_STRIDE`. The guest may move them.
    pub const IO_BASE: u16 = 0xc000;
    /// See [`IO_BASE`]; also the largest I/O BAR.
    pub const IO_STRIDE: u16 = 0x100;
    /// The I/O APIC pin slot `n`'s INTA arrives on: `FIRST_INTERRUPT_PIN
    /// + n`, level-triggered and active low, as PCI interrupts are.
    /// Pins 16..24 are the ones no ISA interrupt uses.
    pub const FIRST_INTERRUPT_PIN: u8 = 16;
}
/// The signature `CPUID` leaf 0x4000_0000 returns in EBX, ECX, EDX.
pub const CPUID_SIGNATURE: &[u8; 12] = b"L4HvMicroVMM";

/// Hypercalls: `VMCALL` or `VMMCALL` with the number in `rax` and the
/// argument in `rdi`; the result comes back in `rax`.
pub mod hypercall {
    /// Returns [`PING_REPLY`] plus the argument: a guest checks that a VMM
    /// answers.
    pub const PING: u64 = 1;
    /// Added to the argument by [`PING`].
    pub const PING_REPLY: u64 = 0x564d_4d00;
    /// Writes the argument's low byte to the guest's console.
    pub const CONSOLE_WRITE: u64 = 2;
    /// What an unknown hypercall returns; the guest goes on.
    pub const UNKNOWN: u64 = u64::MAX;
}
