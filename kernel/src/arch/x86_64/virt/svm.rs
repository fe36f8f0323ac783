//! AMD SVM: the VMCB, the intercepts, the world switch and the decoding of
//! exits into the ABI's normalised form (AMD64 APM volume 2, chapter 15 and
//! appendix B).
//!
//! The guest runs with nested paging and its own ASID. Every I/O port and
//! every MSR exits, except the MSRs VMLOAD/VMSAVE switch with the guest
//! (FS/GS base, the SYSCALL and SYSENTER MSRs). Physical interrupts exit
//! (they stay pending while GIF is clear and are taken when the kernel
//! returns to user mode); so do CPUID, HLT, the cache and monitor
//! instructions, XSETBV, RDPMC, every SVM instruction, shutdown, and the
//! #AC and #DB exceptions a guest could otherwise loop on forever.
//!
//! QEMU's SVM has no next-RIP save: the kernel supplies the length of the
//! fixed-length instructions that exit, and the VMM decodes the rest.

use super::reset_state;
use crate::memory::frames;
use crate::memory::physical_to_virtual;
use abi::vcpu::{
    Control, Event, EventKind, Exit, ExitKind, Registers, Segment, Segments, SystemMsrs, Table, VcpuState, access,
    group, instruction, io,
};
use core::arch::naked_asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;
use x86_64::structures::paging::PhysFrame;

/// EFER.SVME.
const EFER_SVME: u64 = 1 << 12;
/// The VM_CR MSR and its "SVM disabled by firmware" bit.
const VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;
/// Where VMRUN keeps the host's state.
const VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER: u32 = 0xc000_0080;

/// Physical addresses of the shared permission maps and the host's VMSAVE
/// area, set once by `init`.
static IO_MAP: AtomicU64 = AtomicU64::new(0);
static MSR_MAP: AtomicU64 = AtomicU64::new(0);
static HOST_SAVE: AtomicU64 = AtomicU64::new(0);
/// ASIDs the kernel uses (at most [`OWNERS`]), and the next to hand out.
static ASIDS: AtomicU32 = AtomicU32::new(0);
static NEXT_ASID: AtomicU32 = AtomicU32::new(1);
/// ASIDs tracked: more vcpus than this share them.
const OWNERS: usize = 64;
/// For each ASID, the VMCB that last ran with it: a vcpu whose ASID another
/// VMCB used since flushes the translations it finds there first.
static OWNER: [AtomicU64; OWNERS] = [const { AtomicU64::new(0) }; OWNERS];

/// VMCB control-area offsets.
mod control {
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00c;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    pub const VIRTUAL_INTERRUPT: usize = 0x060;
    pub const INTERRUPT_SHADOW: usize = 0x068;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INTERRUPT_INFO: usize = 0x088;
    pub const NESTED_PAGING: usize = 0x090;
    pub const EVENT_INJECTION: usize = 0x0a8;
    pub const NESTED_CR3: usize = 0x0b0;
    pub const CLEAN_BITS: usize = 0x0c0;
}

/// VMCB state-save-area offsets.
mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const STAR: usize = 0x600;
    pub const LSTAR: usize = 0x608;
    pub const CSTAR: usize = 0x610;
    pub const SFMASK: usize = 0x618;
    pub const KERNEL_GS_BASE: usize = 0x620;
    pub const SYSENTER_CS: usize = 0x628;
    pub const SYSENTER_ESP: usize = 0x630;
    pub const SYSENTER_EIP: usize = 0x638;
    pub const CR2: usize = 0x640;
    pub const PAT: usize = 0x668;
}

