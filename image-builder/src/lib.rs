//! The image builder: turns the workspace into bootable disk images.
//!
//! 1. [`build`] compiles the kernel and every program the system
//!    description (`system.toml`) lists, for `x86_64-unknown-none`.
//! 2. [`pack`] checks each program and packs them, the description and the
//!    kernel's symbol table into the boot archive (`boot-archive` crate).
//! 3. [`disk`] writes BIOS and UEFI images with the `bootloader` crate.
//! 4. [`qemu`] starts an image in QEMU, with a data disk ([`data_disk`]);
//!    [`bochs`] starts it in Bochs.

pub mod bochs;
pub mod data_disk;
pub mod disk;
pub mod pack;
pub mod qemu;
pub mod system;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{fmt, io};

/// What to build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BuildOptions {
    /// Optimised build.
    pub release: bool,
    /// Cargo features to enable, as `package/feature` (test-only hooks).
    pub features: Vec<String>,
    /// A system description other than the workspace's `system.toml`
    /// (test and benchmark images), relative to the workspace root.
    pub system: Option<String>,
}

/// Everything that can stop an image from being made.
#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io(PathBuf, io::Error),
    /// A build step failed; the message says which.
    Build(String),
    /// An input was refused; the message names the file and the reason.
    Invalid(String),
    /// A host tool is missing; the message names the package to install.
    MissingTool(String),
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Io(path, error) => write!(formatter, "{}: {error}", path.display()),
            Self::Build(message) | Self::Invalid(message) | Self::MissingTool(message) => formatter.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// The disk images of one build.
#[derive(Clone, Debug)]
pub struct Images {
    /// Image for BIOS machines.
    pub bios: PathBuf,
    /// Image for UEFI machines.
    pub uefi: PathBuf,
    /// The kernel ELF with its debug information (for a debugger); the
    /// images carry a copy without it.
    pub kernel: PathBuf,
    /// A directory to copy onto a data disk: `guests/` holds the guest
    /// images built here ([`GUESTS`]), for the VMM to boot.
    pub disk_contents: PathBuf,
}

/// Guest images built with every system (bare-metal programs the VMM
/// boots, not processes of ours).
pub const GUESTS: [&str; 2] = ["test-guest", "multiboot-guest"];
/// The guests that are multiboot kernels: built for x86_64 like everything
/// else, they are copied out as 32-bit ELF files, which is what multiboot
/// loaders take.
const MULTIBOOT_GUESTS: [&str; 1] = ["multiboot-guest"];

/// The workspace root (where `system.toml` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("image-builder sits in the workspace")
        .to_path_buf()
}

/// Where this build's outputs go: one directory per profile and feature
/// set, so test variants do not overwrite each other.
fn output_directory(options: &BuildOptions) -> PathBuf {
    let mut name = String::from(if options.release { "release" } else { "debug" });
    if let Some(system) = &options.system {
        name.push('+');
        name.push_str(&system.replace(['/', '.'], "-"));
    }
    for feature in &options.features {
        name.push('+');
        name.push_str(&feature.replace('/', "-"));
    }
    workspace_root().join("target").join("images").join(name)
}

