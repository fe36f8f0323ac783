//! Transfer buffers: how bulk data moves between a client and a server
//! without travelling in messages.
//!
//! The client makes a few frames, maps them ([`TransferBuffer`]) and sends
//! a copy of each to the server with a request of the protocol's own
//! ("share page N"); the server maps each page it receives
//! ([`SharedPages`]), and may pass copies on to a server of its own (a
//! filesystem to its disk driver). A request then names a byte range of
//! the buffer. The server checks every range against the pages it was
//! given, so a client can only hurt itself.

use abi::Rights;
use alloc::collections::BTreeMap;
use core::ops::Range;
use runtime::capability::{self, AddressSpace, Destination, Frame, Memory, Slot, Slots};
use runtime::memory::Region;

const PAGE: usize = 4096;

/// The client's side: frames mapped at consecutive addresses.
pub struct TransferBuffer {
    region: Region,
    first: Slot,
    pages: u8,
}

impl TransferBuffer {
    /// Makes `pages` physically consecutive frames from `memory` in fresh
    /// slots and maps them read-write in `address_space` (this process's).
    ///
    /// # Errors
    /// A failed syscall (slots, memory).
    pub fn new(slots: &Slots, memory: Memory, address_space: AddressSpace, pages: u8) -> Result<Self, abi::Error> {
        let first = slots.allocate()?;
        for _ in 1..pages {
            slots.allocate()?;
        }
        memory.create_contiguous_frames(first, u64::from(pages))?;
        let frames = (0..pages).map(move |page| Frame(Slot(first.0 + u64::from(page))));
        let region = Region::map(address_space, frames, Rights::READ | Rights::WRITE)?;
        Ok(Self { region, first, pages })
    }

    /// Sends a copy of every page's frame to a server: `send(page, slot)`
    /// must send the capability in `slot` (which moves it); `scratch` is an
    /// empty slot to copy through. The buffer keeps its own capabilities,
    /// so it can be shared again (with a restarted server).
    ///
    /// # Errors
    /// The first error of `send`, or of copying.
    pub fn share<E>(&self, scratch: Slot, send: impl FnMut(u8, Slot) -> Result<(), E>) -> Result<(), ShareError<E>> {
        let frames = (0..self.pages).map(|page| (page, Frame(Slot(self.first.0 + u64::from(page)))));
        share_copies(frames, scratch, send)
    }

    /// The mapped bytes.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Whether it has no pages.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }
}

/// Why sharing pages failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareError<E> {
    /// The server refused or the call failed.
    Send(E),
    /// A capability could not be copied (the scratch slot was not empty).
    Copy(abi::Error),
}

/// Sends a copy of each frame through `scratch` with `send`.
fn share_copies<E>(
    frames: impl Iterator<Item = (u8, Frame)>,
    scratch: Slot,
    mut send: impl FnMut(u8, Slot) -> Result<(), E>,
) -> Result<(), ShareError<E>> {
    for (page, frame) in frames {
        capability::copy(frame, Destination::own(scratch)).map_err(ShareError::Copy)?;
        let sent = send(page, scratch);
        // Sent, the copy moved away; refused, it must not linger.
        let _ = capability::delete(Destination::own(scratch));
        sent.map_err(ShareError::Send)?;
    }
    Ok(())
}

/// A byte range outside the pages a client shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotShared;

/// The server's side: the pages one client shared, each mapped alone.
#[derive(Default)]
pub struct SharedPages {
    pages: BTreeMap<u8, (Frame, Region)>,
}

