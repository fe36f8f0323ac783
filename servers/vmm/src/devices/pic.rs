//! The two cascaded 8259A interrupt controllers (master at 0x20, slave at
//! 0xa0 on the master's line 2): initialisation words, masks, priorities,
//! end of interrupt, and reads of the request and service registers.

/// One 8259A.
#[derive(Default)]
struct Chip {
    /// Requests waiting (edge-triggered: set on a rising edge).
    request: u8,
    /// Being serviced (delivered, not yet ended).
    service: u8,
    mask: u8,
    /// The vector of line 0.
    base: u8,
    /// Which ICW comes next (0: none; 2, 3, 4).
    expecting: u8,
    /// ICW4 will follow ICW3.
    needs_icw4: bool,
    /// OCW3 asked to read the service register (else the request register).
    read_service: bool,
    /// The level of each line, for edge detection.
    level: u8,
}

impl Chip {
    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1: start initialisation.
            *self = Self {
                expecting: 2,
                needs_icw4: value & 1 != 0,
                ..Self::default()
            };
        } else if value & 0x18 == 0 {
            // OCW2: end of interrupt.
            match value >> 5 {
                0b001 => self.end_highest(),
                0b011 => self.service &= !(1 << (value & 7)),
                _ => {}
            }
        } else if value & 0x18 == 0x08 && value & 0b10 != 0 {
            // OCW3: which register a read returns.
            self.read_service = value & 1 != 0;
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.expecting {
            2 => {
                self.base = value & 0xf8;
                self.expecting = 3;
            }
            3 => self.expecting = if self.needs_icw4 { 4 } else { 0 },
            4 => self.expecting = 0,
            _ => self.mask = value,
        }
    }

    fn read_command(&self) -> u8 {
        if self.read_service { self.service } else { self.request }
    }

    fn set_line(&mut self, line: u8, high: bool) {
        let bit = 1 << line;
        if high && self.level & bit == 0 {
            self.request |= bit;
        }
        if high {
            self.level |= bit;
        } else {
            self.level &= !bit;
        }
    }

    /// The highest-priority unmasked request above everything in service.
    fn pending(&self) -> Option<u8> {
        let ready = self.request & !self.mask;
        (0..8)
            .take_while(|&line| self.service & (1 << line) == 0)
            .find(|&line| ready & (1 << line) != 0)
    }

    fn end_highest(&mut self) {
        if let Some(line) = (0..8).find(|&line| self.service & (1 << line) != 0) {
            self.service &= !(1 << line);
        }
    }
}

/// The PIC pair.
#[derive(Default)]
pub struct Pic {
    master: Chip,
    slave: Chip,
}

impl Pic {
    /// Whether it answers `port`.
    pub fn handles(port: u16) -> bool {
        matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1)
    }

    /// A port read.
    pub fn read(&self, port: u16) -> u8 {
        match port {
            0x20 => self.master.read_command(),
            0x21 => self.master.mask,
            0xa0 => self.slave.read_command(),
            _ => self.slave.mask,
        }
    }

    /// A port write.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            0x20 => self.master.write_command(value),
            0x21 => self.master.write_data(value),
            0xa0 => self.slave.write_command(value),
            _ => self.slave.write_data(value),
        }
    }

    /// Sets interrupt line `line` (0..16) high or low.
    pub fn set_line(&mut self, line: u8, high: bool) {
        if line < 8 {
            self.master.set_line(line, high);
        } else {
            self.slave.set_line(line - 8, high);
        }
    }

    /// Raises and lowers `line`: one edge.
    pub fn pulse(&mut self, line: u8) {
        self.set_line(line, true);
        self.set_line(line, false);
    }

    /// The vector to deliver now, if any, without taking it.
    pub fn pending_vector(&mut self) -> Option<u8> {
        self.master.set_line(2, self.slave.pending().is_some());
        match self.master.pending()? {
            2 => self.slave.pending().map(|line| self.slave.base + line),
            line => Some(self.master.base + line),
        }
    }

    /// Takes the pending interrupt (the CPU acknowledged it): it moves from
    /// request to service.
    pub fn acknowledge(&mut self) {
        let Some(line) = self.master.pending() else { return };
        self.master.request &= !(1 << line);
        self.master.service |= 1 << line;
        if line == 2
            && let Some(slave) = self.slave.pending()
        {
            self.slave.request &= !(1 << slave);
            self.slave.service |= 1 << slave;
        }
    }
}
