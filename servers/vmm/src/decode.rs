//! Emulating the instruction behind an MMIO exit. AMD's SVM under QEMU
//! gives neither the instruction bytes nor its length, so the VMM walks the
//! guest's page tables to fetch it and decodes it with `iced-x86`.
//!
//! The moves compilers emit for device registers are handled: `MOV` to or
//! from memory (register or immediate), and `MOVZX`/`MOVSX` loads. Anything
//! else stops the guest with the instruction named.

use crate::clock;
use vmm::devices::{Devices, Effect};
use abi::vcpu::{Registers, VcpuState};
use alloc::format;
use alloc::string::String;
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use runtime::memory::Region;

/// CR0.PG.
const PAGING: u64 = 1 << 31;
/// CR4.PAE.
const PAE: u64 = 1 << 5;
/// EFER.LMA.
const LONG_MODE_ACTIVE: u64 = 1 << 10;

/// The guest-physical address of `linear` under the guest's paging, or
/// `None` if it is not mapped (or its tables are outside RAM).
pub fn translate(state: &VcpuState, ram: &Region, linear: u64) -> Option<u64> {
    let control = &state.control;
    if control.cr0 & PAGING == 0 {
        return Some(linear & 0xffff_ffff);
    }
    let entry = |table: u64, index: u64, wide: bool| -> Option<u64> {
        if wide {
            ram.load::<u64>(usize::try_from(table + index * 8).ok()?).ok()
        } else {
            ram.load::<u32>(usize::try_from(table + index * 4).ok()?)
                .ok()
                .map(u64::from)
        }
    };
    if control.efer & LONG_MODE_ACTIVE != 0 || control.cr4 & PAE != 0 {
        let long = control.efer & LONG_MODE_ACTIVE != 0;
        let (mut table, levels) = if long {
            (control.cr3 & 0x000f_ffff_ffff_f000, 4)
        } else {
            (control.cr3 & 0xffff_ffe0, 3)
        };
        for level in (1..=levels).rev() {
            let shift = 12 + 9 * (level - 1);
            let index = if !long && level == 3 {
                (linear >> 30) & 3
            } else {
                (linear >> shift) & 0x1ff
            };
            let value = entry(table, index, true)?;
            if value & 1 == 0 {
                return None;
            }
            let address = value & 0x000f_ffff_ffff_f000;
            let large = (level == 2 || (long && level == 3)) && value & (1 << 7) != 0;
            if level == 1 || large {
                let size = 1u64 << shift;
                return Some((address & !(size - 1)) | (linear & (size - 1)));
            }
            table = address;
        }
        return None;
    }
    // 32-bit paging, 4 MiB pages if PSE.
    let directory = entry(control.cr3 & 0xffff_f000, (linear >> 22) & 0x3ff, false)?;
    if directory & 1 == 0 {
        return None;
    }
    if directory & (1 << 7) != 0 {
        return Some((directory & 0xffc0_0000) | (linear & 0x3f_ffff));
    }
    let page = entry(directory & 0xffff_f000, (linear >> 12) & 0x3ff, false)?;
    (page & 1 != 0).then_some((page & 0xffff_f000) | (linear & 0xfff))
}

/// Fetches and decodes the instruction at the guest's `rip`.
///
/// # Errors
/// Says why it could not be fetched or decoded.
pub fn fetch(state: &VcpuState, ram: &Region) -> Result<Instruction, String> {
    let segments = &state.segments;
    let bitness =
        if state.control.efer & LONG_MODE_ACTIVE != 0 && segments.cs.attributes & abi::vcpu::attribute::LONG != 0 {
            64
        } else if segments.cs.attributes & abi::vcpu::attribute::DEFAULT_BIG != 0 {
            32
        } else {
            16
        };
    let linear = segments.cs.base.wrapping_add(state.registers.rip);
    let mut bytes = [0u8; 15];
    for (offset, byte) in bytes.iter_mut().enumerate() {
        let Some(physical) = translate(state, ram, linear + offset as u64) else {
            // An instruction may end before an unmapped page; stop there.
            if offset == 0 {
                return Err(format!("the instruction at {linear:#x} is not in the guest's RAM"));
            }
            break;
        };
        let Ok(value) = ram.load::<u8>(physical as usize) else {
            if offset == 0 {
                return Err(format!("the instruction at {linear:#x} is not in the guest's RAM"));
            }
            break;
        };
        *byte = value;
    }
    let mut decoder = Decoder::with_ip(bitness, &bytes, state.registers.rip, DecoderOptions::NONE);
    let instruction = decoder.decode();
    if instruction.is_invalid() {
        return Err(format!("an undecodable instruction at {linear:#x}"));
    }
    Ok(instruction)
}

