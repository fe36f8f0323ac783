//! Rights a capability carries. Mint can only take rights away.

bitflags::bitflags! {
    /// What the holder of a capability may do with its object.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Rights: u32 {
        /// Receive on an endpoint, wait on a notification, map a frame readable.
        const READ = 1 << 0;
        /// Send on an endpoint, signal a notification, map a frame writable;
        /// change a thread, CSpace, address space or pool.
        const WRITE = 1 << 1;
        /// Map a frame executable.
        const EXECUTE = 1 << 2;
        /// Send capabilities along with messages on an endpoint.
        const GRANT = 1 << 3;
    }
}

impl Rights {
    /// Every right: what a new object's first capability carries.
    pub const ALL: Self = Self::all();
}
