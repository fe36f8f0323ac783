//! Line editing: backspace, and the up and down arrows through history.

use crate::Console;
use alloc::string::String;
use alloc::vec::Vec;

/// Where an escape sequence (an arrow key) has got to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Started,
    Bracket,
}

/// Reads lines and remembers them.
pub struct Editor {
    history: Vec<String>,
    /// The last line ended with a carriage return: a line feed right after
    /// it ends no new line.
    after_return: bool,
}

impl Editor {
    /// No history yet.
    pub fn new() -> Self {
        Self {
            history: Vec::new(),
            after_return: false,
        }
    }

    /// Reads one line, echoing and editing as it is typed. What was typed
    /// after it goes back to the console for the next reader.
    pub fn read_line(&mut self, console: &Console) -> String {
        let mut line = String::new();
        let mut escape = Escape::None;
        let mut recalled = self.history.len();
        let mut pending = Vec::new();
        loop {
            if pending.is_empty() {
                pending = console.read();
                continue;
            }
            let byte = pending.remove(0);
            let after_return = core::mem::replace(&mut self.after_return, false);
            match (escape, byte) {
                (Escape::None, 0x1b) => escape = Escape::Started,
                (Escape::Started, b'[') => escape = Escape::Bracket,
                (Escape::Bracket, b'A' | b'B') => {
                    escape = Escape::None;
                    recalled = if byte == b'A' {
                        recalled.saturating_sub(1)
                    } else {
                        (recalled + 1).min(self.history.len())
                    };
                    let replacement = self.history.get(recalled).cloned().unwrap_or_default();
                    erase(console, line.len());
                    console.write(&replacement);
                    line = replacement;
                }
                (Escape::Started | Escape::Bracket, _) => escape = Escape::None,
                (Escape::None, b'\n') if after_return => {}
                (Escape::None, b'\r' | b'\n') => {
                    self.after_return = byte == b'\r';
                    console.write("\n");
                    if !line.trim().is_empty() {
                        self.history.push(line.clone());
                    }
                    console.unread(pending);
                    return line;
                }
                (Escape::None, 0x7f | 0x08) => {
                    if line.pop().is_some() {
                        erase(console, 1);
                    }
                }
                (Escape::None, byte) if byte.is_ascii_graphic() || byte == b' ' => {
                    line.push(char::from(byte));
                    let mut echo = [0u8; 4];
                    console.write(char::from(byte).encode_utf8(&mut echo));
                }
                _ => {}
            }
        }
    }
}

/// Rubs out the last `count` characters on screen.
fn erase(console: &Console, count: usize) {
    for _ in 0..count {
        console.write("\x08 \x08");
    }
}
