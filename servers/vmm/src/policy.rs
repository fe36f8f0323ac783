//! What the guest's CPU claims to be (CPUID) and which model-specific
//! registers it may use.
//!
//! CPUID passes the host's answers through, minus what the VMM does not
//! offer: virtualisation (VMX, SVM), MONITOR/MWAIT, XSAVE and AVX (the
//! kernel switches only the x87/SSE state), x2APIC and performance
//! counters, and the machine-check architecture (MCE, MCA: its MSRs are
//! not emulated, and Linux panics when they fault); it adds the hypervisor
//! bit, the APIC with its TSC-deadline timer (emulated, see
//! `vmm::devices::lapic`) and a signature leaf. MSRs the VMM does not know
//! raise #GP in the guest.

use abi::vcpu::{Event, VcpuState, group};
use vm_platform::CPUID_SIGNATURE;
use vmm::devices::lapic::Lapic;

/// The answer to CPUID `leaf`/`subleaf`: eax, ebx, ecx, edx.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    if leaf & 0xf000_0000 == 0x4000_0000 {
        return match leaf {
            0x4000_0000 => {
                let word = |index: usize| {
                    let mut bytes = [0u8; 4];
                    bytes.copy_from_slice(&CPUID_SIGNATURE[index * 4..index * 4 + 4]);
                    u32::from_le_bytes(bytes)
                };
                [0x4000_0000, word(0), word(1), word(2)]
            }
            _ => [0; 4],
        };
    }
    let host = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    let [eax, mut ebx, mut ecx, mut edx] = [host.eax, host.ebx, host.ecx, host.edx];
    match leaf {
        1 => {
            // VMX, MONITOR, x2APIC, XSAVE, OSXSAVE, AVX off; the TSC
            // deadline timer and hypervisor on.
            ecx &= !((1 << 5) | (1 << 3) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28));
            ecx |= (1 << 24) | (1 << 31);
            edx |= 1 << 9; // the APIC
            edx &= !((1 << 7) | (1 << 14)); // no MCE, no MCA
            // One logical processor; APIC ID 0.
            ebx &= 0x0000_ffff;
            ebx |= 1 << 16;
            edx &= !(1 << 28); // no hyper-threading
        }
        5 | 0xa | 0xd => return [0; 4],
        7 if subleaf == 0 => {
            // AVX2, AVX-512 and friends need XSAVE state the guest lacks.
            ebx &= !((1 << 5) | (0xffff << 16));
            ecx &= !(1 << 1);
            edx = 0;
        }
        0x8000_0001 => {
            // SVM, extended APIC space, performance counters off.
            ecx &= !((1 << 2) | (1 << 3) | (1 << 23));
        }
        0x8000_000a => return [0; 4],
        _ => {}
    }
    [eax, ebx, ecx, edx]
}

/// IA32_APIC_BASE: the APIC's address (it cannot move), this is the boot
/// processor, and the global enable bit.
const APIC_BASE: u64 = vm_platform::LOCAL_APIC | (1 << 8);
const APIC_ENABLED: u64 = 1 << 11;

/// Emulates `RDMSR` (`write` false) or `WRMSR` of `msr`; an MSR the VMM
/// does not offer, or a value it does not take, injects #GP. Returns false
/// if the instruction faulted (so `rip` must not advance).
pub fn msr(state: &mut VcpuState, msr: u32, write: bool, lapic: &mut Lapic) -> bool {
    let value = (state.registers.rdx << 32) | (state.registers.rax & 0xffff_ffff);
    let read = |state: &mut VcpuState, value: u64| {
        state.registers.rax = value & 0xffff_ffff;
        state.registers.rdx = value >> 32;
    };
    match (msr, write) {
        (0x10, false) => read(state, runtime::syscall::cycles()),
        (0x1b, false) => read(state, APIC_BASE | if lapic.hardware_enabled() { APIC_ENABLED } else { 0 }),
        (0x1b, true) if value & !APIC_ENABLED == APIC_BASE => lapic.set_hardware_enabled(value & APIC_ENABLED != 0),
        // MTRR capabilities and default type: none, uncached default.
        (0xfe | 0x2ff, false) => read(state, 0),
        (0x2ff, true) => {}
        // Platform information, misc enable: plain.
        (0x1a0, false) => read(state, 1),
        // The K8 interrupt-pending message: C1E never active (Linux reads it
        // on family 0xF CPUs, as QEMU's qemu64 says it is).
        (0xc001_0055, false) => read(state, 0),
        (0x6e0, false) => read(state, lapic.tsc_deadline()),
        (0x6e0, true) => lapic.set_tsc_deadline(value, crate::clock::at_cycles(value)),
        (0x277, false) => read(state, state.msrs.pat),
        (0x277, true) => {
            state.msrs.pat = value;
            state.load |= group::MSRS;
        }
        (0xc000_0080, false) => read(state, state.control.efer),
        (0xc000_0080, true) => {
            // LMA is the CPU's to set; the guest may set SCE, LME, NXE.
            let allowed = (1 << 0) | (1 << 8) | (1 << 11);
            if value & !(allowed | (1 << 10)) != 0 {
                state.inject = Event::exception(13, Some(0));
                return false;
            }
            state.control.efer = (state.control.efer & (1 << 10)) | (value & allowed);
            state.load |= group::CONTROL;
        }
        _ => {
            state.inject = Event::exception(13, Some(0));
            return false;
        }
    }
    true
}
