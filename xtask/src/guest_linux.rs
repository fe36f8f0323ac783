//! `cargo xtask guest-linux`: the files of an unmodified Linux guest.
//!
//! Takes Debian's `linux-image-amd64` kernel and `busybox-static` with
//! `apt-get download` (nothing is installed on the host) and writes
//! `target/guest-linux/vmlinuz`, the kernel's bzImage, and
//! `target/guest-linux/initramfs.cpio`, an uncompressed newc archive with
//! busybox, the virtio modules the kernel does not have built in and an
//! `/init` that mounts proc, sys and devtmpfs, loads the modules, prints
//! [`READY`] and starts a shell on the console. Downloaded packages stay in
//! `target/guest-linux/debs/` and their unpacked trees in
//! `target/guest-linux/packages/`; delete those to fetch current ones.

use crate::cpio::Archive;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// The line `/init` prints once the modules are loaded, before the shell.
pub const READY: &str = "guest-init: ready";
/// The kernel's package: a metapackage that depends on the current one.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The modules the guest loads (with what they depend on) unless the kernel
/// has them built in: the virtio transports and the disk and console.
const MODULES: &[&str] = &["virtio_pci", "virtio_mmio", "virtio_blk", "virtio_console"];

/// Downloads what is missing, then writes the kernel and the initramfs.
pub fn run() -> Result<(), String> {
    let started = Instant::now();
    let output = image_builder::data_disk::linux_guest_directory();
    let debs = output.join("debs");
    create_directory(&debs)?;

    let busybox_deb = download(&debs, BUSYBOX_PACKAGE, None)?;
    let metapackage = download(&debs, KERNEL_METAPACKAGE, None)?;
    let (kernel_package, kernel_version) = kernel_dependency(&metapackage)?;
    let kernel_deb = download(&debs, &kernel_package, kernel_version.as_deref())?;
    let busybox_tree = unpack(&output, &busybox_deb)?;
    let kernel_tree = unpack(&output, &kernel_deb)?;

    let release = kernel_release(&kernel_tree)?;
    let boot = kernel_tree.join("boot");
    check_config(&boot.join(format!("config-{release}")))?;
    let vmlinuz = output.join("vmlinuz");
    copy(&boot.join(format!("vmlinuz-{release}")), &vmlinuz)?;

    let modules_directory = kernel_tree.join("lib/modules").join(&release);
    let modules = modules_in_load_order(&modules_directory)?;
    let busybox = read(&busybox_tree.join("bin/busybox"))?;
    let initramfs_bytes = initramfs(&release, &busybox, &modules)?;
    let initramfs = output.join("initramfs.cpio");
    std::fs::write(&initramfs, &initramfs_bytes).map_err(|error| format!("{}: {error}", initramfs.display()))?;

    let names: Vec<&str> = modules.iter().map(|module| module.name.as_str()).collect();
    let vmlinuz_size = std::fs::metadata(&vmlinuz).map_or(0, |metadata| metadata.len());
    println!("kernel {release} ({kernel_package})");
    if names.is_empty() {
        println!("modules: none needed, the kernel has them built in");
    } else {
        println!("modules: {}", names.join(" "));
    }
    println!("{}: {} KiB", vmlinuz.display(), vmlinuz_size / 1024);
    println!("{}: {} KiB", initramfs.display(), initramfs_bytes.len() / 1024);
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a host command and returns its output; a failure names the command
/// and shows what it printed, a missing one the Debian `package` it is in.
fn command_output(command: &mut Command, package: &str) -> Result<Output, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            format!("{program} not found: install it with `sudo apt-get install {package}` (a Debian host is needed)")
        } else {
            format!("cannot run {program}: {error}")
        }
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{program} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}

