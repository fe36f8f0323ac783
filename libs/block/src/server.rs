//! The driver side: one serve loop for every disk driver. A driver
//! implements [`Driver`] (move sectors between the disk and a client's
//! pages) and calls [`serve`], which keeps each client's transfer buffers
//! and checks every request before the driver sees it.

use crate::{Block, BufferIndex, Error, MAX_BUFFER_PAGES, MAX_BUFFERS, MAX_TRANSFER, Reply, Request, check_transfer};
use alloc::collections::BTreeMap;
use core::ops::Range;
use runtime::capability::{AddressSpace, Endpoint, Slot, Slots};
use runtime::ipc::Buffer;
use service::transfer::SharedPages;
use service::{ErrorCode, Response};

/// A disk, as [`serve`] drives it. Requests arrive checked: the sectors
/// are on the disk and `bytes` (as long as the sectors) is inside the
/// client's buffer, though its pages may still be missing (`NoBuffer`).
pub trait Driver {
    /// Number of sectors.
    fn sectors(&self) -> u64;

    /// Whether writes are refused.
    fn read_only(&self) -> bool;

    /// Reads from `sector` into `bytes` of `transfer`.
    ///
    /// # Errors
    /// [`Error::Device`] or [`Error::NoBuffer`].
    fn read(&mut self, sector: u64, transfer: &SharedPages, bytes: Range<usize>) -> Result<(), Error>;

    /// Writes `bytes` of `transfer` at `sector`.
    ///
    /// # Errors
    /// [`Error::Device`] or [`Error::NoBuffer`].
    fn write(&mut self, sector: u64, transfer: &SharedPages, bytes: Range<usize>) -> Result<(), Error>;

    /// Makes every completed write durable.
    ///
    /// # Errors
    /// [`Error::Device`].
    fn flush(&mut self) -> Result<(), Error>;
}

/// Registers `endpoint` as the "block" service and serves `driver` on it
/// for ever. Capabilities sent with requests land in `receive`; shared
/// pages are kept in slots from `slots` and mapped in `address_space`.
///
/// Returns only if names refuses the registration or the endpoint fails.
pub fn serve(
    driver: &mut impl Driver,
    endpoint: Endpoint,
    buffer: Buffer,
    receive: Slot,
    slots: &Slots,
    address_space: AddressSpace,
) -> abi::Error {
    if service::names::register("block", endpoint.0, buffer).is_err() {
        return abi::Error::new(abi::ErrorKind::InvalidState);
    }
    // Each client's transfer buffers, by (badge, buffer index).
    let mut transfers: BTreeMap<(u64, BufferIndex), SharedPages> = BTreeMap::new();
    service::serve::<Block>(endpoint, buffer, Some(receive), |request| {
        let badge = request.badge;
        let sectors = driver.sectors();
        let reply = match request.body {
            Request::Share { buffer, page } => {
                // A buffer index past the last takes no pages: the share is
                // refused and what came with it dropped.
                let mut refused = SharedPages::default();
                let (transfer, pages) = match buffer < MAX_BUFFERS {
                    true => (transfers.entry((badge, buffer)).or_default(), MAX_BUFFER_PAGES),
                    false => (&mut refused, 0),
                };
                transfer
                    .accept((page, pages), request.capabilities, receive, slots, address_space)
                    .map(|()| Reply::Done)
                    .map_err(|_| Error::NoBuffer)
            }
            Request::Info => Ok(Reply::Info {
                sectors,
                read_only: driver.read_only(),
            }),
            Request::Read {
                buffer,
                sector,
                count,
                offset,
            } => check_transfer(sectors, MAX_TRANSFER, sector, count, offset).and_then(|bytes| {
                let transfer = transfers.get(&(badge, buffer)).ok_or(Error::NoBuffer)?;
                driver.read(sector, transfer, bytes).map(|()| Reply::Done)
            }),
            Request::Write {
                buffer,
                sector,
                count,
                offset,
            } => check_transfer(sectors, MAX_TRANSFER, sector, count, offset).and_then(|bytes| {
                if driver.read_only() {
                    return Err(Error::ReadOnly);
                }
                let transfer = transfers.get(&(badge, buffer)).ok_or(Error::NoBuffer)?;
                driver.write(sector, transfer, bytes).map(|()| Reply::Done)
            }),
            Request::Flush => driver.flush().map(|()| Reply::Done),
            Request::Forget => {
                transfers.retain(|&(owner, _), _| owner != badge);
                Ok(Reply::Done)
            }
        };
        Ok::<_, ErrorCode>(Response::from(reply))
    })
}
