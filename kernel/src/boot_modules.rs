//! The boot archive the loader hands over as its ramdisk: user programs,
//! the system description, and the kernel's own symbols.

use boot_archive::symbols::SymbolTable;
use boot_archive::{Archive, ArchiveError, EntryKind, File};
use spin::Once;

static ARCHIVE: Once<Archive<'static>> = Once::new();
static BYTES: Once<&'static [u8]> = Once::new();
static SYMBOLS: Once<(SymbolTable, u64)> = Once::new();

/// Checks the archive at `bytes` and keeps it. `kernel_offset` is how far
/// the loader moved the kernel from its link address, for symbols.
///
/// # Errors
/// [`ArchiveError`] when the archive is corrupt; the kernel then has
/// nothing to run.
pub fn init(bytes: &'static [u8], kernel_offset: u64) -> Result<(), ArchiveError> {
    let archive = Archive::parse(bytes)?;
    for file in archive.entries() {
        log::info!(
            "boot archive: {:?} '{}' ({} bytes)",
            file.kind,
            file.name,
            file.data.len()
        );
    }
    if let Some(file) = archive.find_kind(EntryKind::KernelSymbols) {
        match SymbolTable::parse(file.data) {
            Ok(table) => {
                SYMBOLS.call_once(|| (table, kernel_offset));
            }
            Err(error) => {
                log::warn!("boot archive: kernel symbols unreadable ({error:?}); backtraces show addresses only")
            }
        }
    }
    ARCHIVE.call_once(|| archive);
    BYTES.call_once(|| bytes);
    Ok(())
}

/// The whole archive, for init.
pub fn bytes() -> &'static [u8] {
    BYTES.get().copied().unwrap_or_default()
}

/// The program called `name`.
pub fn program(name: &str) -> Option<File<'static>> {
    ARCHIVE.get()?.find(name).filter(|file| file.kind == EntryKind::Program)
}

/// The kernel function containing `address`, and the offset into it.
pub fn symbolise(address: u64) -> Option<(&'static str, u64)> {
    let (table, offset) = SYMBOLS.get()?;
    table.lookup(address.wrapping_sub(*offset))
}
