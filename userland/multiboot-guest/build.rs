//! Links the multiboot guest at a fixed address with its own script (the
//! multiboot header first, at 1 MiB), not as the target's default static
//! PIE: a multiboot loader applies no relocations.

fn main() {
    let directory = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-T{directory}/link.ld");
}
