//! Packs the boot archive: every program (checked to be an x86-64 ELF
//! executable the kernel can load), the system description, and the
//! kernel's symbol table for backtraces.

use crate::Error;
use boot_archive::symbols::{Symbol, SymbolTable};
use boot_archive::{ArchiveBuilder, EntryKind};
use object::{Object, ObjectSymbol, SymbolKind};
use std::path::{Path, PathBuf};

/// Name of the system description (postcard) in the archive.
pub const SYSTEM_DESCRIPTION: &str = "system";
/// Name of the kernel symbol table in the archive.
pub const KERNEL_SYMBOLS: &str = "kernel.symbols";

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|error| Error::Io(path.to_path_buf(), error))
}

/// Checks that `bytes` (read from `path`) is a program the kernel can load.
///
/// # Errors
/// [`Error::Invalid`] naming the file and the reason.
pub fn check_program(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    elf::Elf::parse(bytes)
        .map(|_| ())
        .map_err(|reason| Error::Invalid(format!("{}: refused: {reason}", path.display())))
}

/// The kernel's function symbols, demangled, at link-time addresses.
///
/// # Errors
/// [`Error::Invalid`] if the kernel is not an ELF file `object` can read.
pub fn kernel_symbols(path: &Path, bytes: &[u8]) -> Result<SymbolTable, Error> {
    let file = object::File::parse(bytes)
        .map_err(|reason| Error::Invalid(format!("{}: refused: {reason}", path.display())))?;
    let symbols = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.address() != 0)
        .filter_map(|symbol| {
            let name = symbol.name().ok()?;
            Some(Symbol {
                address: symbol.address(),
                size: symbol.size(),
                name: format!("{:#}", rustc_demangle::demangle(name)),
            })
        })
        .collect();
    Ok(SymbolTable::new(symbols))
}

/// How many bytes of memory the program at `path` occupies once loaded.
///
/// # Errors
/// [`Error::Invalid`] if it is not a program the kernel can load.
pub fn loaded_size(path: &Path) -> Result<u64, Error> {
    let bytes = read(path)?;
    let elf =
        elf::Elf::parse(&bytes).map_err(|reason| Error::Invalid(format!("{}: refused: {reason}", path.display())))?;
    let (low, high) = elf.address_range();
    Ok(high - low)
}

/// Builds the archive from the kernel, the `(name, path)` programs and the
/// packed system description.
///
/// # Errors
/// [`Error`] naming the first file that is missing or refused.
pub fn pack(kernel: &Path, programs: &[(String, PathBuf)], description: &[u8]) -> Result<Vec<u8>, Error> {
    let mut archive = ArchiveBuilder::new();
    let invalid = |error: boot_archive::ArchiveError| Error::Invalid(error.to_string());
    for (name, path) in programs {
        let bytes = read(path)?;
        check_program(path, &bytes)?;
        archive.add(name, EntryKind::Program, bytes).map_err(invalid)?;
    }
    archive
        .add(SYSTEM_DESCRIPTION, EntryKind::SystemDescription, description.to_vec())
        .map_err(invalid)?;
    let symbols = kernel_symbols(kernel, &read(kernel)?)?;
    archive
        .add(KERNEL_SYMBOLS, EntryKind::KernelSymbols, symbols.to_bytes())
        .map_err(invalid)?;
    Ok(archive.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("image-builder-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn refusal(result: Result<Vec<u8>, Error>) -> String {
        match result {
            Err(error) => error.to_string(),
            Ok(_) => panic!("the archive was built"),
        }
    }

    #[test]
    fn refuses_a_missing_program_naming_it() {
        let missing = PathBuf::from("/nonexistent/shell");
        let message = refusal(pack(&missing, &[("shell".into(), missing.clone())], b""));
        assert!(message.contains("/nonexistent/shell"), "{message}");
    }

    #[test]
    fn refuses_a_file_that_is_not_elf() {
        let path = scratch(
            "notes.txt",
            b"just some text, long enough to hold an ELF header if it were one.....",
        );
        let message = refusal(pack(&path, &[("notes".into(), path.clone())], b""));
        assert!(
            message.contains("notes.txt") && message.contains("not an ELF file"),
            "{message}"
        );
    }

    #[test]
    fn refuses_an_elf_for_another_architecture() {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2; // 64-bit
        header[5] = 1; // little-endian
        header[6] = 1; // version
        header[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        header[18..20].copy_from_slice(&183u16.to_le_bytes()); // AArch64
        header[20..24].copy_from_slice(&1u32.to_le_bytes());
        header[52..54].copy_from_slice(&64u16.to_le_bytes());
        header[54..56].copy_from_slice(&56u16.to_le_bytes());
        let path = scratch("arm-program", &header);
        let message = refusal(pack(&path, &[("arm".into(), path.clone())], b""));
        assert!(
            message.contains("arm-program") && message.contains("architecture"),
            "{message}"
        );
    }
}