impl SharedPages {
    /// Takes what a "share page `page`" request brought (`arrived`
    /// capabilities, in `received`): maps the frame as page `page`, keeping
    /// the capability in a fresh slot (replacing an earlier page `page`).
    /// Whatever happens, `received` is empty afterwards, so nothing a
    /// client sends can block the server's next receive.
    ///
    /// # Errors
    /// [`NotShared`] unless exactly one frame came for a page below `pages`
    /// and it could be kept and mapped.
    pub fn accept(
        &mut self,
        (page, pages): (u8, u8),
        arrived: u8,
        received: Slot,
        slots: &Slots,
        address_space: AddressSpace,
    ) -> Result<(), NotShared> {
        let kept = match slots.allocate() {
            Ok(kept) if arrived == 1 && page < pages => kept,
            _ => {
                let _ = capability::delete(Destination::own(received));
                return Err(NotShared);
            }
        };
        if capability::move_to(received, Destination::own(kept)).is_err() {
            let _ = capability::delete(Destination::own(received));
            return Err(NotShared);
        }
        match Region::map(
            address_space,
            core::iter::once(Frame(kept)),
            Rights::READ | Rights::WRITE,
        ) {
            Ok(region) => {
                if let Some((old, _)) = self.pages.insert(page, (Frame(kept), region)) {
                    let _ = capability::delete(Destination::own(old.0));
                }
                Ok(())
            }
            Err(_) => {
                let _ = capability::delete(Destination::own(kept));
                Err(NotShared)
            }
        }
    }

    /// Passes copies of the shared pages on, as [`TransferBuffer::share`].
    ///
    /// # Errors
    /// The first error of `send`, or of copying.
    pub fn share<E>(&self, scratch: Slot, send: impl FnMut(u8, Slot) -> Result<(), E>) -> Result<(), ShareError<E>> {
        share_copies(
            self.pages.iter().map(|(&page, (frame, _))| (page, *frame)),
            scratch,
            send,
        )
    }

    /// Whether every page of `bytes` was shared.
    pub fn covers(&self, bytes: Range<usize>) -> bool {
        bytes.is_empty()
            || (bytes.start / PAGE..=(bytes.end - 1) / PAGE)
                .all(|page| u8::try_from(page).is_ok_and(|page| self.pages.contains_key(&page)))
    }

    /// Copies `bytes` of the buffer into `into` (as long as the range).
    ///
    /// # Errors
    /// [`NotShared`] if a page of the range was not shared.
    pub fn read(&self, bytes: Range<usize>, into: &mut [u8]) -> Result<(), NotShared> {
        self.walk(bytes.start, into.len(), |region, at, range| {
            region.read(at, &mut into[range]).map_err(|_| NotShared)
        })
    }

    /// Copies `from` into the buffer at `start`.
    ///
    /// # Errors
    /// [`NotShared`] if a page of the range was not shared.
    pub fn write(&self, start: usize, from: &[u8]) -> Result<(), NotShared> {
        self.walk(start, from.len(), |region, at, range| {
            region.write(at, &from[range]).map_err(|_| NotShared)
        })
    }

    /// Copies `length` bytes of the buffer from `start` into `region` at
    /// `at` (a driver's DMA memory).
    ///
    /// # Errors
    /// [`NotShared`] if a page was not shared or `region` is too small.
    pub fn copy_out(&self, start: usize, length: usize, region: &Region, at: usize) -> Result<(), NotShared> {
        self.walk(start, length, |page, within, range| {
            region
                .copy_from(at + range.start, page, within, range.len())
                .map_err(|_| NotShared)
        })
    }

    /// Copies `length` bytes from `region` at `at` into the buffer at `start`.
    ///
    /// # Errors
    /// [`NotShared`] if a page was not shared or `region` is too small.
    pub fn copy_in(&self, start: usize, length: usize, region: &Region, at: usize) -> Result<(), NotShared> {
        self.walk(start, length, |page, within, range| {
            page.copy_from(within, region, at + range.start, range.len())
                .map_err(|_| NotShared)
        })
    }

    /// Calls `each(page, offset in the page, range of the caller's slice)`
    /// for every page the `length` bytes from `start` touch.
    fn walk(
        &self,
        start: usize,
        length: usize,
        mut each: impl FnMut(&Region, usize, Range<usize>) -> Result<(), NotShared>,
    ) -> Result<(), NotShared> {
        let mut done = 0;
        while done < length {
            let position = start.checked_add(done).ok_or(NotShared)?;
            let page = u8::try_from(position / PAGE).map_err(|_| NotShared)?;
            let (_, region) = self.pages.get(&page).ok_or(NotShared)?;
            let within = position % PAGE;
            let run = (PAGE - within).min(length - done);
            each(region, within, done..done + run)?;
            done += run;
        }
        Ok(())
    }
}
