//! Paths: absolute, `/`-separated, resolved lexically into components.

use alloc::vec::Vec;

use crate::Error;

/// The longest name a directory entry can hold, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Splits an absolute path into its names, from the root down.
///
/// Repeated slashes and `.` are skipped; `..` drops the previous name, and
/// may not go above the root. The root itself is the empty list.
pub(crate) fn parse(path: &str) -> Result<Vec<&str>, Error> {
    let relative = path.strip_prefix('/').ok_or(Error::InvalidPath)?;
    let mut components = Vec::new();
    for name in relative.split('/') {
        match name {
            "" | "." => {}
            ".." => {
                components.pop().ok_or(Error::EscapesRoot)?;
            }
            name if name.len() > MAX_NAME_LEN => return Err(Error::NameTooLong),
            name if name.contains('\0') => return Err(Error::InvalidPath),
            name => components.push(name),
        }
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(parse("/"), Ok(vec![]));
        assert_eq!(parse("//a///b/"), Ok(vec!["a", "b"]));
        assert_eq!(parse("/a/./b/../c"), Ok(vec!["a", "c"]));
        assert_eq!(parse("/a/.."), Ok(vec![]));
    }

    #[test]
    fn refuses_bad_paths() {
        assert_eq!(parse(""), Err(Error::InvalidPath));
        assert_eq!(parse("a/b"), Err(Error::InvalidPath));
        assert_eq!(parse("/a\0b"), Err(Error::InvalidPath));
        assert_eq!(parse("/.."), Err(Error::EscapesRoot));
        assert_eq!(parse("/a/../.."), Err(Error::EscapesRoot));
        let long = format!("/{}", "x".repeat(256));
        assert_eq!(parse(&long), Err(Error::NameTooLong));
        let longest = format!("/{}", "x".repeat(255));
        assert!(parse(&longest).is_ok());
    }
}
