//! [`Files`]: a client of the filesystem server, with its transfer buffer.

use crate::{Entry, Error, Fs, Handle, MAX_BUFFER_PAGES, Metadata, Reply, Request, Usage};
use alloc::string::String;
use alloc::vec::Vec;
use runtime::capability::{AddressSpace, Memory, Slot, Slots};
use runtime::ipc::Buffer;
use service::transfer::{ShareError, TransferBuffer};
use service::{CallError, Client};

/// Why a file operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilesError {
    /// The server refused or failed the request.
    Fs(Error),
    /// The call itself failed (no server, server died, kernel error).
    Call(CallError),
    /// Setting up the transfer buffer failed.
    Setup(abi::Error),
}

impl core::fmt::Display for FilesError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Fs(error) => write!(formatter, "{error}"),
            Self::Call(error) => write!(formatter, "the filesystem server did not answer ({error:?})"),
            Self::Setup(error) => write!(formatter, "cannot set up a transfer buffer ({error:?})"),
        }
    }
}

impl From<CallError> for FilesError {
    fn from(error: CallError) -> Self {
        Self::Call(error)
    }
}

/// A connection to the filesystem server.
pub struct Files {
    client: Client<Fs>,
    transfer: TransferBuffer,
    /// An empty slot that shared capabilities pass through.
    scratch: Slot,
}

