//! The ATA register set of a legacy IDE channel and what IDENTIFY DEVICE
//! reports (ATA/ATAPI-8, sections 7.12 and 7.16). Host-tested; the driver is
//! `main.rs`.

#![cfg_attr(not(test), no_std)]

/// Registers, by offset from the channel's command block (0x1F0, 0x170).
pub mod register {
    /// Data, 16 bits at a time.
    pub const DATA: u16 = 0;
    /// Sector count.
    pub const SECTOR_COUNT: u16 = 2;
    /// LBA bits 0-7 (and 24-31 when written first, for 48-bit commands).
    pub const LBA_LOW: u16 = 3;
    /// LBA bits 8-15 (32-39).
    pub const LBA_MID: u16 = 4;
    /// LBA bits 16-23 (40-47).
    pub const LBA_HIGH: u16 = 5;
    /// Drive select and LBA mode.
    pub const DEVICE: u16 = 6;
    /// Status when read (clears the interrupt), command when written.
    pub const STATUS_COMMAND: u16 = 7;
}

/// Status bits.
pub mod status {
    /// The device is busy; no other bit is valid.
    pub const BUSY: u8 = 0x80;
    /// A device fault.
    pub const FAULT: u8 = 0x20;
    /// The device wants data moved.
    pub const DATA_REQUEST: u8 = 0x08;
    /// The command failed.
    pub const ERROR: u8 = 0x01;
}

/// Commands.
pub mod command {
    /// IDENTIFY DEVICE.
    pub const IDENTIFY: u8 = 0xec;
    /// READ SECTORS EXT (48-bit LBA, PIO).
    pub const READ_EXT: u8 = 0x24;
    /// WRITE SECTORS EXT.
    pub const WRITE_EXT: u8 = 0x34;
    /// READ MULTIPLE EXT: as READ SECTORS EXT, with an interrupt per block
    /// of sectors (SET MULTIPLE MODE) rather than per sector.
    pub const READ_MULTIPLE_EXT: u8 = 0x29;
    /// WRITE MULTIPLE EXT.
    pub const WRITE_MULTIPLE_EXT: u8 = 0x39;
    /// SET MULTIPLE MODE: the sector count register gives the block.
    pub const SET_MULTIPLE_MODE: u8 = 0xc6;
    /// FLUSH CACHE EXT.
    pub const FLUSH_EXT: u8 = 0xea;
}

/// The largest block of sectors per interrupt this driver asks for (QEMU's
/// and Bochs' drives allow 16).
pub const MAX_BLOCK: u16 = 16;

/// The DEVICE register for the master drive in LBA mode.
pub const MASTER_LBA: u8 = 0xe0;

/// What IDENTIFY DEVICE says about the drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Sectors addressable with 48-bit LBA.
    pub sectors: u64,
    /// The most sectors READ/WRITE MULTIPLE may move per interrupt (word
    /// 47, bits 0-7); 0 without those commands.
    pub max_block: u16,
}

impl Identity {
    /// The block for SET MULTIPLE MODE: the largest power of two the drive
    /// allows, at most [`MAX_BLOCK`]; `None` when that is a single sector.
    pub fn block(&self) -> Option<u16> {
        let allowed = self.max_block.min(MAX_BLOCK);
        let block = match allowed {
            0 => 0,
            _ => 1 << allowed.ilog2(),
        };
        (block > 1).then_some(block)
    }
}

/// Reads the 256 words IDENTIFY DEVICE returns. `None` for a drive
/// without 48-bit LBA (word 83, bit 10), which this driver does not drive.
pub fn parse_identity(words: &[u16; 256]) -> Option<Identity> {
    if words[83] & (1 << 10) == 0 {
        return None;
    }
    let sectors = (100..104)
        .rev()
        .fold(0u64, |total, index| total << 16 | u64::from(words[index]));
    Some(Identity {
        sectors,
        max_block: words[47] & 0xff,
    })
}

/// The register writes of a 48-bit command for `count` sectors (0 means
/// 65,536) at `lba`: each register takes its high byte, then its low one.
pub fn lba48_registers(lba: u64, count: u16) -> [(u16, u8); 8] {
    let byte = |index: u32| (lba >> (8 * index)) as u8;
    [
        (register::SECTOR_COUNT, (count >> 8) as u8),
        (register::LBA_LOW, byte(3)),
        (register::LBA_MID, byte(4)),
        (register::LBA_HIGH, byte(5)),
        (register::SECTOR_COUNT, count as u8),
        (register::LBA_LOW, byte(0)),
        (register::LBA_MID, byte(1)),
        (register::LBA_HIGH, byte(2)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_reads_the_48_bit_sector_count() {
        let mut words = [0u16; 256];
        words[83] = 1 << 10;
        words[100] = 0x0000;
        words[101] = 0x0002; // 0x2_0000 sectors = 64 MiB
        words[47] = 0x8010;
        assert_eq!(
            parse_identity(&words),
            Some(Identity {
                sectors: 0x2_0000,
                max_block: 16
            })
        );
        words[83] = 0;
        assert_eq!(parse_identity(&words), None, "no 48-bit LBA");
    }

    #[test]
    fn the_block_is_the_largest_power_of_two_allowed_up_to_sixteen() {
        let block = |max_block| Identity { sectors: 1, max_block }.block();
        assert_eq!(block(0), None, "no READ/WRITE MULTIPLE");
        assert_eq!(block(1), None, "a sector per interrupt anyway");
        assert_eq!(block(2), Some(2));
        assert_eq!(block(12), Some(8));
        assert_eq!(block(16), Some(16));
        assert_eq!(block(128), Some(16));
    }

    #[test]
    fn lba48_writes_high_bytes_first() {
        let lba = 0x0605_0403_0201;
        assert_eq!(
            lba48_registers(lba, 0x0102),
            [
                (register::SECTOR_COUNT, 0x01),
                (register::LBA_LOW, 0x04),
                (register::LBA_MID, 0x05),
                (register::LBA_HIGH, 0x06),
                (register::SECTOR_COUNT, 0x02),
                (register::LBA_LOW, 0x01),
                (register::LBA_MID, 0x02),
                (register::LBA_HIGH, 0x03),
            ]
        );
    }
}
