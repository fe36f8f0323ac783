//! [`Disk`]: a client of a block driver, with its transfer buffer.

use crate::{Block, Error, MAX_BUFFER_PAGES, MAX_TRANSFER, Reply, Request, SECTOR_SIZE};
use runtime::capability::{AddressSpace, Memory, Slots};
use runtime::ipc::Buffer;
use service::transfer::TransferBuffer;
use service::{CallError, Client};

/// Why a disk operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The driver refused or failed the request.
    Block(Error),
    /// The call itself failed (no driver, driver died, kernel error).
    Call(CallError),
    /// Setting up the transfer buffer failed.
    Setup(abi::Error),
}

impl From<CallError> for DiskError {
    fn from(error: CallError) -> Self {
        Self::Call(error)
    }
}

/// A block device reached through its driver.
pub struct Disk {
    client: Client<Block>,
    transfer: TransferBuffer,
    sectors: u64,
    read_only: bool,
}

impl Disk {
    /// Looks the driver up, makes a transfer buffer from `memory`, maps it
    /// in `address_space` and shares it with the driver.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn connect(
        slots: &Slots,
        memory: Memory,
        address_space: AddressSpace,
        buffer: Buffer,
    ) -> Result<Self, DiskError> {
        let client = Client::<Block>::connect(slots.allocate().map_err(DiskError::Setup)?, buffer)?;
        let transfer = TransferBuffer::new(slots, memory, address_space, MAX_BUFFER_PAGES).map_err(DiskError::Setup)?;
        let mut disk = Self {
            client,
            transfer,
            sectors: 0,
            read_only: false,
        };
        disk.share()?;
        match disk.call(&Request::Info)? {
            Reply::Info { sectors, read_only } => {
                disk.sectors = sectors;
                disk.read_only = read_only;
                Ok(disk)
            }
            Reply::Done => Err(DiskError::Call(CallError::MalformedReply)),
        }
    }

    /// Hands every page of the transfer buffer to the driver.
    fn share(&self) -> Result<(), DiskError> {
        for (page, frame) in self.transfer.frames() {
            self.client
                .call_sending(&Request::Share { page }, Some(frame.0))?
                .map_err(DiskError::Block)?;
        }
        Ok(())
    }

    fn call(&self, request: &Request) -> Result<Reply, DiskError> {
        self.client.call(request)?.map_err(DiskError::Block)
    }

    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reads `into.len() / 512` sectors from `sector`.
    ///
    /// # Errors
    /// [`DiskError`]; `Misaligned` if `into` is not whole sectors.
    pub fn read(&self, sector: u64, into: &mut [u8]) -> Result<(), DiskError> {
        whole_sectors(into.len())?;
        for (chunk, sector) in into.chunks_mut(MAX_TRANSFER).zip(chunk_sectors(sector)) {
            self.call(&Request::Read {
                sector,
                count: (chunk.len() / SECTOR_SIZE) as u32,
                offset: 0,
            })?;
            self.transfer
                .region()
                .read(0, chunk)
                .map_err(|_| DiskError::Block(Error::Misaligned))?;
        }
        Ok(())
    }

    /// Writes `from` (whole sectors) at `sector`.
    ///
    /// # Errors
    /// [`DiskError`]; `Misaligned` if `from` is not whole sectors.
    pub fn write(&self, sector: u64, from: &[u8]) -> Result<(), DiskError> {
        whole_sectors(from.len())?;
        for (chunk, sector) in from.chunks(MAX_TRANSFER).zip(chunk_sectors(sector)) {
            self.transfer
                .region()
                .write(0, chunk)
                .map_err(|_| DiskError::Block(Error::Misaligned))?;
            self.call(&Request::Write {
                sector,
                count: (chunk.len() / SECTOR_SIZE) as u32,
                offset: 0,
            })?;
        }
        Ok(())
    }

    /// Makes every completed write durable.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn flush(&self) -> Result<(), DiskError> {
        self.call(&Request::Flush).map(drop)
    }
}

/// The first sector of each [`MAX_TRANSFER`]-byte chunk from `sector` on.
fn chunk_sectors(sector: u64) -> impl Iterator<Item = u64> {
    (0..).map(move |chunk: u64| sector + chunk * (MAX_TRANSFER / SECTOR_SIZE) as u64)
}

/// Refuses a length that is not whole sectors.
fn whole_sectors(bytes: usize) -> Result<(), DiskError> {
    match bytes % SECTOR_SIZE {
        0 => Ok(()),
        _ => Err(DiskError::Block(Error::Misaligned)),
    }
}