/// The newest `.deb` of `package` (at `version`, if given) in `debs`,
/// downloaded first if there is none.
fn download(debs: &Path, package: &str, version: Option<&str>) -> Result<PathBuf, String> {
    // apt writes an epoch's colon as %3a in file names.
    let prefix = match version {
        Some(version) => format!("{package}_{}_", version.replace(':', "%3a")),
        None => format!("{package}_"),
    };
    if let Some(cached) = cached_deb(debs, &prefix)? {
        return Ok(cached);
    }
    let request = match version {
        Some(version) => format!("{package}={version}"),
        None => package.to_string(),
    };
    eprintln!("downloading {request}");
    // apt-get writes into a directory of its own, and the file moves to
    // `debs` once complete, so an interrupted download is never mistaken
    // for a cached one.
    let downloading = debs.join("downloading");
    if downloading.exists() {
        std::fs::remove_dir_all(&downloading).map_err(|error| format!("{}: {error}", downloading.display()))?;
    }
    create_directory(&downloading)?;
    // As root, apt would hand the download to its `_apt` user, who cannot
    // write under target/, and warn; as any other user it changes nothing.
    let result = command_output(
        Command::new("apt-get")
            .args(["download", "--quiet", "-o", "APT::Sandbox::User=root"])
            .arg(&request)
            .current_dir(&downloading),
        "apt",
    );
    if let Err(message) = result {
        return Err(format!(
            "{message}\n`apt-get download {request}` failed in {}. If apt cannot locate the package or a \
             download is not found, the package lists are missing or stale: run `sudo apt-get update` \
             (as root: `apt-get update`) and try again.",
            downloading.display()
        ));
    }
    let downloaded = cached_deb(&downloading, &prefix)?.ok_or_else(|| {
        format!(
            "`apt-get download {request}` succeeded but left no {prefix}*.deb in {}",
            downloading.display()
        )
    })?;
    let file_name = downloaded
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", downloaded.display()))?;
    let deb = debs.join(file_name);
    std::fs::rename(&downloaded, &deb)
        .map_err(|error| format!("moving {} to {}: {error}", downloaded.display(), deb.display()))?;
    std::fs::remove_dir(&downloading).map_err(|error| format!("{}: {error}", downloading.display()))?;
    Ok(deb)
}

/// The most recently downloaded `.deb` in `debs` whose name starts with
/// `prefix`.
fn cached_deb(debs: &Path, prefix: &str) -> Result<Option<PathBuf>, String> {
    let entries = std::fs::read_dir(debs).map_err(|error| format!("{}: {error}", debs.display()))?;
    let mut newest = None;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", debs.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(prefix) && name.ends_with(".deb")) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .map_err(|error| format!("{}: {error}", entry.path().display()))?;
        if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
            newest = Some((modified, entry.path()));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// The kernel package the metapackage depends on, and its version if the
/// dependency names one exactly.
fn kernel_dependency(metapackage: &Path) -> Result<(String, Option<String>), String> {
    let output = command_output(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(metapackage)
            .arg("Depends"),
        "dpkg",
    )?;
    let depends = String::from_utf8_lossy(&output.stdout).into_owned();
    parse_kernel_dependency(&depends)
        .ok_or_else(|| format!("{}: no linux-image-* in its Depends: {depends}", metapackage.display()))
}

/// Reads `linux-image-6.1.0-57-amd64 (= 6.1.192-3), ...`.
fn parse_kernel_dependency(depends: &str) -> Option<(String, Option<String>)> {
    let first = depends
        .split([',', '|'])
        .map(str::trim)
        .find(|item| item.starts_with("linux-image-"))?;
    let (name, relation) = first.split_once('(').unwrap_or((first, ""));
    let version = relation
        .trim_end_matches(')')
        .trim()
        .strip_prefix('=')
        .map(|version| version.trim().to_string());
    Some((name.trim().to_string(), version))
}

/// The tree of `deb` unpacked with `dpkg-deb -x` under `packages/`, named
/// after the file; unpacked once, then reused.
fn unpack(output: &Path, deb: &Path) -> Result<PathBuf, String> {
    let stem = deb
        .file_stem()
        .ok_or_else(|| format!("{}: not a file name", deb.display()))?;
    let tree = output.join("packages").join(stem);
    if tree.is_dir() {
        return Ok(tree);
    }
    // Unpack beside it and rename, so an interrupted run leaves no tree
    // that looks complete.
    let mut partial_name = stem.to_os_string();
    partial_name.push(".partial");
    let partial = output.join("packages").join(partial_name);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|error| format!("{}: {error}", partial.display()))?;
    }
    create_directory(&partial)?;
    eprintln!("unpacking {}", deb.display());
    command_output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial), "dpkg")?;
    std::fs::rename(&partial, &tree).map_err(|error| format!("{}: {error}", tree.display()))?;
    Ok(tree)
}

