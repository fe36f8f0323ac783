//! A guest's console output on its way to ours, a line at a time: what
//! both the UART and the virtio console assemble before the machine
//! prints it with the guest's name in front.

use alloc::string::String;
use alloc::vec::Vec;

/// The longest line kept before it is shown anyway.
const MAX_LINE: usize = 200;

/// The line being written.
#[derive(Default)]
pub struct OutputLine {
    bytes: Vec<u8>,
}

impl OutputLine {
    /// Takes a written byte; a newline (or a full line) finishes the
    /// line, which is returned (empty lines too). Carriage returns are
    /// dropped.
    pub fn push(&mut self, byte: u8) -> Option<String> {
        if byte == b'\n' || self.bytes.len() >= MAX_LINE {
            if byte != b'\n' {
                self.bytes.push(byte);
            }
            let line = String::from_utf8_lossy(&self.bytes).into_owned();
            self.bytes.clear();
            return Some(line);
        }
        if byte != b'\r' {
            self.bytes.push(byte);
        }
        None
    }

    /// Takes the unfinished line, if there is one (a prompt waiting for
    /// input; see [`Devices::unfinished_line`](super::Devices::unfinished_line)).
    pub fn take(&mut self) -> Option<String> {
        if self.bytes.is_empty() {
            return None;
        }
        self.push(b'\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_newlines_or_when_full_and_carriage_returns_vanish() {
        let mut line = OutputLine::default();
        assert_eq!(b"ok\r".iter().find_map(|byte| line.push(*byte)), None);
        assert_eq!(line.push(b'\n').as_deref(), Some("ok"));
        assert_eq!(line.push(b'\n').as_deref(), Some(""), "an empty line");
        let long: Vec<Option<String>> = (0..=MAX_LINE).map(|_| line.push(b'x')).collect();
        assert_eq!(long.last().cloned().flatten().map(|line| line.len()), Some(MAX_LINE + 1));
        assert_eq!(line.push(b'$'), None);
        assert_eq!(line.take().as_deref(), Some("$"));
        assert_eq!(line.take(), None);
    }
}
