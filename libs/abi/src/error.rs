//! Error codes returned by syscalls.
//!
//! A failed syscall returns a non-zero status in `rax`: the low 16 bits are
//! the [`ErrorKind`], bits 16..24 name the argument that was wrong (its
//! index plus one; 0 when the error is not about one argument). The kernel
//! changes nothing when it returns an error, except where a kind says so.

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// What went wrong.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum ErrorKind {
            $($(#[$doc])* $name = $code,)*
        }

        impl ErrorKind {
            /// Every kind, in code order.
            pub const ALL: &[ErrorKind] = &[$(ErrorKind::$name,)*];

            const fn from_code(code: u16) -> Option<Self> {
                match code {
                    $($code => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

error_kinds! {
    /// `rax` named no syscall.
    UnknownSyscall = 1,
    /// An address was not in user space, not mapped with the access the
    /// call needs, misaligned, or overflowed when a length was added.
    InvalidAddress = 2,
    /// A length or count was larger than the call allows.
    InvalidLength = 3,
    /// A slot index is beyond the CSpace.
    InvalidSlot = 4,
    /// A slot that must hold a capability is empty (or is the null slot).
    EmptySlot = 5,
    /// A slot that must be empty holds a capability.
    SlotOccupied = 6,
    /// The capability is to the wrong type of object for this call.
    WrongObjectType = 7,
    /// The capability lacks a right this call needs.
    InsufficientRights = 8,
    /// A value is outside what the call accepts (an unknown object type,
    /// a port width other than 1, 2 or 4, a port outside the range, ...).
    InvalidArgument = 9,
    /// The memory pool cannot pay for what was asked.
    OutOfMemory = 10,
    /// A non-blocking call found nobody to talk to.
    WouldBlock = 11,
    /// The other side of an IPC died (or its endpoint was destroyed) before
    /// the message or reply could be delivered.
    PeerDied = 12,
    /// Reply with no call to reply to.
    NoReplyTarget = 13,
    /// Mint with a badge from a capability that already has one.
    BadgeAlreadySet = 14,
    /// The frame capability is already mapped, or the address is in use.
    AlreadyMapped = 15,
    /// The frame capability is not mapped.
    NotMapped = 16,
    /// The object is not in a state that allows the call (a thread that is
    /// not configured, running when it must be stopped, ...).
    InvalidState = 17,
    /// A priority above the caller's own.
    PriorityTooHigh = 18,
    /// The interrupt line already has a capability or binding.
    AlreadyBound = 19,
    /// The machine lacks what the call needs (a vcpu without VT-x or AMD-V).
    NotSupported = 20,
}

/// A syscall error: what went wrong and, where it applies, which argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The index (0..=5) of the argument at fault, if the error is about one.
    pub argument: Option<u8>,
}

impl Error {
    /// An error that is not about one argument.
    pub const fn new(kind: ErrorKind) -> Self {
        Self { kind, argument: None }
    }

    /// An error about argument `index` (0..=5).
    pub const fn in_argument(kind: ErrorKind, index: u8) -> Self {
        Self {
            kind,
            argument: Some(index),
        }
    }

    /// Encodes this error as the status the kernel returns in `rax`.
    pub const fn to_status(self) -> u64 {
        let argument = match self.argument {
            Some(index) => index as u64 + 1,
            None => 0,
        };
        self.kind as u64 | (argument << 16)
    }

    /// Decodes a status from `rax`: `Ok(())` for 0, the error otherwise.
    ///
    /// A status this crate does not know (a newer kernel) decodes as
    /// `UnknownSyscall` rather than being mistaken for success.
    pub const fn from_status(status: u64) -> Result<(), Self> {
        if status == 0 {
            return Ok(());
        }
        let kind = match ErrorKind::from_code(status as u16) {
            Some(kind) => kind,
            None => ErrorKind::UnknownSyscall,
        };
        let argument = match (status >> 16) as u8 {
            0 => None,
            index => Some(index - 1),
        };
        Err(Self { kind, argument })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_zero() {
        assert_eq!(Error::from_status(0), Ok(()));
    }

    #[test]
    fn errors_round_trip_with_and_without_argument() {
        for &kind in ErrorKind::ALL {
            let plain = Error::new(kind);
            assert_ne!(plain.to_status(), 0);
            assert_eq!(Error::from_status(plain.to_status()), Err(plain));
            for index in 0..6 {
                let named = Error::in_argument(kind, index);
                assert_eq!(Error::from_status(named.to_status()), Err(named));
            }
        }
    }

    #[test]
    fn unknown_codes_are_errors() {
        assert_eq!(Error::from_status(0xffff), Err(Error::new(ErrorKind::UnknownSyscall)));
    }
}
