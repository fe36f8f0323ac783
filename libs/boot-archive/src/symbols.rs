//! The kernel's symbol table: the payload of the
//! [`KernelSymbols`](crate::EntryKind::KernelSymbols) entry, so the kernel
//! can name the functions in its own backtraces.
//!
//! The payload is a [postcard]-serialised
//! `SymbolTable { symbols: Vec<Symbol> }`, each
//! `Symbol { address: u64, size: u64, name: String }`: in bytes, the symbol
//! count, then for each symbol its address, size and name length as unsigned
//! LEB128 varints, followed by the name's UTF-8 bytes. Symbols are sorted by
//! address; several may share one. Addresses are link-time (ELF) virtual
//! addresses, so a kernel loaded at a different address subtracts its load
//! offset before a [`SymbolTable::lookup`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// One symbol: a function or object of the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    /// The link-time virtual address of its first byte.
    pub address: u64,
    /// Its size in bytes, or 0 if unknown.
    pub size: u64,
    /// Its name, demangled or not as the image builder chose.
    pub name: String,
}

/// A symbol table, always sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolTable {
    // A one-field struct serialises exactly as its field, so this is the
    // `SymbolTable { symbols }` of the format.
    symbols: Vec<Symbol>,
}

impl SymbolTable {
    /// A table of `symbols`, in any order; they are sorted by address,
    /// keeping the given order among symbols at the same address.
    pub fn new(mut symbols: Vec<Symbol>) -> Self {
        symbols.sort_by_key(|symbol| symbol.address);
        Self { symbols }
    }

    /// Decodes a table from the payload of a `KernelSymbols` entry.
    ///
    /// # Errors
    ///
    /// [`SymbolTableError::Malformed`] if `bytes` is not exactly one encoded
    /// table, [`SymbolTableError::Unsorted`] if its symbols are not sorted
    /// by address.
    pub fn parse(bytes: &[u8]) -> Result<Self, SymbolTableError> {
        let Ok((symbols, [])) = postcard::take_from_bytes::<Vec<Symbol>>(bytes) else {
            return Err(SymbolTableError::Malformed);
        };
        if !symbols.is_sorted_by_key(|symbol| symbol.address) {
            return Err(SymbolTableError::Unsorted);
        }
        Ok(Self { symbols })
    }

    /// Encodes the table as the payload of a `KernelSymbols` entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.symbols).expect("serialising to a Vec cannot fail")
    }

    /// The symbols, sorted by address.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The symbol containing the link-time `address`, and how far into it
    /// the address lies.
    ///
    /// Only the nearest symbol at or below `address` is considered (the last
    /// one listed, if several share its address). It matches if `address`
    /// lies within its `size` bytes or, when its size is 0 (unknown), at any
    /// distance, up to the next symbol.
    pub fn lookup(&self, address: u64) -> Option<(&str, u64)> {
        let after = self.symbols.partition_point(|symbol| symbol.address <= address);
        let symbol = self.symbols.get(after.checked_sub(1)?)?;
        let offset = address - symbol.address;
        (symbol.size == 0 || offset < symbol.size).then_some((symbol.name.as_str(), offset))
    }
}

/// Why a symbol table could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolTableError {
    /// The bytes are not exactly one encoded table.
    Malformed,
    /// The symbols are not sorted by address.
    Unsorted,
}

impl fmt::Display for SymbolTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => write!(f, "kernel symbol table corrupt: cannot be decoded"),
            Self::Unsorted => {
                write!(f, "kernel symbol table corrupt: symbols are not sorted by address")
            }
        }
    }
}

impl core::error::Error for SymbolTableError {}

#[cfg(test)]
mod tests {
    use super::{Symbol, SymbolTable, SymbolTableError};

    fn symbol(address: u64, size: u64, name: &str) -> Symbol {
        Symbol {
            address,
            size,
            name: name.into(),
        }
    }

    /// `start` [0x1000, 0x1010), `middle` [0x1020, 0x1030), `open` at 0x1040
    /// with unknown size; given out of order.
    fn table() -> SymbolTable {
        SymbolTable::new(vec![
            symbol(0x1040, 0, "open"),
            symbol(0x1000, 0x10, "start"),
            symbol(0x1020, 0x10, "middle"),
        ])
    }

    #[test]
    fn new_sorts_and_round_trips() {
        let table = table();
        let names: Vec<_> = table.symbols().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["start", "middle", "open"]);
        assert_eq!(SymbolTable::parse(&table.to_bytes()), Ok(table));
        assert_eq!(
            SymbolTable::parse(&SymbolTable::default().to_bytes()),
            Ok(SymbolTable::default())
        );
    }

    #[test]
    fn lookup_inside_and_at_boundaries() {
        let table = table();
        assert_eq!(table.lookup(0x1000), Some(("start", 0)));
        assert_eq!(table.lookup(0x1008), Some(("start", 8)));
        assert_eq!(table.lookup(0x100f), Some(("start", 0xf)));
        assert_eq!(table.lookup(0x1020), Some(("middle", 0)));
        assert_eq!(table.lookup(0x102f), Some(("middle", 0xf)));
    }

    #[test]
    fn lookup_before_first_and_between() {
        let table = table();
        assert_eq!(table.lookup(0), None);
        assert_eq!(table.lookup(0xfff), None);
        assert_eq!(table.lookup(0x1010), None, "one past the end of start");
        assert_eq!(table.lookup(0x101f), None);
        assert_eq!(table.lookup(0x1030), None);
        assert_eq!(SymbolTable::default().lookup(0x1000), None);
    }

    #[test]
    fn lookup_unknown_size_reaches_up_to_the_next_symbol() {
        let table = table();
        assert_eq!(table.lookup(0x1040), Some(("open", 0)));
        assert_eq!(table.lookup(u64::MAX), Some(("open", u64::MAX - 0x1040)));
    }

    #[test]
    fn lookup_at_the_top_of_the_address_space() {
        let table = SymbolTable::new(vec![symbol(u64::MAX - 1, 2, "last")]);
        assert_eq!(table.lookup(u64::MAX), Some(("last", 1)));
    }

    #[test]
    fn parse_rejects_unsorted() {
        let unsorted = vec![symbol(0x2000, 1, "b"), symbol(0x1000, 1, "a")];
        let bytes = postcard::to_allocvec(&unsorted).unwrap();
        assert_eq!(SymbolTable::parse(&bytes), Err(SymbolTableError::Unsorted));
    }

    #[test]
    fn parse_rejects_malformed() {
        let mut bytes = table().to_bytes();
        bytes.push(0);
        assert_eq!(SymbolTable::parse(&bytes), Err(SymbolTableError::Malformed));
        let bytes = table().to_bytes();
        for len in 0..bytes.len() {
            assert_eq!(SymbolTable::parse(&bytes[..len]), Err(SymbolTableError::Malformed));
        }
    }
}