/// Emulates the MMIO access of the instruction at `rip` to `address`, and
/// steps past it; returns what a write did besides.
///
/// # Errors
/// An instruction it cannot emulate, or an address no device answers.
pub fn emulate(state: &mut VcpuState, ram: &Region, devices: &mut Devices, address: u64) -> Result<Effect, String> {
    let instruction = fetch(state, ram)?;
    let size = instruction.memory_size().size() as u8;
    let rip = state.registers.rip;
    let unknown = || format!("{:?} at {rip:#x} cannot be emulated on MMIO", instruction.mnemonic());
    let no_device = || format!("no device at guest-physical {address:#x}");
    let now = clock::now();
    let mut effect = Effect::None;
    match (instruction.mnemonic(), instruction.op0_kind(), instruction.op1_kind()) {
        (Mnemonic::Mov, OpKind::Memory, source) => {
            let value = match source {
                OpKind::Register => read_register(&state.registers, instruction.op1_register()).ok_or_else(unknown)?,
                OpKind::Immediate8
                | OpKind::Immediate16
                | OpKind::Immediate32
                | OpKind::Immediate8to64
                | OpKind::Immediate32to64 => instruction.immediate(1),
                _ => return Err(unknown()),
            };
            effect = devices
                .mmio_write(address, truncate(value, size), now)
                .ok_or_else(no_device)?;
        }
        (Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx, OpKind::Register, OpKind::Memory) => {
            let value = devices.mmio_read(address, size, now).ok_or_else(no_device)?;
            let value = if instruction.mnemonic() == Mnemonic::Movsx {
                sign_extend(value, size)
            } else {
                truncate(value, size)
            };
            write_register(&mut state.registers, instruction.op0_register(), value).ok_or_else(unknown)?;
        }
        _ => return Err(unknown()),
    }
    state.registers.rip = state.registers.rip.wrapping_add(instruction.len() as u64);
    state.interrupt_shadow = 0;
    Ok(effect)
}

fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

fn sign_extend(value: u64, size: u8) -> u64 {
    match size {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// The 64-bit register `register` is part of, in `registers`.
fn slot(registers: &mut Registers, register: Register) -> Option<&mut u64> {
    Some(match register.full_register() {
        Register::RAX => &mut registers.rax,
        Register::RBX => &mut registers.rbx,
        Register::RCX => &mut registers.rcx,
        Register::RDX => &mut registers.rdx,
        Register::RSI => &mut registers.rsi,
        Register::RDI => &mut registers.rdi,
        Register::RBP => &mut registers.rbp,
        Register::RSP => &mut registers.rsp,
        Register::R8 => &mut registers.r8,
        Register::R9 => &mut registers.r9,
        Register::R10 => &mut registers.r10,
        Register::R11 => &mut registers.r11,
        Register::R12 => &mut registers.r12,
        Register::R13 => &mut registers.r13,
        Register::R14 => &mut registers.r14,
        Register::R15 => &mut registers.r15,
        _ => return None,
    })
}

/// Whether `register` is AH, BH, CH or DH (bits 8..16 of its register).
fn is_high_byte(register: Register) -> bool {
    matches!(register, Register::AH | Register::BH | Register::CH | Register::DH)
}

fn read_register(registers: &Registers, register: Register) -> Option<u64> {
    let mut copy = *registers;
    let value = *slot(&mut copy, register)?;
    Some(if is_high_byte(register) {
        (value >> 8) & 0xff
    } else {
        truncate(value, register.size() as u8)
    })
}

/// Writes `value` to `register` as the CPU would: a 32-bit write clears
/// the upper half, 8- and 16-bit writes keep the rest.
fn write_register(registers: &mut Registers, register: Register, value: u64) -> Option<()> {
    let high = is_high_byte(register);
    let size = register.size();
    let full = slot(registers, register)?;
    *full = match (size, high) {
        (1, true) => (*full & !0xff00) | ((value & 0xff) << 8),
        (1, false) => (*full & !0xff) | (value & 0xff),
        (2, _) => (*full & !0xffff) | (value & 0xffff),
        (4, _) => value & 0xffff_ffff,
        _ => value,
    };
    Some(())
}