/// The release the kernel package holds (`6.1.0-57-amd64`), from its one
/// `boot/vmlinuz-*`.
fn kernel_release(tree: &Path) -> Result<String, String> {
    let boot = tree.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(|error| format!("{}: {error}", boot.display()))?;
    let mut releases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", boot.display()))?;
        if let Some(release) = entry.file_name().to_string_lossy().strip_prefix("vmlinuz-") {
            releases.push(release.to_string());
        }
    }
    match releases.as_slice() {
        [release] => Ok(release.clone()),
        [] => Err(format!("{}: no vmlinuz-* in it", boot.display())),
        _ => Err(format!(
            "{}: more than one vmlinuz-*: {}",
            boot.display(),
            releases.join(", ")
        )),
    }
}

/// Refuses a kernel that cannot take an initramfs or has no devtmpfs.
fn check_config(path: &Path) -> Result<(), String> {
    let config = String::from_utf8_lossy(&read(path)?).into_owned();
    for option in ["CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS"] {
        if !config.lines().any(|line| line == format!("{option}=y")) {
            return Err(format!("{}: the guest needs {option}=y", path.display()));
        }
    }
    Ok(())
}

/// A kernel module to put in the initramfs.
struct Module {
    /// As the kernel knows it: `virtio_blk`.
    name: String,
    /// Its path under `lib/modules/RELEASE/`, without a compression suffix.
    path: String,
    /// Uncompressed.
    contents: Vec<u8>,
}

/// The modules of [`MODULES`] that are not built in, with those they
/// depend on, each after its dependencies.
fn modules_in_load_order(directory: &Path) -> Result<Vec<Module>, String> {
    let builtin_list = directory.join("modules.builtin");
    let builtin: Vec<String> = String::from_utf8_lossy(&read(&builtin_list)?)
        .lines()
        .filter_map(|line| Path::new(line).file_name())
        .map(|file| module_name(&file.to_string_lossy()))
        .collect();
    // The package ships no modules.dep (depmod writes it on installation),
    // so dependencies come from each module's own `.modinfo`.
    let mut files = BTreeMap::new();
    index_modules(directory, &mut files)?;
    let mut ordered = Vec::new();
    for name in MODULES {
        add_module(name, directory, &files, &builtin, &mut ordered, &mut Vec::new())?;
    }
    Ok(ordered)
}

/// Adds `name` after its dependencies, unless built in or already added.
/// `chain` holds the modules whose dependencies are being added, to stop
/// at a cycle.
fn add_module(
    name: &str,
    directory: &Path,
    files: &BTreeMap<String, PathBuf>,
    builtin: &[String],
    ordered: &mut Vec<Module>,
    chain: &mut Vec<String>,
) -> Result<(), String> {
    if builtin.iter().any(|module| module == name) || ordered.iter().any(|module| module.name == name) {
        return Ok(());
    }
    if chain.iter().any(|module| module == name) {
        return Err(format!(
            "modules depend on each other in a cycle: {} {name}",
            chain.join(" ")
        ));
    }
    let file = files.get(name).ok_or_else(|| {
        format!(
            "module {name} is neither built in (modules.builtin) nor under {}",
            directory.display()
        )
    })?;
    let contents = uncompressed(file)?;
    let depends = modinfo(&contents, "depends").ok_or_else(|| format!("{}: no .modinfo section", file.display()))?;
    chain.push(name.to_string());
    for dependency in depends.split(',').filter(|dependency| !dependency.is_empty()) {
        add_module(dependency, directory, files, builtin, ordered, chain)?;
    }
    chain.pop();
    let relative = file
        .strip_prefix(directory)
        .map_err(|_| format!("{}: not under {}", file.display(), directory.display()))?
        .to_string_lossy()
        .into_owned();
    let path = ["xz", "zst", "gz"]
        .iter()
        .find_map(|suffix| relative.strip_suffix(&format!(".{suffix}")))
        .unwrap_or(&relative)
        .to_string();
    ordered.push(Module {
        name: name.to_string(),
        path,
        contents,
    });
    Ok(())
}

