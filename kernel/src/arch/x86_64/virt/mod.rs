//! Hardware virtualisation: which extension the CPU has, and the one
//! interface the Vcpu object uses over both backends.
//!
//! At boot [`init`] detects AMD SVM (with nested paging) or Intel VT-x and
//! switches it on. A [`Hardware`] vcpu then loads a [`VcpuState`], runs the
//! guest until it exits, and stores the state and the normalised exit back.
//! Everything else about a guest (devices, decoding, policy) is the VMM's,
//! in user space.

mod svm;

use abi::vcpu::{Exit, VcpuState};
use spin::Once;
use x86_64::structures::paging::PhysFrame;

/// The extension the kernel drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AMD SVM with nested paging.
    Svm,
}

static BACKEND: Once<Option<Backend>> = Once::new();

/// Detects the CPU's virtualisation extension and turns it on. Logs what
/// it found.
pub fn init() {
    BACKEND.call_once(|| {
        if svm::init() {
            log::info!("virtualisation: AMD SVM with nested paging");
            return Some(Backend::Svm);
        }
        log::info!("virtualisation: none (no AMD SVM with nested paging); vcpus are not supported");
        None
    });
}

/// The backend in use, if any.
pub fn backend() -> Option<Backend> {
    BACKEND.get().copied().flatten()
}

/// The nested page-table format of the backend in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// AMD nested paging: ordinary long-mode entries, user bit set (the
    /// hardware treats every guest access as a user access).
    Npt,
}

impl TableFormat {
    /// The format for `backend`.
    pub fn of(backend: Backend) -> Self {
        match backend {
            Backend::Svm => Self::Npt,
        }
    }

    /// An entry pointing to the next-level table at `physical`.
    pub fn table(self, physical: u64) -> u64 {
        match self {
            // Present, writable, user: the leaf decides the rights.
            Self::Npt => physical | 0b111,
        }
    }

    /// A leaf entry for the page at `physical`.
    pub fn leaf(self, physical: u64, access: crate::object::guest_memory::GuestAccess) -> u64 {
        match self {
            Self::Npt => {
                let mut entry = physical | 0b101; // present, user
                if access.write {
                    entry |= 0b10;
                }
                if !access.execute {
                    entry |= 1 << 63;
                }
                entry
            }
        }
    }
}

/// A vcpu's hardware part: the control block of the backend in use.
pub enum Hardware {
    /// An AMD VMCB.
    Svm(svm::Vmcb),
}

impl Hardware {
    /// A new vcpu in the x86 reset state, or `None` when there is no
    /// backend or no memory.
    pub fn new() -> Option<Self> {
        match backend()? {
            Backend::Svm => svm::Vmcb::new().map(Self::Svm),
        }
    }

    /// Writes every part of the guest state into `state`.
    pub fn store_all(&self, state: &mut VcpuState) {
        match self {
            Self::Svm(vmcb) => vmcb.store(state, abi::vcpu::group::ALL),
        }
    }

    /// Loads `state`, runs the guest in the nested tables at `root` until
    /// it exits, and stores the state back. `flush` drops the guest's
    /// cached translations first (its tables changed).
    pub fn run(&mut self, state: &mut VcpuState, root: PhysFrame, flush: bool) -> Exit {
        match self {
            Self::Svm(vmcb) => vmcb.run(state, root, flush),
        }
    }
}
