//! Input on its way to a guest's serial line: what `Request::Input` took
//! and the guest's UART has not yet. The serving thread offers bytes; the
//! guest's thread moves them into the receive FIFO as it has room
//! ([`crate::devices::Devices::receive`]). Bounded, so a guest that does not
//! read pushes back on the client instead of losing what was typed.

use crate::{MAX_INPUT, Refusal};
use alloc::collections::VecDeque;

/// At most [`MAX_INPUT`] bytes, oldest first.
pub struct Input {
    bytes: VecDeque<u8>,
}

impl Input {
    /// Nothing waiting.
    pub const fn new() -> Self {
        Self { bytes: VecDeque::new() }
    }

    /// Checks that `bytes` is a request's worth: 1..=[`MAX_INPUT`] bytes.
    ///
    /// # Errors
    /// [`Refusal::BadInput`] if not.
    pub fn check(bytes: &[u8]) -> Result<(), Refusal> {
        if bytes.is_empty() || bytes.len() > MAX_INPUT {
            return Err(Refusal::BadInput);
        }
        Ok(())
    }

    /// Takes what fits of `bytes`, in order; returns how many.
    ///
    /// # Errors
    /// As [`Self::check`]; [`Refusal::InputFull`] if nothing fits.
    pub fn offer(&mut self, bytes: &[u8]) -> Result<usize, Refusal> {
        Self::check(bytes)?;
        let count = MAX_INPUT.saturating_sub(self.bytes.len()).min(bytes.len());
        if count == 0 {
            return Err(Refusal::InputFull);
        }
        self.bytes.extend(bytes.iter().take(count));
        Ok(count)
    }

    /// Removes and returns up to `count` bytes, oldest first.
    pub fn take(&mut self, count: usize) -> impl Iterator<Item = u8> + '_ {
        self.bytes.drain(..count.min(self.bytes.len()))
    }

    /// Drops everything waiting.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// How many bytes wait.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_takes_what_fits_and_refuses_bad_requests() {
        let mut input = Input::new();
        assert_eq!(input.offer(&[]), Err(Refusal::BadInput));
        assert_eq!(input.offer(&[0; MAX_INPUT + 1]), Err(Refusal::BadInput));
        assert_eq!(input.offer(b"0123456789"), Ok(10));
        assert_eq!(input.offer(b"abcdefghij"), Ok(MAX_INPUT - 10));
        assert_eq!(input.offer(b"x"), Err(Refusal::InputFull));
        assert_eq!(input.take(3).collect::<Vec<_>>(), b"012");
        assert_eq!(input.offer(b"xyzw"), Ok(3));
        assert_eq!(input.len(), MAX_INPUT);
        assert_eq!(input.take(100).collect::<Vec<_>>(), b"3456789abcdefxyz");
        assert!(input.is_empty());
    }
}
