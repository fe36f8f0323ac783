//! The capabilities the kernel gives the first process, at fixed slots.

/// The CSpace slot of each initial capability.
pub mod slot {
    /// init's own thread.
    pub const THREAD: u64 = 1;
    /// init's address space.
    pub const ADDRESS_SPACE: u64 = 2;
    /// init's CSpace.
    pub const CSPACE: u64 = 3;
    /// A memory pool holding all memory the kernel does not use itself.
    pub const MEMORY: u64 = 4;
    /// Authority over every interrupt line.
    pub const IRQ_CONTROL: u64 = 5;
    /// Authority over every I/O port.
    pub const PORT_CONTROL: u64 = 6;
    /// Authority over device memory.
    pub const DEVICE_MEMORY_CONTROL: u64 = 7;
    /// The frame of init's IPC buffer (mapped at [`IPC_BUFFER`](super::IPC_BUFFER)).
    pub const IPC_BUFFER_FRAME: u64 = 8;
    /// The first slot the kernel leaves empty.
    pub const FIRST_FREE: u64 = 9;
}

/// Number of slots in init's CSpace.
pub const CSPACE_SLOTS: u64 = 4096;
/// Where init's IPC buffer is mapped.
pub const IPC_BUFFER: u64 = 0x0000_7fff_fff0_0000;
/// Where the boot archive (`boot-archive` format) is mapped read-only in
/// init; init starts with its address in `rdi` and its length in `rsi`.
pub const BOOT_ARCHIVE: u64 = 0x0000_7000_0000_0000;
/// init's scheduling priority: the highest any thread may get from it.
pub const PRIORITY: u8 = 128;
