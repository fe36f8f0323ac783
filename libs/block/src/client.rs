//! [`Disk`]: a client of a block driver, with its transfer buffer.

use crate::{Block, BufferIndex, Error, MAX_BUFFER_PAGES, MAX_TRANSFER, Reply, Request, SECTOR_SIZE};
use runtime::capability::{AddressSpace, Memory, Slot, Slots};
use runtime::ipc::Buffer;
use service::transfer::{ShareError, SharedPages, TransferBuffer};
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

impl From<ShareError<DiskError>> for DiskError {
    fn from(error: ShareError<DiskError>) -> Self {
        match error {
            ShareError::Send(error) => error,
            ShareError::Copy(error) => Self::Setup(error),
        }
    }
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
    /// An empty slot that shared capabilities pass through.
    scratch: Slot,
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
            scratch: slots.allocate().map_err(DiskError::Setup)?,
            sectors: 0,
            read_only: false,
        };
        disk.call(&Request::Forget)?;
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

    /// Hands every page of the transfer buffer to the driver, as buffer 0.
    fn share(&self) -> Result<(), DiskError> {
        self.transfer
            .share(self.scratch, |page, frame| self.send_page(OWN_BUFFER, page, frame))?;
        Ok(())
    }

    /// Hands the pages a client of ours shared with us to the driver as
    /// transfer buffer `buffer` (not 0, which is our own), so that
    /// [`Disk::read_into`] and [`Disk::write_from`] move its data directly.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn share_pages(&self, buffer: BufferIndex, pages: &SharedPages) -> Result<(), DiskError> {
        if buffer == OWN_BUFFER {
            return Err(DiskError::Block(Error::NoBuffer));
        }
        pages.share(self.scratch, |page, frame| self.send_page(buffer, page, frame))?;
        Ok(())
    }

    fn send_page(&self, buffer: BufferIndex, page: u8, frame: Slot) -> Result<(), DiskError> {
        self.client
            .call_sending(&Request::Share { buffer, page }, Some(frame))?
            .map_err(DiskError::Block)
            .map(drop)
    }

    /// Runs `transfer` on the client's own buffer; if the driver no longer
    /// has it (it was restarted), shares the buffer again and runs it again,
    /// up to [`SHARE_ATTEMPTS`] times (the driver may restart meanwhile).
    fn with_own_buffer(&self, transfer: impl Fn() -> Result<(), DiskError>) -> Result<(), DiskError> {
        retry_unshared(transfer, || self.share())
    }

    /// Reads `count` sectors from `sector` straight into shared buffer
    /// `buffer` at byte `offset`.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn read_into(&self, buffer: BufferIndex, offset: u32, sector: u64, count: u32) -> Result<(), DiskError> {
        self.call(&Request::Read {
            buffer,
            sector,
            count,
            offset,
        })
        .map(drop)
    }

    /// Writes `count` sectors at `sector` straight from shared buffer
    /// `buffer` at byte `offset`.
    ///
    /// # Errors
    /// [`DiskError`].
    pub fn write_from(&self, buffer: BufferIndex, offset: u32, sector: u64, count: u32) -> Result<(), DiskError> {
        self.call(&Request::Write {
            buffer,
            sector,
            count,
            offset,
        })
        .map(drop)
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
            let count = (chunk.len() / SECTOR_SIZE) as u32;
            self.with_own_buffer(|| self.read_into(OWN_BUFFER, 0, sector, count))?;
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
            let count = (chunk.len() / SECTOR_SIZE) as u32;
            self.with_own_buffer(|| self.write_from(OWN_BUFFER, 0, sector, count))?;
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

/// The client's own transfer buffer.
const OWN_BUFFER: BufferIndex = 0;

/// How many times a transfer is tried whose buffer the driver lost.
pub const SHARE_ATTEMPTS: u32 = 4;

/// Runs `transfer`; while the driver answers that it lacks the buffer (it
/// was restarted and forgot it), runs `share` and tries again, up to
/// [`SHARE_ATTEMPTS`] times in all.
///
/// # Errors
/// The last attempt's, or `share`'s.
pub fn retry_unshared(
    transfer: impl Fn() -> Result<(), DiskError>,
    share: impl Fn() -> Result<(), DiskError>,
) -> Result<(), DiskError> {
    let mut attempt = 1;
    loop {
        match transfer() {
            Err(DiskError::Block(Error::NoBuffer)) if attempt < SHARE_ATTEMPTS => {
                share()?;
                attempt += 1;
            }
            other => return other,
        }
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
