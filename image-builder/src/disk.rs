//! BIOS and UEFI disk images, made by the `bootloader` crate.

use crate::{Error, Images};
use bootloader::{BiosBoot, BootConfig, UefiBoot};
use std::path::Path;

/// Writes both images, booting `kernel` with `ramdisk` as boot archive.
///
/// # Errors
/// [`Error::Build`] with the bootloader's reason.
pub fn write_images(images: &Images, kernel: &Path, ramdisk: &Path) -> Result<(), Error> {
    // The kernel logs on serial itself; the loader's own log would only slow
    // the boot (drawing text on the frame buffer is slow under emulation).
    let mut config = BootConfig::default();
    config.frame_buffer_logging = false;
    config.serial_logging = false;
    BiosBoot::new(kernel)
        .set_ramdisk(ramdisk)
        .set_boot_config(&config)
        .create_disk_image(&images.bios)
        .map_err(|error| Error::Build(format!("writing {}: {error:#}", images.bios.display())))?;
    UefiBoot::new(kernel)
        .set_ramdisk(ramdisk)
        .set_boot_config(&config)
        .create_disk_image(&images.uefi)
        .map_err(|error| Error::Build(format!("writing {}: {error:#}", images.uefi.display())))?;
    Ok(())
}