/// Intercept bits of the first miscellaneous vector.
mod misc1 {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    pub const INIT: u32 = 1 << 3;
    pub const VINTR: u32 = 1 << 4;
    pub const RDPMC: u32 = 1 << 15;
    pub const CPUID: u32 = 1 << 18;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const IOIO: u32 = 1 << 27;
    pub const MSR: u32 = 1 << 28;
    pub const FERR_FREEZE: u32 = 1 << 30;
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept bits of the second miscellaneous vector.
mod misc2 {
    /// VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT (bits 0..=6).
    pub const SVM_INSTRUCTIONS: u32 = 0x7f;
    pub const WBINVD: u32 = 1 << 9;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const XSETBV: u32 = 1 << 13;
}

/// Exit codes.
mod code {
    pub const EXCEPTION_0: u64 = 0x40;
    pub const EXCEPTION_31: u64 = 0x5f;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const VINTR: u64 = 0x64;
    pub const RDPMC: u64 = 0x6f;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const FERR_FREEZE: u64 = 0x7e;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const SKINIT: u64 = 0x86;
    pub const WBINVD: u64 = 0x89;
    pub const MONITOR: u64 = 0x8a;
    pub const MWAIT: u64 = 0x8b;
    pub const XSETBV: u64 = 0x8d;
    pub const NESTED_PAGE_FAULT: u64 = 0x400;
}

/// MSRs the guest reads and writes without exits: VMLOAD and VMSAVE switch
/// them with the guest's copies in its VMCB.
const PASSED_THROUGH_MSRS: [u32; 10] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS base
    0xc000_0101, // GS base
    0xc000_0102, // kernel GS base
];

/// The owner record of `asid`.
fn owner(asid: u32) -> Option<&'static AtomicU64> {
    OWNER.get(asid as usize)
}