/// Records every module file under `directory` by module name.
fn index_modules(directory: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(directory).map_err(|error| format!("{}: {error}", directory.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", directory.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if kind.is_dir() {
            index_modules(&path, files)?;
        } else if let Some(file) = path.file_name().map(|file| file.to_string_lossy().into_owned())
            && [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .any(|suffix| file.ends_with(suffix))
        {
            files.insert(module_name(&file), path);
        }
    }
    Ok(())
}

/// `virtio-rng.ko.xz` is known to the kernel as `virtio_rng`.
fn module_name(file: &str) -> String {
    let stem = file.split_once(".ko").map_or(file, |(stem, _)| stem);
    stem.replace('-', "_")
}

/// The module's bytes, decompressed with the host's xz, zstd or gzip if
/// the package compressed it (busybox's insmod takes only plain modules).
fn uncompressed(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let (tool, package) = if name.ends_with(".xz") {
        ("xz", "xz-utils")
    } else if name.ends_with(".zst") {
        ("zstd", "zstd")
    } else if name.ends_with(".gz") {
        ("gzip", "gzip")
    } else {
        return read(path);
    };
    let output = command_output(Command::new(tool).args(["--decompress", "--stdout"]).arg(path), package)?;
    Ok(output.stdout)
}

/// The value of `key` in the `.modinfo` section of an ELF64 module
/// (`depends` is present, possibly empty, in every module).
fn modinfo(module: &[u8], key: &str) -> Option<String> {
    let section = elf_section(module, ".modinfo")?;
    let prefix = format!("{key}=");
    section
        .split(|&byte| byte == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// The contents of the section called `wanted` in a little-endian ELF64
/// file, or `None` if it has none or is malformed.
fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    let bytes = |at: usize, length: usize| elf.get(at..at.checked_add(length)?);
    let u16_at = |at| Some(u16::from_le_bytes(bytes(at, 2)?.try_into().ok()?));
    let u32_at = |at| Some(u32::from_le_bytes(bytes(at, 4)?.try_into().ok()?));
    let u64_at = |at| usize::try_from(u64::from_le_bytes(bytes(at, 8)?.try_into().ok()?)).ok();
    // Magic, 64-bit, little-endian.
    if bytes(0, 6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let table = u64_at(0x28)?;
    let entry_size = usize::from(u16_at(0x3a)?);
    let count = usize::from(u16_at(0x3c)?);
    let names_index = usize::from(u16_at(0x3e)?);
    let header = |index: usize| table.checked_add(index.checked_mul(entry_size)?);
    // A section header: name offset at 0, file offset at 0x18, size at 0x20.
    let contents = |at: usize| bytes(u64_at(at.checked_add(0x18)?)?, u64_at(at.checked_add(0x20)?)?);
    let names = contents(header(names_index)?)?;
    (0..count).find_map(|index| {
        let at = header(index)?;
        let name_start = usize::try_from(u32_at(at)?).ok()?;
        let name = names.get(name_start..)?.split(|&byte| byte == 0).next()?;
        if name == wanted.as_bytes() { contents(at) } else { None }
    })
}

/// The `/init` script. Debian's kernel does not mount devtmpfs by itself
/// (`DEVTMPFS_MOUNT` is off); `cttyhack` gives the shell the console as its
/// controlling terminal, so job control and Ctrl-C work.
fn init_script(release: &str, modules: &[Module]) -> String {
    let mut script = String::from(
        "#!/bin/sh\n\
         # Written by `cargo xtask guest-linux`.\n\
         /bin/busybox --install -s\n\
         export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mkdir -p /dev/pts\n\
         mount -t devpts devpts /dev/pts\n",
    );
    for module in modules {
        script += &format!(
            "insmod /lib/modules/{release}/{} || echo 'guest-init: cannot load {}'\n",
            module.path, module.name
        );
    }
    script += &format!(
        "echo \"guest-init: Linux $(uname -r), modules: $(cut -d ' ' -f 1 /proc/modules | tr '\\n' ' ')\"\n\
         echo '{READY}'\n\
         while true; do\n\
         \x20   setsid cttyhack sh\n\
         \x20   echo 'guest-init: the shell exited; starting another'\n\
         done\n"
    );
    script
}

/// The initramfs: busybox, `/init`, the modules and a console node (the
/// kernel opens `/dev/console` for init before anything is mounted).
fn initramfs(release: &str, busybox: &[u8], modules: &[Module]) -> Result<Vec<u8>, String> {
    let mut archive = Archive::default();
    for directory in [
        "dev", "proc", "sys", "tmp", "root", "bin", "sbin", "usr/bin", "usr/sbin", "etc",
    ] {
        archive.directory(directory, 0o755);
    }
    archive.character_device("dev/console", 0o600, 5, 1);
    archive.file("bin/busybox", 0o755, busybox)?;
    archive.symlink("bin/sh", "busybox");
    archive.file("init", 0o755, init_script(release, modules).as_bytes())?;
    for module in modules {
        archive.file(
            &format!("lib/modules/{release}/{}", module.path),
            0o644,
            &module.contents,
        )?;
    }
    Ok(archive.finish())
}

fn create_directory(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|error| format!("{}: {error}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|error| format!("copying {} to {}: {error}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_dependency_is_read_with_its_version() {
        assert_eq!(
            parse_kernel_dependency("linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n"),
            Some((
                String::from("linux-image-6.1.0-57-amd64"),
                Some(String::from("6.1.192-3"))
            ))
        );
        assert_eq!(
            parse_kernel_dependency("firmware-x | linux-image-6.12.1-amd64 (>= 6.12), other"),
            Some((String::from("linux-image-6.12.1-amd64"), None))
        );
        assert_eq!(parse_kernel_dependency("busybox"), None);
    }

    #[test]
    fn module_names_use_underscores_and_drop_suffixes() {
        assert_eq!(module_name("virtio-rng.ko"), "virtio_rng");
        assert_eq!(module_name("virtio_blk.ko.xz"), "virtio_blk");
    }

    /// A minimal ELF64 relocatable file with a `.modinfo` section.
    fn module_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let modinfo_at = elf.len();
        elf.extend_from_slice(modinfo);
        let table = elf.len();
        elf[0x28..0x30].copy_from_slice(&(table as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        for (name, at, size) in [
            (0u32, 0, 0),
            (1, names_at, names.len()),
            (11, modinfo_at, modinfo.len()),
        ] {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(at as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf
    }

    #[test]
    fn modinfo_is_read_from_its_section() {
        let module = module_with_modinfo(b"license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0");
        assert_eq!(modinfo(&module, "depends").as_deref(), Some("virtio,virtio_ring"));
        assert_eq!(modinfo(&module, "name").as_deref(), Some("virtio_blk"));
        assert_eq!(modinfo(&module, "alias"), None);
    }

    #[test]
    fn a_truncated_module_has_no_modinfo() {
        let module = module_with_modinfo(b"depends=\0");
        assert_eq!(modinfo(&module, "depends").as_deref(), Some(""));
        // Cut inside the last section header's offset field.
        assert_eq!(modinfo(&module[..module.len() - 44], "depends"), None);
        // A section that runs past the end of the file.
        let mut overlong = module.clone();
        let size_field = overlong.len() - 64 + 0x20;
        overlong[size_field..size_field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(modinfo(&overlong, "depends"), None);
        assert_eq!(modinfo(b"not an ELF file", "depends"), None);
    }

    #[test]
    fn init_loads_modules_in_order_and_then_says_it_is_ready() {
        let module = |name: &str| Module {
            name: name.to_string(),
            path: format!("kernel/{name}.ko"),
            contents: Vec::new(),
        };
        let script = init_script("6.1", &[module("virtio_ring"), module("virtio")]);
        let ring = script
            .find("insmod /lib/modules/6.1/kernel/virtio_ring.ko")
            .expect("virtio_ring");
        let virtio = script.find("insmod /lib/modules/6.1/kernel/virtio.ko").expect("virtio");
        let devtmpfs = script.find("mount -t devtmpfs").expect("devtmpfs");
        let ready = script.find(READY).expect("ready");
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(devtmpfs < ring && ring < virtio && virtio < ready);
        assert!(script[ready..].contains("setsid cttyhack sh"));
    }
}
