//! The shell's file commands, through the filesystem server.

use crate::Console;
use alloc::format;
use alloc::string::String;
use fs::{Files, Kind};
use runtime::capability::{AddressSpace, Memory, Slots};
use runtime::ipc::Buffer;
use service::process::slot;

/// The commands this module runs, for the help text.
pub const HELP: &str = "  ls [DIR]   the entries of DIR (default /)
  cat FILE   prints FILE
  write FILE TEXT  puts TEXT and a newline in FILE, replacing what was there
  cp FROM TO copies a file
  mv FROM TO renames a file or directory
  rm PATH    removes a file or an empty directory
  mkdir DIR  makes a directory
  stat PATH  size, kind, links, mode and inode of PATH
  sync       writes everything cached to the disk
  df         space used and free on the disk
";

/// Whether `name` is one of this module's commands.
pub fn is_file_command(name: &str) -> bool {
    matches!(
        name,
        "ls" | "cat" | "write" | "cp" | "mv" | "rm" | "mkdir" | "stat" | "sync" | "df"
    )
}

/// Paths without a leading `/` are taken from the root.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        String::from(path)
    } else {
        format!("/{path}")
    }
}

/// The connection, made on first use.
pub struct Connection {
    files: Option<Files>,
}

impl Connection {
    /// No connection yet.
    pub fn new() -> Self {
        Self { files: None }
    }

    fn files(&mut self, slots: &Slots, buffer: Buffer) -> Result<&Files, String> {
        if self.files.is_none() {
            let files = Files::connect(slots, Memory(slot::MEMORY), AddressSpace(slot::ADDRESS_SPACE), buffer)
                .map_err(|error| format!("{error}"))?;
            self.files = Some(files);
        }
        self.files.as_ref().ok_or_else(String::new)
    }

    /// Runs file command `name` with arguments `rest`.
    pub fn run(&mut self, name: &str, rest: &str, console: &Console, slots: &Slots) {
        let files = match self.files(slots, console.buffer) {
            Ok(files) => files,
            Err(error) => return console.write(&format!("{name}: {error}\n")),
        };
        let arguments: alloc::vec::Vec<&str> = rest.split_whitespace().collect();
        let result = match (name, arguments.as_slice()) {
            ("ls", []) => list(files, "/", console),
            ("ls", [directory]) => list(files, &absolute(directory), console),
            ("cat", [file]) => files.read_file(&absolute(file)).map(|data| {
                console.write(&String::from_utf8_lossy(&data));
            }),
            ("write", [file, ..]) => {
                let text = rest.trim_start().split_once(' ').map_or("", |(_, text)| text);
                files.write_file(&absolute(file), format!("{text}\n").as_bytes())
            }
            ("cp", [from, to]) => files
                .read_file(&absolute(from))
                .and_then(|data| files.write_file(&absolute(to), &data)),
            ("mv", [from, to]) => files.rename(&absolute(from), &absolute(to)),
            ("rm", [path]) => files.remove(&absolute(path)),
            ("mkdir", [directory]) => files.make_directory(&absolute(directory)),
            ("stat", [path]) => files.stat(&absolute(path)).map(|metadata| {
                let kind = match metadata.kind {
                    Kind::File => "file",
                    Kind::Directory => "directory",
                    Kind::Other => "other",
                };
                console.write(&format!(
                    "{}: {kind}, {} bytes, {} links, mode {:o}, inode {}, {} bytes on disk\n",
                    absolute(path),
                    metadata.size,
                    metadata.links,
                    metadata.mode,
                    metadata.inode,
                    metadata.allocated
                ));
            }),
            ("sync", []) => files.sync(),
            ("df", []) => files.usage().map(|usage| {
                let kib = |blocks: u64| blocks * u64::from(usage.block_size) / 1024;
                console.write(&format!(
                    "SIZE        USED        FREE        INODES FREE\n{:<11} {:<11} {:<11} {}/{}\n",
                    format!("{} KiB", kib(usage.blocks)),
                    format!("{} KiB", kib(usage.blocks - usage.free_blocks.min(usage.blocks))),
                    format!("{} KiB", kib(usage.free_blocks)),
                    usage.free_inodes,
                    usage.inodes
                ));
            }),
            _ => return console.write(&format!("{name}: wrong arguments (try 'help')\n")),
        };
        if let Err(error) = result {
            console.write(&format!("{name}: {error}\n"));
        }
    }
}

fn list(files: &Files, directory: &str, console: &Console) -> Result<(), fs::FilesError> {
    let mut entries = files.list(directory)?;
    entries.sort_by(|first, second| first.name.cmp(&second.name));
    let mut text = String::new();
    for entry in entries {
        text.push_str(&entry.name);
        if entry.kind == Kind::Directory {
            text.push('/');
        }
        text.push('\n');
    }
    console.write(&text);
    Ok(())
}