/// Turns SVM on if the CPU has it with nested paging; false otherwise.
pub fn init() -> bool {
    let extended = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    if extended < 0x8000_000a {
        return false;
    }
    let (features, svm) = (
        core::arch::x86_64::__cpuid(0x8000_0001),
        core::arch::x86_64::__cpuid(0x8000_000a),
    );
    let has_svm = features.ecx & (1 << 2) != 0;
    let has_nested_paging = svm.edx & 1 != 0;
    if !has_svm || !has_nested_paging || svm.ebx < 2 {
        return false;
    }
    // SAFETY: VM_CR exists on every CPU with SVM.
    if unsafe { Msr::new(VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return false;
    }
    let (Some(host_area), Some(host_save), Some(io_map), Some(msr_map)) = (
        frames::allocate_zeroed(),
        frames::allocate_zeroed(),
        frames::allocate_contiguous_zeroed(3),
        frames::allocate_contiguous_zeroed(2),
    ) else {
        return false;
    };
    // Every port exits: all bits set (the map is 12 KiB).
    let io_bytes = physical_to_virtual(io_map.start_address().as_u64()).as_mut_ptr::<u8>();
    // SAFETY: three consecutive frames just allocated for this map, reached
    // through the kernel's map of physical memory.
    unsafe { core::ptr::write_bytes(io_bytes, 0xff, 3 * 4096) };
    let msr_bytes = physical_to_virtual(msr_map.start_address().as_u64()).as_mut_ptr::<u8>();
    // SAFETY: as above, two frames.
    unsafe { core::ptr::write_bytes(msr_bytes, 0xff, 2 * 4096) };
    for msr in PASSED_THROUGH_MSRS {
        let (base, range) = match msr {
            0..=0x1fff => (0, msr),
            0xc000_0000..=0xc000_1fff => (0x800, msr - 0xc000_0000),
            _ => continue,
        };
        // Two bits per MSR (read, then write), four MSRs per byte.
        let byte = base + (range / 4) as usize;
        let shift = (range % 4) * 2;
        // SAFETY: `byte` < 0x1000, inside the two frames.
        unsafe { *msr_bytes.add(byte) &= !(0b11 << shift) };
    }
    IO_MAP.store(io_map.start_address().as_u64(), Ordering::Relaxed);
    MSR_MAP.store(msr_map.start_address().as_u64(), Ordering::Relaxed);
    HOST_SAVE.store(host_save.start_address().as_u64(), Ordering::Relaxed);
    ASIDS.store(svm.ebx.min(OWNERS as u32), Ordering::Relaxed);
    // SAFETY: EFER.SVME enables the SVM instructions (the CPU has them and
    // firmware allows them); VM_HSAVE_PA names a page the kernel keeps for
    // the CPU for ever.
    unsafe {
        let mut efer = Msr::new(EFER);
        efer.write(efer.read() | EFER_SVME);
        Msr::new(VM_HSAVE_PA).write(host_area.start_address().as_u64());
    }
    true
}

/// One vcpu's VMCB, its general registers (those the VMCB does not hold),
/// and the ASID its translations are tagged with.
pub struct Vmcb {
    page: PhysFrame,
    registers: Registers,
    asid: u32,
    /// Not yet run: its ASID may hold a previous vcpu's translations.
    fresh: bool,
}

impl Vmcb {
    /// A VMCB with the intercepts set and the guest in the x86 reset state
    /// (real mode, at F000:FFF0).
    pub fn new() -> Option<Self> {
        let page = frames::allocate_zeroed()?;
        let asids = ASIDS.load(Ordering::Relaxed).max(2);
        let asid = NEXT_ASID.fetch_add(1, Ordering::Relaxed) % (asids - 1) + 1;
        let mut vmcb = Self {
            page,
            registers: Registers {
                rdx: 0x600, // the family/model/stepping a reset leaves in EDX
                rip: 0xfff0,
                rflags: 0x2,
                ..Registers::default()
            },
            asid,
            fresh: true,
        };
        vmcb.write32(control::INTERCEPT_EXCEPTIONS, (1 << 1) | (1 << 17)); // #DB, #AC
        vmcb.write32(
            control::INTERCEPT_MISC1,
            misc1::INTR
                | misc1::NMI
                | misc1::SMI
                | misc1::INIT
                | misc1::RDPMC
                | misc1::CPUID
                | misc1::INVD
                | misc1::HLT
                | misc1::IOIO
                | misc1::MSR
                | misc1::FERR_FREEZE
                | misc1::SHUTDOWN,
        );
        vmcb.write32(
            control::INTERCEPT_MISC2,
            misc2::SVM_INSTRUCTIONS | misc2::WBINVD | misc2::MONITOR | misc2::MWAIT | misc2::XSETBV,
        );
        vmcb.write64(control::IOPM_BASE, IO_MAP.load(Ordering::Relaxed));
        vmcb.write64(control::MSRPM_BASE, MSR_MAP.load(Ordering::Relaxed));
        vmcb.write32(control::ASID, asid);
        // V_INTR_MASKING: the host's IF, not the guest's, masks physical
        // interrupts, so they always exit.
        vmcb.write64(control::VIRTUAL_INTERRUPT, 1 << 24);
        vmcb.write64(control::NESTED_PAGING, 1);
        let reset = reset_state();
        vmcb.load(&reset, group::ALL);
        vmcb.write64(save::DR6, 0xffff_0ff0);
        vmcb.write64(save::DR7, 0x400);
        Some(vmcb)
    }

    /// Loads the guest state `state` holds: the general registers and
    /// interrupt shadow always, plus `groups`.
    fn load(&mut self, state: &VcpuState, groups: u64) {
        self.registers = state.registers;
        self.write64(save::RAX, state.registers.rax);
        self.write64(save::RSP, state.registers.rsp);
        self.write64(save::RIP, state.registers.rip);
        // Bit 1 of RFLAGS always reads as one.
        self.write64(save::RFLAGS, state.registers.rflags | 0x2);
        self.write64(control::INTERRUPT_SHADOW, u64::from(state.interrupt_shadow & 1));
        if groups & group::CONTROL != 0 {
            let Control {
                cr0,
                cr2,
                cr3,
                cr4,
                efer,
            } = state.control;
            self.write64(save::CR0, cr0);
            self.write64(save::CR2, cr2);
            self.write64(save::CR3, cr3);
            self.write64(save::CR4, cr4);
            // The hardware requires SVME in the guest's EFER; the guest
            // never sees it (`store` clears it).
            self.write64(save::EFER, efer | EFER_SVME);
        }
        if groups & group::SEGMENTS != 0 {
            let segments = &state.segments;
            for (offset, segment) in [
                (save::ES, segments.es),
                (save::CS, segments.cs),
                (save::SS, segments.ss),
                (save::DS, segments.ds),
                (save::FS, segments.fs),
                (save::GS, segments.gs),
                (save::LDTR, segments.ldtr),
                (save::TR, segments.tr),
            ] {
                self.write_segment(offset, segment);
            }
            self.write_table(save::GDTR, segments.gdtr);
            self.write_table(save::IDTR, segments.idtr);
            // The CPL is the stack segment's DPL.
            self.write8(save::CPL, ((segments.ss.attributes >> 5) & 3) as u8);
        }
        if groups & group::MSRS != 0 {
            let msrs = &state.msrs;
            for (offset, value) in [
                (save::STAR, msrs.star),
                (save::LSTAR, msrs.lstar),
                (save::CSTAR, msrs.cstar),
                (save::SFMASK, msrs.sfmask),
                (save::KERNEL_GS_BASE, msrs.kernel_gs_base),
                (save::SYSENTER_CS, msrs.sysenter_cs),
                (save::SYSENTER_ESP, msrs.sysenter_esp),
                (save::SYSENTER_EIP, msrs.sysenter_eip),
                (save::PAT, msrs.pat),
            ] {
                self.write64(offset, value);
            }
        }
    }

    /// Stores the guest state into `state`: the general registers and
    /// interrupt shadow always, plus `groups`.
    pub fn store(&self, state: &mut VcpuState, groups: u64) {
        state.registers = Registers {
            rax: self.read64(save::RAX),
            rsp: self.read64(save::RSP),
            rip: self.read64(save::RIP),
            rflags: self.read64(save::RFLAGS),
            ..self.registers
        };
        state.interrupt_shadow = (self.read64(control::INTERRUPT_SHADOW) & 1) as u32;
        if groups & group::CONTROL != 0 {
            state.control = Control {
                cr0: self.read64(save::CR0),
                cr2: self.read64(save::CR2),
                cr3: self.read64(save::CR3),
                cr4: self.read64(save::CR4),
                efer: self.read64(save::EFER) & !EFER_SVME,
            };
        }
        if groups & group::SEGMENTS != 0 {
            state.segments = Segments {
                es: self.read_segment(save::ES),
                cs: self.read_segment(save::CS),
                ss: self.read_segment(save::SS),
                ds: self.read_segment(save::DS),
                fs: self.read_segment(save::FS),
                gs: self.read_segment(save::GS),
                ldtr: self.read_segment(save::LDTR),
                tr: self.read_segment(save::TR),
                gdtr: self.read_table(save::GDTR),
                idtr: self.read_table(save::IDTR),
            };
        }
        if groups & group::MSRS != 0 {
            state.msrs = SystemMsrs {
                star: self.read64(save::STAR),
                lstar: self.read64(save::LSTAR),
                cstar: self.read64(save::CSTAR),
                sfmask: self.read64(save::SFMASK),
                kernel_gs_base: self.read64(save::KERNEL_GS_BASE),
                sysenter_cs: self.read64(save::SYSENTER_CS),
                sysenter_esp: self.read64(save::SYSENTER_ESP),
                sysenter_eip: self.read64(save::SYSENTER_EIP),
                pat: self.read64(save::PAT),
            };
        }
    }

    /// Loads `state`, enters the guest under the nested tables at `root`,
    /// and on its exit stores the state and returns the exit.
    pub fn run(&mut self, state: &mut VcpuState, root: PhysFrame, flush: bool) -> Exit {
        self.load(state, state.load);
        state.load = 0;
        self.write64(control::NESTED_CR3, root.start_address().as_u64());
        let vmcb = self.page.start_address().as_u64();
        let previous = owner(self.asid).map(|owner| owner.swap(vmcb, Ordering::Relaxed));
        let flush_all = flush || self.fresh || previous != Some(vmcb);
        self.fresh = false;
        self.write8(control::TLB_CONTROL, u8::from(flush_all));
        // Nothing is cached from an earlier run: the kernel rewrites the
        // VMCB freely between runs.
        self.write32(control::CLEAN_BITS, 0);
        self.write64(control::EVENT_INJECTION, injection(state.inject));
        state.inject = Event::NONE;
        let mut virtual_interrupt = self.read64(control::VIRTUAL_INTERRUPT) & !((1 << 8) | (0xf << 16) | (1 << 20));
        let mut misc = self.read32(control::INTERCEPT_MISC1) & !misc1::VINTR;
        if state.interrupt_window != 0 {
            // A virtual interrupt of top priority that ignores the TPR: the
            // guest "takes" it as soon as it can take any, which exits.
            virtual_interrupt |= (1 << 8) | (0xf << 16) | (1 << 20);
            misc |= misc1::VINTR;
        }
        self.write64(control::VIRTUAL_INTERRUPT, virtual_interrupt);
        self.write32(control::INTERCEPT_MISC1, misc);
        let host = HOST_SAVE.load(Ordering::Relaxed);
        // SAFETY: the VMCB is valid (built by `new`, state checked by the
        // hardware, which exits with VMEXIT_INVALID otherwise), the host
        // save areas were set by `init`, and the world switch restores
        // every host register it touches. GIF stays clear around the
        // switch, so interrupts wait for the kernel.
        unsafe {
            core::arch::asm!("clgi", "sti", options(nomem, nostack));
            world_switch(&mut self.registers, vmcb, host);
            core::arch::asm!("cli", "stgi", options(nomem, nostack));
        }
        self.write64(control::EVENT_INJECTION, 0);
        self.store(state, state.store);
        let interrupted = self.read64(control::EXIT_INTERRUPT_INFO);
        if interrupted & (1 << 31) != 0 {
            // An event was being delivered when the guest exited: deliver
            // it again on the next entry unless the VMM decides otherwise.
            state.inject = event_from(interrupted);
        }
        self.exit()
    }

    /// Decodes the exit the VMCB records.
    fn exit(&self) -> Exit {
        let code = self.read64(control::EXIT_CODE);
        let info1 = self.read64(control::EXIT_INFO1);
        let info2 = self.read64(control::EXIT_INFO2);
        let exit = |kind: ExitKind, length: u32, a: u64, b: u64, c: u64| Exit {
            kind: kind as u32,
            instruction_length: length,
            a,
            b,
            c,
        };
        let instruction_exit = |number: u64, length: u32| exit(ExitKind::Instruction, length, number, 0, 0);
        match code {
            code::IOIO => {
                let size = (info1 >> 4) & 0b111;
                let mut bits = match size {
                    0b001 => 1,
                    0b010 => 2,
                    _ => 4,
                };
                if info1 & 1 == 0 {
                    bits |= io::WRITE;
                }
                if info1 & (1 << 2) != 0 {
                    bits |= io::STRING;
                }
                if info1 & (1 << 3) != 0 {
                    bits |= io::REPEAT;
                }
                let mask = match bits & io::SIZE_MASK {
                    1 => 0xff,
                    2 => 0xffff,
                    _ => 0xffff_ffff,
                };
                let length = info2.wrapping_sub(self.read64(save::RIP)) as u32;
                let value = self.read64(save::RAX) & mask;
                exit(ExitKind::PortIo, length, info1 >> 16, bits, value)
            }
            code::NESTED_PAGE_FAULT => {
                let mut bits = access::READ;
                if info1 & (1 << 1) != 0 {
                    bits = access::WRITE;
                }
                if info1 & (1 << 4) != 0 {
                    bits = access::EXECUTE;
                }
                if info1 & 1 != 0 {
                    bits |= access::MAPPED;
                }
                exit(ExitKind::NestedPageFault, 0, info2, bits, 0)
            }
            code::CPUID => exit(ExitKind::Cpuid, 2, 0, 0, 0),
            code::MSR => exit(ExitKind::Msr, 2, self.registers.rcx & 0xffff_ffff, info1 & 1, 0),
            code::HLT => exit(ExitKind::Hlt, 1, 0, 0, 0),
            code::VINTR => exit(ExitKind::InterruptWindow, 0, 0, 0, 0),
            code::VMMCALL => exit(ExitKind::Hypercall, 3, 0, 0, 0),
            code::SHUTDOWN => exit(ExitKind::Shutdown, 0, 0, 0, 0),
            code::EXCEPTION_0..=code::EXCEPTION_31 => {
                let vector = code - code::EXCEPTION_0;
                exit(ExitKind::Exception, 0, vector, info1, info2)
            }
            code::INTR | code::NMI | code::SMI | code::INIT | code::FERR_FREEZE => {
                exit(ExitKind::Preempted, 0, 0, 0, 0)
            }
            code::INVD => instruction_exit(instruction::INVD, 2),
            code::WBINVD => instruction_exit(instruction::WBINVD, 2),
            code::XSETBV => instruction_exit(instruction::XSETBV, 3),
            code::MONITOR => instruction_exit(instruction::MONITOR, 3),
            code::MWAIT => instruction_exit(instruction::MWAIT, 3),
            code::RDPMC => instruction_exit(instruction::RDPMC, 2),
            code::VMRUN..=code::SKINIT => instruction_exit(instruction::VIRTUALISATION, 3),
            other => exit(ExitKind::InvalidState, 0, other, info1, info2),
        }
    }

    fn bytes(&self) -> *mut u8 {
        physical_to_virtual(self.page.start_address().as_u64()).as_mut_ptr()
    }

    fn read64(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is one of the VMCB offsets above, inside the
        // page this vcpu owns; the CPU writes the VMCB only during VMRUN.
        unsafe { self.bytes().add(offset).cast::<u64>().read_volatile() }
    }

    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: as in `read64`.
        unsafe { self.bytes().add(offset).cast::<u32>().read_volatile() }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { self.bytes().add(offset).cast::<u64>().write_volatile(value) }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read64`.
        unsafe { self.bytes().add(offset).cast::<u32>().write_volatile(value) }
    }

    fn write8(&mut self, offset: usize, value: u8) {
        // SAFETY: as in `read64`.
        unsafe { self.bytes().add(offset).write_volatile(value) }
    }

    fn read_segment(&self, offset: usize) -> Segment {
        let head = self.read64(offset);
        Segment {
            selector: head as u16,
            attributes: (head >> 16) as u16 & 0x0fff,
            limit: (head >> 32) as u32,
            base: self.read64(offset + 8),
        }
    }

    fn write_segment(&mut self, offset: usize, segment: Segment) {
        let head = u64::from(segment.selector)
            | (u64::from(segment.attributes & 0x0fff) << 16)
            | (u64::from(segment.limit) << 32);
        self.write64(offset, head);
        self.write64(offset + 8, segment.base);
    }

    fn read_table(&self, offset: usize) -> Table {
        Table {
            base: self.read64(offset + 8),
            limit: self.read64(offset) >> 32,
        }
    }

    fn write_table(&mut self, offset: usize, table: Table) {
        self.write64(offset, (table.limit & 0xffff) << 32);
        self.write64(offset + 8, table.base);
    }
}

impl Drop for Vmcb {
    fn drop(&mut self) {
        let vmcb = self.page.start_address().as_u64();
        if let Some(owner) = owner(self.asid) {
            let _ = owner.compare_exchange(vmcb, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        frames::free(self.page);
    }
}

/// The EVENTINJ word for `event` (0: nothing to inject).
fn injection(event: Event) -> u64 {
    let kind = match EventKind::from_number(event.kind) {
        Some(EventKind::Interrupt) => 0,
        Some(EventKind::Nmi) => 2,
        Some(EventKind::Exception) => 3,
        Some(EventKind::None) | None => return 0,
    };
    let mut word = u64::from(event.vector & 0xff) | (kind << 8) | (1 << 31);
    if event.has_error_code != 0 && kind == 3 {
        word |= (1 << 11) | (u64::from(event.error_code) << 32);
    }
    word
}

/// The event an EXITINTINFO word describes.
fn event_from(word: u64) -> Event {
    let vector = (word & 0xff) as u8;
    match (word >> 8) & 0b111 {
        0 => Event::interrupt(vector),
        2 => Event {
            kind: EventKind::Nmi as u32,
            vector: 2,
            has_error_code: 0,
            error_code: 0,
        },
        // Software interrupts and INT3/INTO restart with their instruction.
        4 => Event::NONE,
        _ => Event::exception(vector, (word & (1 << 11) != 0).then_some((word >> 32) as u32)),
    }
}

/// Saves the host's VMSAVE state, loads the guest's general registers
/// (`registers`, except `rax` and `rsp`, which are in the VMCB), runs the
/// guest, and on its exit stores them back and restores the host.
///
/// # Safety
/// `vmcb` and `host` are the physical addresses of a valid VMCB and of
/// the host's VMSAVE area; GIF is clear.
#[unsafe(naked)]
unsafe extern "sysv64" fn world_switch(registers: *mut Registers, vmcb: u64, host: u64) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdi",
        "push rdx",
        "mov rax, rdx",
        "vmsave rax",
        "mov rax, rsi",
        load_guest_registers!(),
        "mov rdi, [rdi + 0x28]",
        "vmload rax",
        "vmrun rax",
        "vmsave rax",
        "push rdi",
        "mov rdi, [rsp + 16]",
        store_guest_registers!(),
        "pop rax",
        "mov [rdi + 0x28], rax",
        "pop rax",
        "vmload rax",
        "pop rdi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    );
}