impl Files {
    /// Looks the server up, makes a transfer buffer from `memory`, maps it
    /// in `address_space` and shares it.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn connect(
        slots: &Slots,
        memory: Memory,
        address_space: AddressSpace,
        buffer: Buffer,
    ) -> Result<Self, FilesError> {
        let client = Client::<Fs>::connect(slots.allocate().map_err(FilesError::Setup)?, buffer)?;
        let transfer =
            TransferBuffer::new(slots, memory, address_space, MAX_BUFFER_PAGES).map_err(FilesError::Setup)?;
        let files = Self {
            client,
            transfer,
            scratch: slots.allocate().map_err(FilesError::Setup)?,
        };
        files.share()?;
        Ok(files)
    }

    /// Hands every page of the transfer buffer to the server.
    fn share(&self) -> Result<(), FilesError> {
        self.transfer
            .share(self.scratch, |page, frame| {
                self.client
                    .call_sending(&Request::Share { page }, Some(frame))?
                    .map_err(FilesError::Fs)
                    .map(drop)
            })
            .map_err(|error| match error {
                ShareError::Send(error) => error,
                ShareError::Copy(error) => FilesError::Setup(error),
            })
    }

    /// Calls the server; if it no longer has the transfer buffer (it was
    /// restarted), shares it again and calls once more.
    fn call(&self, request: &Request) -> Result<Reply, FilesError> {
        match self.client.call(request)? {
            Err(Error::NoBuffer) => {
                self.share()?;
                self.client.call(request)?.map_err(FilesError::Fs)
            }
            reply => reply.map_err(FilesError::Fs),
        }
    }

    fn done(&self, request: &Request) -> Result<(), FilesError> {
        self.call(request).map(drop)
    }

    /// Opens a file (creating it if `create`); returns its handle and size.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn open(&self, path: &str, create: bool) -> Result<(Handle, u64), FilesError> {
        let request = Request::Open {
            path: String::from(path),
            create,
        };
        match self.call(&request)? {
            Reply::Opened { handle, size } => Ok((handle, size)),
            _ => Err(FilesError::Call(CallError::MalformedReply)),
        }
    }

    /// Closes a handle.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn close(&self, handle: Handle) -> Result<(), FilesError> {
        self.done(&Request::Close { handle })
    }

    /// Reads into `into` from `offset`; returns the bytes read (fewer at
    /// the end of the file).
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn read(&self, handle: Handle, offset: u64, into: &mut [u8]) -> Result<usize, FilesError> {
        let mut done = 0;
        for chunk in into.chunks_mut(self.transfer.len()) {
            let request = Request::Read {
                handle,
                offset: offset + done as u64,
                length: chunk.len() as u32,
                buffer_offset: 0,
            };
            let Reply::Count(count) = self.call(&request)? else {
                return Err(FilesError::Call(CallError::MalformedReply));
            };
            let count = (count as usize).min(chunk.len());
            self.transfer
                .region()
                .read(0, &mut chunk[..count])
                .map_err(|_| FilesError::Fs(Error::NoBuffer))?;
            done += count;
            if count < chunk.len() {
                break;
            }
        }
        Ok(done)
    }

    /// Writes all of `data` at `offset`.
    ///
    /// # Errors
    /// [`FilesError`]; on `NoSpace` the bytes before the error were written.
    pub fn write(&self, handle: Handle, offset: u64, data: &[u8]) -> Result<(), FilesError> {
        let mut done = 0;
        while done < data.len() {
            let chunk = &data[done..data.len().min(done + self.transfer.len())];
            self.transfer
                .region()
                .write(0, chunk)
                .map_err(|_| FilesError::Fs(Error::NoBuffer))?;
            let request = Request::Write {
                handle,
                offset: offset + done as u64,
                length: chunk.len() as u32,
                buffer_offset: 0,
            };
            let Reply::Count(count) = self.call(&request)? else {
                return Err(FilesError::Call(CallError::MalformedReply));
            };
            // A short count means the disk filled up part-way: the next
            // round reports why.
            done += (count as usize).min(chunk.len());
            if count == 0 {
                return Err(FilesError::Fs(Error::NoSpace));
            }
        }
        Ok(())
    }

    /// Sets a file's size.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn truncate(&self, handle: Handle, size: u64) -> Result<(), FilesError> {
        self.done(&Request::Truncate { handle, size })
    }

    /// Reads a whole file.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, FilesError> {
        let (handle, size) = self.open(path, false)?;
        let mut data = alloc::vec![0; size as usize];
        let read = self.read(handle, 0, &mut data);
        let closed = self.close(handle);
        data.truncate(read?);
        closed.map(|()| data)
    }

    /// Creates or replaces a whole file.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn write_file(&self, path: &str, data: &[u8]) -> Result<(), FilesError> {
        let (handle, _) = self.open(path, true)?;
        let written = self.truncate(handle, 0).and_then(|()| self.write(handle, 0, data));
        let closed = self.close(handle);
        written.and(closed)
    }

    /// Makes a directory.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn make_directory(&self, path: &str) -> Result<(), FilesError> {
        self.done(&Request::MakeDirectory {
            path: String::from(path),
        })
    }

    /// Removes a file or an empty directory.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn remove(&self, path: &str) -> Result<(), FilesError> {
        self.done(&Request::Remove {
            path: String::from(path),
        })
    }

    /// Renames a file or directory.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FilesError> {
        self.done(&Request::Rename {
            from: String::from(from),
            to: String::from(to),
        })
    }

    /// Every entry of a directory.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, FilesError> {
        let mut all = Vec::new();
        loop {
            let request = Request::ReadDirectory {
                path: String::from(path),
                start: all.len() as u32,
            };
            match self.call(&request)? {
                Reply::Entries { entries, more } => {
                    let last = !more || entries.is_empty();
                    all.extend(entries);
                    if last {
                        return Ok(all);
                    }
                }
                _ => return Err(FilesError::Call(CallError::MalformedReply)),
            }
        }
    }

    /// What `path` is.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn stat(&self, path: &str) -> Result<Metadata, FilesError> {
        match self.call(&Request::Stat {
            path: String::from(path),
        })? {
            Reply::Metadata(metadata) => Ok(metadata),
            _ => Err(FilesError::Call(CallError::MalformedReply)),
        }
    }

    /// Makes every completed write durable.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn sync(&self) -> Result<(), FilesError> {
        self.done(&Request::Sync)
    }

    /// Space used and free.
    ///
    /// # Errors
    /// [`FilesError`].
    pub fn usage(&self) -> Result<Usage, FilesError> {
        match self.call(&Request::Usage)? {
            Reply::Usage(usage) => Ok(usage),
            _ => Err(FilesError::Call(CallError::MalformedReply)),
        }
    }
}