/// Builds the kernel and programs, packs the archive and writes both disk
/// images.
///
/// # Errors
/// [`Error`] names the step and file that failed.
pub fn build(options: &BuildOptions) -> Result<Images, Error> {
    let root = workspace_root();
    let description_path = root.join(options.system.as_deref().unwrap_or("system.toml"));
    let description = system::load(&description_path)?;
    let programs = system::programs(&description);
    // Unknown programs are reported before anything is built.
    system::check(&description_path, &description, |program| {
        system::program_exists(&root, program).then_some(0)
    })?;
    let mut crates = programs.clone();
    crates.extend(GUESTS.iter().map(|guest| String::from(*guest)));
    let binaries = compile(options, &crates)?;
    let output = output_directory(options);
    std::fs::create_dir_all(&output).map_err(|error| Error::Io(output.clone(), error))?;
    let kernel = output.join("kernel");
    std::fs::copy(binaries.join("kernel"), &kernel).map_err(|error| Error::Io(binaries.join("kernel"), error))?;
    // What the loader reads from disk goes without debug information: under
    // emulation every megabyte the BIOS reads costs about a second.
    let loaded_kernel = output.join("kernel.stripped");
    strip_debug_info(&kernel, &loaded_kernel)?;
    let mut stripped_programs = Vec::new();
    for program in &programs {
        let stripped = output.join(format!("{program}.stripped"));
        strip_debug_info(&binaries.join(program), &stripped)?;
        // The kernel starts the archive entry called "init".
        let name = if *program == description.init {
            String::from("init")
        } else {
            program.clone()
        };
        stripped_programs.push((name, program.clone(), stripped));
    }
    let sizes: Vec<(String, u64)> = stripped_programs
        .iter()
        .map(|(_, program, path)| Ok((program.clone(), pack::loaded_size(path)?)))
        .collect::<Result<_, Error>>()?;
    system::check(&description_path, &description, |program| {
        sizes.iter().find(|(name, _)| name == program).map(|(_, size)| *size)
    })?;
    let packed_description = description
        .to_bytes()
        .map_err(|error| Error::Invalid(format!("{}: cannot pack: {error}", description_path.display())))?;
    let entries: Vec<(String, std::path::PathBuf)> = stripped_programs
        .into_iter()
        .map(|(name, _, path)| (name, path))
        .collect();
    let archive = pack::pack(&kernel, &entries, &packed_description)?;
    let ramdisk = output.join("boot-archive");
    std::fs::write(&ramdisk, archive).map_err(|error| Error::Io(ramdisk.clone(), error))?;
    let disk_contents = output.join("disk-contents");
    let guests = disk_contents.join("guests");
    std::fs::create_dir_all(&guests).map_err(|error| Error::Io(guests.clone(), error))?;
    for guest in GUESTS {
        let format: &[&str] = if MULTIBOOT_GUESTS.contains(&guest) {
            &["--output-target", "elf32-i386"]
        } else {
            &[]
        };
        copy_elf(&binaries.join(guest), &guests.join(guest), format)?;
    }
    let images = Images {
        bios: output.join("bios.img"),
        uefi: output.join("uefi.img"),
        kernel,
        disk_contents,
    };
    disk::write_images(&images, &loaded_kernel, &ramdisk)?;
    Ok(images)
}

/// Copies the ELF file `input` to `output` without its debug information,
/// with `llvm-objcopy` from the toolchain's `llvm-tools-preview` component.
fn strip_debug_info(input: &Path, output: &Path) -> Result<(), Error> {
    copy_elf(input, output, &[])
}

/// Copies the ELF file `input` to `output` without its debug information,
/// passing `llvm-objcopy` the options `extra` too.
fn copy_elf(input: &Path, output: &Path, extra: &[&str]) -> Result<(), Error> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|error| Error::Build(format!("cannot run rustc: {error}")))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let objcopy = Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy");
    if !objcopy.is_file() {
        return Err(Error::MissingTool(format!(
            "{} not found: install it with `rustup component add llvm-tools-preview`",
            objcopy.display()
        )));
    }
    let status = Command::new(&objcopy)
        .arg("--strip-debug")
        .args(extra)
        .arg(input)
        .arg(output)
        .status()
        .map_err(|error| Error::Build(format!("cannot run {}: {error}", objcopy.display())))?;
    if !status.success() {
        return Err(Error::Build(format!("llvm-objcopy failed on {}", input.display())));
    }
    Ok(())
}

/// Runs cargo for the bare-metal target and returns the directory holding
/// the binaries. A target directory of its own keeps this nested cargo from
/// waiting on the one that runs the tests.
fn compile(options: &BuildOptions, programs: &[String]) -> Result<PathBuf, Error> {
    let root = workspace_root();
    let target_directory = root.join("target").join("system");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--target", "x86_64-unknown-none", "--package", "kernel"]);
    for program in programs {
        command.args(["--package", program]);
    }
    if options.release {
        command.arg("--release");
    }
    if !options.features.is_empty() {
        command.args(["--features", &options.features.join(",")]);
    }
    command.arg("--target-dir").arg(&target_directory);
    let status = command
        .status()
        .map_err(|error| Error::Build(format!("cannot run cargo: {error}")))?;
    if !status.success() {
        return Err(Error::Build(String::from(
            "building the kernel and programs failed (see cargo's output above)",
        )));
    }
    let profile = if options.release { "release" } else { "debug" };
    Ok(target_directory.join("x86_64-unknown-none").join(profile))
}
