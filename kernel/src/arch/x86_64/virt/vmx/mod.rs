//! Intel VT-x: detection, VMXON, one VMCS per vcpu, the world switch and
//! the decoding of exits into the ABI's normalised form (Intel SDM volume
//! 3, chapters 23–29).
//!
//! The guest runs under EPT with unrestricted guest (so real mode and
//! paging off need no emulation) and, where the CPU has it, its own VPID.
//! The controls mirror the SVM backend's intercepts: every I/O port exits
//! (unconditional I/O exiting); every MSR exits except those the guest
//! uses directly (FS/GS base and SYSENTER, which the VMCS switches; STAR,
//! LSTAR, CSTAR, SFMASK and kernel GS base, which the world switch
//! exchanges by hand); external interrupts and NMIs exit (the interrupt
//! stays pending in the LAPIC and is taken when the kernel returns to user
//! mode); CPUID, HLT, the cache and monitor instructions, XSETBV, RDPMC,
//! every VMX instruction, triple faults and the #AC and #DB exceptions
//! exit. CR0 and CR4 bits VMX forces (NE, VMXE) are hidden from the guest
//! by read shadows; a guest write to them is emulated here, without an
//! exit to the VMM.
//!
//! VT-x reports the length of the instruction that exited; it goes to the
//! VMM as is.

mod fields;

use super::reset_state;
use crate::memory::frames;
use crate::memory::physical_to_virtual;
use abi::vcpu::{
    Control, Event, EventKind, Exit, ExitKind, Registers, Segment, Segments, SystemMsrs, Table, VcpuState, access,
    attribute, group, instruction, io,
};
use core::arch::{asm, naked_asm};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use fields::{entry_control, exit_control, interruptibility, interruption, msr, pin, processor, reason, secondary};
use spin::Once;
use x86_64::instructions::tables::{lgdt, lidt, sgdt, sidt};
use x86_64::registers::model_specific::Msr;
use x86_64::structures::paging::PhysFrame;

/// CR0.PE, CR0.PG: unrestricted guest lets them be clear whatever the
/// fixed-bit MSRs say.
const CR0_PROTECTED: u64 = 1 << 0;
const CR0_PAGING: u64 = 1 << 31;
/// CR0.NW and CR0.CD.
const CR0_NOT_WRITE_THROUGH: u64 = 1 << 29;
const CR0_CACHE_DISABLE: u64 = 1 << 30;
/// CR4.PAE and CR4.VMXE.
const CR4_PAE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;
/// EFER.LME and EFER.LMA.
const EFER_LONG_MODE_ENABLE: u64 = 1 << 8;
const EFER_LONG_MODE_ACTIVE: u64 = 1 << 10;
/// RFLAGS.IF and RFLAGS.TF.
const RFLAGS_INTERRUPTS: u64 = 1 << 9;
const RFLAGS_TRAP: u64 = 1 << 8;
/// The EPT pointer's low bits: write-back paging structures, a 4-level
/// walk.
const EPT_POINTER_FLAGS: u64 = 6 | (3 << 3);
/// The exceptions that exit: #DB and #AC, which a guest could otherwise
/// loop on inside the CPU for ever (as on SVM).
const INTERCEPTED_EXCEPTIONS: u32 = (1 << 1) | (1 << 17);
/// VPIDs tracked: more vcpus than this share them.
const OWNERS: usize = 64;

/// What `init` found and chose, fixed for the rest of the run.
struct Configuration {
    revision: u32,
    pin: u32,
    processor: u32,
    secondary: u32,
    exit: u32,
    entry: u32,
    cr0_fixed0: u64,
    cr0_fixed1: u64,
    cr4_fixed0: u64,
    cr4_fixed1: u64,
    /// INVEPT type: 1 single-context, 2 all-context.
    invept_type: u64,
    /// INVVPID type (1 single-context, 2 all-context), with VPIDs on.
    invvpid_type: Option<u64>,
    /// Physical address of the shared MSR bitmap.
    msr_bitmap: u64,
}

static CONFIGURATION: Once<Configuration> = Once::new();
/// Physical address of the VMCS that is current on this CPU (0: none).
static CURRENT: AtomicU64 = AtomicU64::new(0);
static NEXT_VPID: AtomicU32 = AtomicU32::new(0);
/// For each VPID, the VMCS that last ran with it: a vcpu whose VPID
/// another VMCS used since flushes the translations it finds there first.
static OWNER: [AtomicU64; OWNERS] = [const { AtomicU64::new(0) }; OWNERS];

/// MSRs the guest reads and writes without exits (the same set as on
/// SVM). The VMCS switches FS/GS base and SYSENTER; the world switch the
/// rest.
const PASSED_THROUGH_MSRS: [u32; 10] = [
    msr::SYSENTER_CS,
    msr::SYSENTER_ESP,
    msr::SYSENTER_EIP,
    msr::STAR,
    msr::LSTAR,
    msr::CSTAR,
    msr::SFMASK,
    msr::FS_BASE,
    msr::GS_BASE,
    msr::KERNEL_GS_BASE,
];

/// The MSRs the world switch exchanges, in [`SwitchedMsrs`] order.
const SWITCHED_MSRS: [u32; 5] = [msr::STAR, msr::LSTAR, msr::CSTAR, msr::SFMASK, msr::KERNEL_GS_BASE];

fn read_msr(number: u32) -> u64 {
    // SAFETY: only MSRs that exist on every CPU with VMX (the VMX
    // capability MSRs once CPUID reported VMX, and architectural ones)
    // are read; reading has no side effects.
    unsafe { Msr::new(number).read() }
}

/// The control value for a control MSR: `required` bits (or `None` if
/// the CPU cannot set one of them), the `optional` ones it can set, and
/// the bits it cannot clear.
fn control(number: u32, required: u32, optional: u32) -> Option<u32> {
    let capability = read_msr(number);
    let (must_be_one, may_be_one) = (capability as u32, (capability >> 32) as u32);
    if required & !may_be_one != 0 {
        return None;
    }
    Some((required | (optional & may_be_one) | must_be_one) & may_be_one)
}

/// Turns VMX on if the CPU has it with EPT and unrestricted guest; false
/// otherwise.
pub fn init() -> bool {
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 5) == 0 {
        return false;
    }
    let feature_control = read_msr(msr::FEATURE_CONTROL);
    if feature_control & msr::FEATURE_CONTROL_LOCKED == 0 {
        // SAFETY: firmware left the MSR unlocked: allowing VMX outside SMX
        // and locking it is what firmware would have done.
        unsafe {
            Msr::new(msr::FEATURE_CONTROL)
                .write(feature_control | msr::FEATURE_CONTROL_LOCKED | msr::FEATURE_CONTROL_VMX);
        }
    } else if feature_control & msr::FEATURE_CONTROL_VMX == 0 {
        log::info!("virtualisation: VT-x is disabled by firmware");
        return false;
    }
    let Some(configuration) = configure() else {
        return false;
    };
    let Some(vmxon_region) = frames::allocate_zeroed() else {
        return false;
    };
    let region = physical_to_virtual(vmxon_region.start_address().as_u64()).as_mut_ptr::<u32>();
    // SAFETY: a frame just allocated for the VMXON region; its first
    // word is the revision identifier.
    unsafe { region.write_volatile(configuration.revision) };
    // SAFETY: CR0 and CR4 take the bits VMX operation requires (NE,
    // VMXE) and lose those it forbids, as the fixed-bit MSRs say; the
    // kernel relies on none of the bits that change.
    unsafe {
        let cr0 = x86_64::registers::control::Cr0::read_raw();
        x86_64::registers::control::Cr0::write_raw((cr0 | configuration.cr0_fixed0) & configuration.cr0_fixed1);
        let cr4 = x86_64::registers::control::Cr4::read_raw();
        x86_64::registers::control::Cr4::write_raw(
            (cr4 | configuration.cr4_fixed0 | CR4_VMXE) & configuration.cr4_fixed1,
        );
    }
    let address = vmxon_region.start_address().as_u64();
    let failed: u8;
    // SAFETY: CR0/CR4 satisfy VMX's fixed bits, FEATURE_CONTROL allows
    // VMX, and the region (kept for ever) carries the revision identifier.
    unsafe {
        asm!("vmxon [{}]", "setna {}", in(reg) &address, out(reg_byte) failed, options(nostack));
    }
    if failed != 0 {
        log::warn!("virtualisation: VMXON failed");
        return false;
    }
    let vpids = if configuration.invvpid_type.is_some() {
        "on"
    } else {
        "off"
    };
    let invept = if configuration.invept_type == 1 {
        "single-context"
    } else {
        "all-context"
    };
    log::info!(
        "vmx: VMCS revision {:#x}, VPIDs {vpids}, INVEPT {invept}",
        configuration.revision
    );
    CONFIGURATION.call_once(|| configuration);
    true
}

/// Reads the capability MSRs and picks the controls; `None` if the CPU
/// lacks something the backend needs.
fn configure() -> Option<Configuration> {
    let basic = read_msr(msr::BASIC);
    let true_controls = basic & msr::BASIC_TRUE_CONTROLS != 0;
    let pick = |plain: u32, truly: u32| if true_controls { truly } else { plain };
    let pin = control(
        pick(msr::PIN_CONTROLS, msr::TRUE_PIN_CONTROLS),
        pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
        pin::VIRTUAL_NMIS,
    )?;
    let processor_msr = pick(msr::PROCESSOR_CONTROLS, msr::TRUE_PROCESSOR_CONTROLS);
    let processor = control(
        processor_msr,
        processor::HLT_EXITING
            | processor::MWAIT_EXITING
            | processor::RDPMC_EXITING
            | processor::UNCONDITIONAL_IO_EXITING
            | processor::MSR_BITMAPS
            | processor::MONITOR_EXITING
            | processor::SECONDARY_CONTROLS,
        0,
    )?;
    // Interrupt-window exiting is switched per entry: it must be settable.
    control(processor_msr, processor::INTERRUPT_WINDOW_EXITING, 0)?;
    let required = secondary::EPT | secondary::UNRESTRICTED_GUEST | secondary::WBINVD_EXITING;
    // The EPT/VPID capability MSR exists once EPT can be switched on.
    control(msr::SECONDARY_CONTROLS, required, 0)?;
    let capabilities = read_msr(msr::EPT_VPID_CAPABILITIES);
    let has = |bits: u64| capabilities & bits == bits;
    if !has(msr::EPT_WALK_4 | msr::EPT_WRITE_BACK | msr::INVEPT) {
        return None;
    }
    let invept_type = if has(msr::INVEPT_SINGLE) {
        1
    } else if has(msr::INVEPT_ALL) {
        2
    } else {
        return None;
    };
    let invvpid_type = if !has(msr::INVVPID) {
        None
    } else if has(msr::INVVPID_SINGLE) {
        Some(1)
    } else if has(msr::INVVPID_ALL) {
        Some(2)
    } else {
        None
    };
    let vpid = if invvpid_type.is_some() { secondary::VPID } else { 0 };
    let secondary = control(
        msr::SECONDARY_CONTROLS,
        required,
        vpid | secondary::RDTSCP | secondary::INVPCID,
    )?;
    let exit = control(
        pick(msr::EXIT_CONTROLS, msr::TRUE_EXIT_CONTROLS),
        exit_control::HOST_64_BIT
            | exit_control::SAVE_DEBUG_CONTROLS
            | exit_control::SAVE_PAT
            | exit_control::LOAD_PAT
            | exit_control::SAVE_EFER
            | exit_control::LOAD_EFER,
        0,
    )?;
    let entry_msr = pick(msr::ENTRY_CONTROLS, msr::TRUE_ENTRY_CONTROLS);
    let entry = control(
        entry_msr,
        entry_control::LOAD_DEBUG_CONTROLS | entry_control::LOAD_PAT | entry_control::LOAD_EFER,
        0,
    )?;
    control(entry_msr, entry_control::LONG_MODE_GUEST, 0)?;
    let msr_bitmap = msr_bitmap()?;
    Some(Configuration {
        revision: (basic & 0x7fff_ffff) as u32,
        pin,
        processor,
        secondary,
        exit,
        entry,
        cr0_fixed0: read_msr(msr::CR0_FIXED0),
        cr0_fixed1: read_msr(msr::CR0_FIXED1),
        cr4_fixed0: read_msr(msr::CR4_FIXED0),
        cr4_fixed1: read_msr(msr::CR4_FIXED1),
        invept_type,
        invvpid_type: (secondary & secondary::VPID != 0).then_some(invvpid_type).flatten(),
        msr_bitmap,
    })
}

/// The shared MSR bitmap: every MSR exits but [`PASSED_THROUGH_MSRS`].
/// Returns its physical address.
fn msr_bitmap() -> Option<u64> {
    let page = frames::allocate_zeroed()?;
    let bytes = physical_to_virtual(page.start_address().as_u64()).as_mut_ptr::<u8>();
    // SAFETY: a frame just allocated for the bitmap, reached through the
    // kernel's map of physical memory.
    unsafe { core::ptr::write_bytes(bytes, 0xff, 4096) };
    for number in PASSED_THROUGH_MSRS {
        // Read bitmaps for the low and high ranges at 0 and 0x400, write
        // bitmaps at 0x800 and 0xc00; one bit per MSR.
        let (base, index) = match number {
            0..=0x1fff => (0, number),
            0xc000_0000..=0xc000_1fff => (0x400, number - 0xc000_0000),
            _ => continue,
        };
        for offset in [base, base + 0x800] {
            let byte = offset + (index / 8) as usize;
            // SAFETY: `byte` < 0x1000, inside the frame.
            unsafe { *bytes.add(byte) &= !(1 << (index % 8)) };
        }
    }
    Some(page.start_address().as_u64())
}

/// Writes a VMCS field of the current VMCS.
fn write(field: u32, value: u64) {
    // SAFETY: VMWRITE changes only the current VMCS (a failure sets
    // flags, which are ignored: every field written exists on a CPU that
    // passed `configure`); the callers made this vcpu's VMCS current, and
    // the host-state fields they write describe the kernel's own state.
    unsafe { asm!("vmwrite {}, {}", in(reg) u64::from(field), in(reg) value, options(nostack)) };
}

/// Reads a VMCS field of the current VMCS.
fn read(field: u32) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only reads the current VMCS into a register.
    unsafe { asm!("vmread {}, {}", out(reg) value, in(reg) u64::from(field), options(nostack)) };
    value
}

/// Drops the linear translations cached for `vpid` (INVVPID of type
/// `kind`, one `configure` found supported).
fn invalidate_vpid(kind: u64, vpid: u16) {
    let descriptor = [u64::from(vpid), 0];
    // SAFETY: INVVPID only drops cached translations; the type is
    // supported and the descriptor valid (a VPID is never 0 while VPIDs
    // are on).
    unsafe { asm!("invvpid {}, [{}]", in(reg) kind, in(reg) &descriptor, options(nostack)) };
}

/// The owner record of `vpid` (1..=[`OWNERS`]).
fn owner(vpid: u16) -> Option<&'static AtomicU64> {
    OWNER.get(usize::from(vpid).checked_sub(1)?)
}

/// The MSRs VMX does not switch, as the guest last left them.
#[derive(Clone, Copy, Default)]
struct SwitchedMsrs([u64; SWITCHED_MSRS.len()]);

/// One vcpu's VMCS, with the guest state the VMCS does not hold.
pub struct Vmcs {
    configuration: &'static Configuration,
    page: PhysFrame,
    registers: Registers,
    cr2: u64,
    msrs: SwitchedMsrs,
    /// 0 when VPIDs are off.
    vpid: u16,
    /// VMLAUNCH succeeded since the last VMCLEAR: the next entry is a
    /// VMRESUME.
    launched: bool,
    /// Not yet run: its VPID and EPT root may hold stale translations.
    fresh: bool,
}

impl Vmcs {
    /// A VMCS with the controls set and the guest in the x86 reset state
    /// (real mode, at F000:FFF0).
    pub fn new() -> Option<Self> {
        let configuration = CONFIGURATION.get()?;
        let page = frames::allocate_zeroed()?;
        let region = physical_to_virtual(page.start_address().as_u64()).as_mut_ptr::<u32>();
        // SAFETY: the frame was just allocated for this VMCS; its first
        // word is the revision identifier.
        unsafe { region.write_volatile(configuration.revision) };
        let vpid = if configuration.invvpid_type.is_some() {
            (NEXT_VPID.fetch_add(1, Ordering::Relaxed) % OWNERS as u32 + 1) as u16
        } else {
            0
        };
        let mut vmcs = Self {
            configuration,
            page,
            registers: Registers::default(),
            cr2: 0,
            msrs: SwitchedMsrs::default(),
            vpid,
            launched: false,
            fresh: true,
        };
        let address = vmcs.address();
        // SAFETY: the region holds the revision identifier and belongs to
        // this VMCS alone; VMCLEAR initialises it, VMPTRLD makes it
        // current (and whichever VMCS was current stays valid in memory).
        unsafe { asm!("vmclear [{}]", "vmptrld [{}]", in(reg) &address, in(reg) &address, options(nostack)) };
        CURRENT.store(address, Ordering::Relaxed);
        write(fields::PIN_CONTROLS, u64::from(configuration.pin));
        write(fields::PROCESSOR_CONTROLS, u64::from(configuration.processor));
        write(fields::SECONDARY_CONTROLS, u64::from(configuration.secondary));
        write(fields::EXIT_CONTROLS, u64::from(configuration.exit));
        write(fields::ENTRY_CONTROLS, u64::from(configuration.entry));
        write(fields::EXCEPTION_BITMAP, u64::from(INTERCEPTED_EXCEPTIONS));
        write(fields::MSR_BITMAPS, configuration.msr_bitmap);
        if vpid != 0 {
            write(fields::VPID, u64::from(vpid));
        }
        write(fields::VMCS_LINK_POINTER, u64::MAX);
        write(fields::CR0_GUEST_HOST_MASK, cr0_owned(configuration));
        write(fields::CR4_GUEST_HOST_MASK, cr4_owned(configuration));
        write(fields::GUEST_DR7, 0x400);
        write(fields::GUEST_DEBUGCTL, 0);
        write(fields::GUEST_ACTIVITY_STATE, 0);
        write(fields::GUEST_PENDING_DEBUG_EXCEPTIONS, 0);
        write(fields::GUEST_INTERRUPTIBILITY, 0);
        vmcs.load(&reset_state(), group::ALL);
        Some(vmcs)
    }

    fn address(&self) -> u64 {
        self.page.start_address().as_u64()
    }

    /// Makes this VMCS the CPU's current one.
    fn make_current(&self) {
        let address = self.address();
        if CURRENT.load(Ordering::Relaxed) != address {
            // SAFETY: the region was initialised by VMCLEAR in `new` and
            // lives as long as `self`; the VMCS that was current stays in
            // memory and is loaded again before its next use.
            unsafe { asm!("vmptrld [{}]", in(reg) &address, options(nostack)) };
            CURRENT.store(address, Ordering::Relaxed);
        }
    }

    /// Loads the guest state `state` holds: the general registers and
    /// interrupt shadow always, plus `groups`. The VMCS is current.
    fn load(&mut self, state: &VcpuState, groups: u64) {
        let configuration = self.configuration;
        self.registers = state.registers;
        let rflags = state.registers.rflags | 0x2;
        write(fields::GUEST_RSP, state.registers.rsp);
        write(fields::GUEST_RIP, state.registers.rip);
        write(fields::GUEST_RFLAGS, rflags);
        let mut blocking =
            read(fields::GUEST_INTERRUPTIBILITY) as u32 & !(interruptibility::STI | interruptibility::MOV_SS);
        if state.interrupt_shadow & 1 != 0 {
            // Blocking by STI needs IF set; a shadow with IF clear is a
            // MOV SS one (both block interrupts for one instruction).
            blocking |= if rflags & RFLAGS_INTERRUPTS != 0 {
                interruptibility::STI
            } else {
                interruptibility::MOV_SS
            };
        }
        // A single step pending behind a shadow is the BS bit; VM entry
        // refuses it in any other case.
        let single_step = state.interrupt_shadow & 1 != 0 && rflags & RFLAGS_TRAP != 0;
        write(fields::GUEST_PENDING_DEBUG_EXCEPTIONS, u64::from(single_step) << 14);
        write(fields::GUEST_INTERRUPTIBILITY, u64::from(blocking));
        if groups & group::CONTROL != 0 {
            let Control {
                cr0,
                cr2,
                cr3,
                cr4,
                efer,
            } = state.control;
            self.write_cr0(cr0);
            write(fields::CR4_READ_SHADOW, cr4);
            write(
                fields::GUEST_CR4,
                (cr4 | configuration.cr4_fixed0) & configuration.cr4_fixed1,
            );
            write(fields::GUEST_CR3, cr3);
            self.cr2 = cr2;
            self.write_efer(efer, cr0);
        }
        if groups & group::SEGMENTS != 0 {
            let segments = &state.segments;
            for (number, segment) in [
                segments.es,
                segments.cs,
                segments.ss,
                segments.ds,
                segments.fs,
                segments.gs,
                segments.ldtr,
                segments.tr,
            ]
            .into_iter()
            .enumerate()
            {
                let offset = number as u32 * fields::SEGMENT_STRIDE;
                write(fields::GUEST_ES_SELECTOR + offset, u64::from(segment.selector));
                write(fields::GUEST_ES_LIMIT + offset, u64::from(segment.limit));
                write(
                    fields::GUEST_ES_ACCESS_RIGHTS + offset,
                    access_rights(segment.attributes),
                );
                write(fields::GUEST_ES_BASE + offset, segment.base);
            }
            write(fields::GUEST_GDTR_BASE, segments.gdtr.base);
            write(fields::GUEST_GDTR_LIMIT, segments.gdtr.limit & 0xffff);
            write(fields::GUEST_IDTR_BASE, segments.idtr.base);
            write(fields::GUEST_IDTR_LIMIT, segments.idtr.limit & 0xffff);
        }
        if groups & group::MSRS != 0 {
            let msrs = &state.msrs;
            self.msrs = SwitchedMsrs([msrs.star, msrs.lstar, msrs.cstar, msrs.sfmask, msrs.kernel_gs_base]);
            write(fields::GUEST_SYSENTER_CS, msrs.sysenter_cs);
            write(fields::GUEST_SYSENTER_ESP, msrs.sysenter_esp);
            write(fields::GUEST_SYSENTER_EIP, msrs.sysenter_eip);
            write(fields::GUEST_PAT, msrs.pat);
        }
    }

    /// Sets the guest's CR0 as it sees it, `cr0`: the bits VMX forces are
    /// set in the real CR0 and hidden by the read shadow.
    fn write_cr0(&mut self, cr0: u64) {
        let configuration = self.configuration;
        let forced = configuration.cr0_fixed0 & !(CR0_PROTECTED | CR0_PAGING);
        write(fields::CR0_READ_SHADOW, cr0);
        write(fields::GUEST_CR0, (cr0 | forced) & configuration.cr0_fixed1);
    }

    /// Sets the guest's EFER: LMA follows LME and CR0.PG, as the CPU would
    /// set it, and so does the "IA-32e mode guest" entry control.
    fn write_efer(&mut self, efer: u64, cr0: u64) {
        let long = efer & EFER_LONG_MODE_ENABLE != 0 && cr0 & CR0_PAGING != 0;
        let efer = if long {
            efer | EFER_LONG_MODE_ACTIVE
        } else {
            efer & !EFER_LONG_MODE_ACTIVE
        };
        write(fields::GUEST_EFER, efer);
        let entry = read(fields::ENTRY_CONTROLS) & !u64::from(entry_control::LONG_MODE_GUEST);
        let mode = if long { entry_control::LONG_MODE_GUEST } else { 0 };
        write(fields::ENTRY_CONTROLS, entry | u64::from(mode));
    }

    /// Stores the guest state into `state`: the general registers and
    /// interrupt shadow always, plus `groups`.
    pub fn store(&self, state: &mut VcpuState, groups: u64) {
        self.make_current();
        state.registers = Registers {
            rsp: read(fields::GUEST_RSP),
            rip: read(fields::GUEST_RIP),
            rflags: read(fields::GUEST_RFLAGS),
            ..self.registers
        };
        let blocking = read(fields::GUEST_INTERRUPTIBILITY) as u32;
        state.interrupt_shadow = u32::from(blocking & (interruptibility::STI | interruptibility::MOV_SS) != 0);
        if groups & group::CONTROL != 0 {
            let visible = |real: u32, shadow: u32, owned: u32| {
                let owned = read(owned);
                (read(real) & !owned) | (read(shadow) & owned)
            };
            state.control = Control {
                cr0: visible(fields::GUEST_CR0, fields::CR0_READ_SHADOW, fields::CR0_GUEST_HOST_MASK),
                cr2: self.cr2,
                cr3: read(fields::GUEST_CR3),
                cr4: visible(fields::GUEST_CR4, fields::CR4_READ_SHADOW, fields::CR4_GUEST_HOST_MASK),
                efer: read(fields::GUEST_EFER),
            };
        }
        if groups & group::SEGMENTS != 0 {
            let segment = |number: u32| {
                let offset = number * fields::SEGMENT_STRIDE;
                Segment {
                    selector: read(fields::GUEST_ES_SELECTOR + offset) as u16,
                    attributes: attributes(read(fields::GUEST_ES_ACCESS_RIGHTS + offset)),
                    limit: read(fields::GUEST_ES_LIMIT + offset) as u32,
                    base: read(fields::GUEST_ES_BASE + offset),
                }
            };
            state.segments = Segments {
                es: segment(0),
                cs: segment(1),
                ss: segment(2),
                ds: segment(3),
                fs: segment(4),
                gs: segment(5),
                ldtr: segment(6),
                tr: segment(7),
                gdtr: Table {
                    base: read(fields::GUEST_GDTR_BASE),
                    limit: read(fields::GUEST_GDTR_LIMIT),
                },
                idtr: Table {
                    base: read(fields::GUEST_IDTR_BASE),
                    limit: read(fields::GUEST_IDTR_LIMIT),
                },
            };
        }
        if groups & group::MSRS != 0 {
            let [star, lstar, cstar, sfmask, kernel_gs_base] = self.msrs.0;
            state.msrs = SystemMsrs {
                star,
                lstar,
                cstar,
                sfmask,
                kernel_gs_base,
                sysenter_cs: read(fields::GUEST_SYSENTER_CS),
                sysenter_esp: read(fields::GUEST_SYSENTER_ESP),
                sysenter_eip: read(fields::GUEST_SYSENTER_EIP),
                pat: read(fields::GUEST_PAT),
            };
        }
    }

    /// Loads `state`, enters the guest under the EPT tables at `root`, and
    /// on its exit stores the state and returns the exit.
    pub fn run(&mut self, state: &mut VcpuState, root: PhysFrame, flush: bool) -> Exit {
        self.make_current();
        self.load(state, state.load);
        state.load = 0;
        let ept_pointer = root.start_address().as_u64() | EPT_POINTER_FLAGS;
        write(fields::EPT_POINTER, ept_pointer);
        self.flush_translations(ept_pointer, flush);
        let event = state.inject;
        state.inject = Event::NONE;
        let mut window = state.interrupt_window != 0;
        let rflags = read(fields::GUEST_RFLAGS);
        let blocked = read(fields::GUEST_INTERRUPTIBILITY) as u32 & (interruptibility::STI | interruptibility::MOV_SS);
        let mut injected = injection(event);
        if event.kind == EventKind::Interrupt as u32 && (rflags & RFLAGS_INTERRUPTS == 0 || blocked != 0) {
            // The guest cannot take it yet (VM entry would refuse it): keep
            // it and enter until it can.
            state.inject = event;
            injected = None;
            window = true;
        }
        let (information, error_code) = injected.unwrap_or((0, 0));
        write(fields::ENTRY_INTERRUPTION_INFO, u64::from(information));
        write(fields::ENTRY_EXCEPTION_ERROR_CODE, u64::from(error_code));
        let controls = read(fields::PROCESSOR_CONTROLS) & !u64::from(processor::INTERRUPT_WINDOW_EXITING);
        let wanted = if window { processor::INTERRUPT_WINDOW_EXITING } else { 0 };
        write(fields::PROCESSOR_CONTROLS, controls | u64::from(wanted));
        write_host_state();
        let (exit, entered) = loop {
            match self.enter() {
                Entered::Exited(reason) if reason == reason::CONTROL_REGISTER_ACCESS && self.emulate_mov_to_cr() => {}
                Entered::Exited(reason) => break (self.exit(reason), reason & reason::ENTRY_FAILURE == 0),
                Entered::Refused(error) => break (exit(ExitKind::InvalidState, 0, error, 0, 0), false),
            }
        };
        write(fields::ENTRY_INTERRUPTION_INFO, 0);
        if !entered && event.is_set() {
            // Never delivered.
            state.inject = event;
        }
        self.store(state, state.store);
        let vectoring = read(fields::IDT_VECTORING_INFO) as u32;
        if entered && vectoring & interruption::VALID != 0 {
            // An event was being delivered when the guest exited: deliver
            // it again on the next entry unless the VMM decides otherwise.
            if let Some(again) = event_from(vectoring, read(fields::IDT_VECTORING_ERROR_CODE) as u32) {
                state.inject = again;
            }
        }
        exit
    }

    /// Drops cached translations the next entry must not use: those of
    /// this EPT root when its tables changed (`flush`) or the vcpu is new
    /// (a freed guest memory's root may come back as this one's), and
    /// those tagged with its VPID when another VMCS used it since.
    fn flush_translations(&mut self, ept_pointer: u64, flush: bool) {
        let configuration = self.configuration;
        if flush || self.fresh {
            let descriptor = [ept_pointer, 0];
            // SAFETY: INVEPT only drops cached translations; the type is
            // one `configure` found supported, the descriptor is valid.
            unsafe {
                asm!("invept {}, [{}]", in(reg) configuration.invept_type, in(reg) &descriptor, options(nostack));
            }
        }
        if let Some(kind) = configuration.invvpid_type {
            let address = self.address();
            let previous = owner(self.vpid).map(|owner| owner.swap(address, Ordering::Relaxed));
            if self.fresh || previous != Some(address) {
                invalidate_vpid(kind, self.vpid);
            }
        }
        self.fresh = false;
    }

    /// One VM entry and exit: exchanges the MSRs and CR2 VMX does not
    /// switch, runs the world switch, and repairs what a VM exit leaves
    /// behind in the host (the GDT and IDT limits, a host NMI it took).
    fn enter(&mut self) -> Entered {
        let (gdt, idt) = (sgdt(), sidt());
        let mut host = SwitchedMsrs::default();
        for ((number, saved), guest) in SWITCHED_MSRS.into_iter().zip(&mut host.0).zip(self.msrs.0) {
            *saved = read_msr(number);
            if *saved != guest {
                // SAFETY: the guest's value of a SYSCALL MSR or kernel GS
                // base; the kernel makes no system call and no SWAPGS
                // before the host's value is back (below).
                unsafe { Msr::new(number).write(guest) };
            }
        }
        // SAFETY: CR2 only reports page-fault addresses; the kernel reads
        // it only in its page-fault handler, right at the fault.
        unsafe { asm!("mov cr2, {}", in(reg) self.cr2, options(nomem, nostack)) };
        // SAFETY: the VMCS is current and its host state is the kernel's
        // (`write_host_state`); the world switch saves and restores every
        // callee-saved register, and the exit lands on its own stack.
        let status = unsafe { world_switch(&mut self.registers, u64::from(self.launched)) };
        // SAFETY: reading CR2 has no side effects.
        unsafe { asm!("mov {}, cr2", out(reg) self.cr2, options(nomem, nostack)) };
        for ((number, saved), guest) in SWITCHED_MSRS.into_iter().zip(host.0).zip(&mut self.msrs.0) {
            *guest = read_msr(number);
            if *guest != saved {
                // SAFETY: the host's own value, read above.
                unsafe { Msr::new(number).write(saved) };
            }
        }
        // SAFETY: the descriptor tables the kernel had before the entry; a
        // VM exit leaves their limits at 0xffff.
        unsafe {
            lgdt(&gdt);
            lidt(&idt);
        }
        match status {
            0 => {}
            1 => return Entered::Refused(0),
            _ => return Entered::Refused(read(fields::INSTRUCTION_ERROR)),
        }
        let reason = read(fields::EXIT_REASON) as u32;
        if reason & reason::ENTRY_FAILURE == 0 {
            self.launched = true;
        }
        if reason & 0xffff == reason::EXCEPTION_OR_NMI
            && (read(fields::EXIT_INTERRUPTION_INFO) as u32 >> 8) & 0b111 == interruption::NMI
        {
            // A host NMI: VMX consumed it, so the kernel's handler runs
            // now, as it would have without the guest.
            // SAFETY: vector 2 is the kernel's NMI gate in its IDT.
            unsafe { asm!("int 2", options(nomem, nostack)) };
        }
        Entered::Exited(reason)
    }

    /// Emulates a `MOV` to CR0 or CR4 that exited because it touched a
    /// bit VMX owns; false for any other control-register access.
    fn emulate_mov_to_cr(&mut self) -> bool {
        let configuration = self.configuration;
        let qualification = read(fields::EXIT_QUALIFICATION);
        let (number, kind, register) = (
            qualification & 0xf,
            (qualification >> 4) & 0b11,
            (qualification >> 8) & 0xf,
        );
        if kind != 0 || (number != 0 && number != 4) {
            return false;
        }
        let value = match register {
            0 => self.registers.rax,
            1 => self.registers.rcx,
            2 => self.registers.rdx,
            3 => self.registers.rbx,
            4 => read(fields::GUEST_RSP),
            5 => self.registers.rbp,
            6 => self.registers.rsi,
            7 => self.registers.rdi,
            8 => self.registers.r8,
            9 => self.registers.r9,
            10 => self.registers.r10,
            11 => self.registers.r11,
            12 => self.registers.r12,
            13 => self.registers.r13,
            14 => self.registers.r14,
            _ => self.registers.r15,
        };
        // Bits the CPU cannot set are reserved for the guest, and so is
        // VMXE: the guest has no VMX. The combinations MOV to CR0 refuses
        // are refused here too.
        let allowed = if number == 0 {
            configuration.cr0_fixed1
        } else {
            configuration.cr4_fixed1 & !CR4_VMXE
        };
        let paging = number == 0 && value & CR0_PAGING != 0;
        let invalid_cr0 = (paging && value & CR0_PROTECTED == 0)
            || (number == 0 && value & CR0_NOT_WRITE_THROUGH != 0 && value & CR0_CACHE_DISABLE == 0)
            || (paging
                && read(fields::GUEST_EFER) & EFER_LONG_MODE_ENABLE != 0
                && read(fields::GUEST_CR4) & CR4_PAE == 0);
        if value & !allowed != 0 || invalid_cr0 {
            let general_protection = 13 | (interruption::HARDWARE_EXCEPTION << 8) | interruption::ERROR_CODE;
            write(
                fields::ENTRY_INTERRUPTION_INFO,
                u64::from(general_protection | interruption::VALID),
            );
            write(fields::ENTRY_EXCEPTION_ERROR_CODE, 0);
            return true;
        }
        if number == 0 {
            self.write_cr0(value);
            let efer = read(fields::GUEST_EFER);
            self.write_efer(efer, value);
        } else {
            write(fields::CR4_READ_SHADOW, value);
            write(
                fields::GUEST_CR4,
                (value | configuration.cr4_fixed0) & configuration.cr4_fixed1,
            );
        }
        if let Some(kind) = configuration.invvpid_type {
            // The instruction would have flushed the guest's TLB.
            invalidate_vpid(kind, self.vpid);
        }
        let length = read(fields::EXIT_INSTRUCTION_LENGTH);
        write(fields::GUEST_RIP, read(fields::GUEST_RIP).wrapping_add(length));
        let blocking =
            read(fields::GUEST_INTERRUPTIBILITY) & !u64::from(interruptibility::STI | interruptibility::MOV_SS);
        write(fields::GUEST_INTERRUPTIBILITY, blocking);
        true
    }

    /// Decodes the exit with `full_reason` (as the VMCS reports it).
    fn exit(&self, full_reason: u32) -> Exit {
        if full_reason & reason::ENTRY_FAILURE != 0 {
            return exit(
                ExitKind::InvalidState,
                0,
                u64::from(full_reason),
                read(fields::EXIT_QUALIFICATION),
                0,
            );
        }
        let qualification = read(fields::EXIT_QUALIFICATION);
        let length = read(fields::EXIT_INSTRUCTION_LENGTH) as u32;
        let instruction_exit = |number: u64| exit(ExitKind::Instruction, length, number, 0, 0);
        match full_reason & 0xffff {
            reason::IO_INSTRUCTION => {
                let size = (qualification & 0b111) + 1;
                let mut bits = size;
                if qualification & (1 << 3) == 0 {
                    bits |= io::WRITE;
                }
                if qualification & (1 << 4) != 0 {
                    bits |= io::STRING;
                }
                if qualification & (1 << 5) != 0 {
                    bits |= io::REPEAT;
                }
                let mask = match size {
                    1 => 0xff,
                    2 => 0xffff,
                    _ => 0xffff_ffff,
                };
                let value = self.registers.rax & mask;
                exit(ExitKind::PortIo, length, (qualification >> 16) & 0xffff, bits, value)
            }
            reason::EPT_VIOLATION => {
                self.restore_nmi_blocking(qualification & (1 << 12) != 0);
                let mut bits = access::READ;
                if qualification & (1 << 1) != 0 {
                    bits = access::WRITE;
                }
                if qualification & (1 << 2) != 0 {
                    bits = access::EXECUTE;
                }
                // Bits 3..=5: what the translation allows; any means an
                // entry exists.
                if qualification & (0b111 << 3) != 0 {
                    bits |= access::MAPPED;
                }
                exit(
                    ExitKind::NestedPageFault,
                    0,
                    read(fields::GUEST_PHYSICAL_ADDRESS),
                    bits,
                    0,
                )
            }
            reason::EPT_MISCONFIGURATION => exit(
                ExitKind::NestedPageFault,
                0,
                read(fields::GUEST_PHYSICAL_ADDRESS),
                access::READ | access::MAPPED,
                0,
            ),
            reason::CPUID => exit(ExitKind::Cpuid, length, 0, 0, 0),
            reason::RDMSR | reason::WRMSR => {
                let write = u64::from(full_reason & 0xffff == reason::WRMSR);
                exit(ExitKind::Msr, length, self.registers.rcx & 0xffff_ffff, write, 0)
            }
            reason::HLT => exit(ExitKind::Hlt, length, 0, 0, 0),
            reason::INTERRUPT_WINDOW => exit(ExitKind::InterruptWindow, 0, 0, 0, 0),
            reason::VMCALL => exit(ExitKind::Hypercall, length, 0, 0, 0),
            reason::TRIPLE_FAULT => exit(ExitKind::Shutdown, 0, 0, 0, 0),
            reason::EXCEPTION_OR_NMI => {
                let information = read(fields::EXIT_INTERRUPTION_INFO) as u32;
                if (information >> 8) & 0b111 == interruption::NMI {
                    return exit(ExitKind::Preempted, 0, 0, 0, 0);
                }
                self.restore_nmi_blocking(information & (1 << 12) != 0);
                let error_code = if information & interruption::ERROR_CODE != 0 {
                    read(fields::EXIT_INTERRUPTION_ERROR_CODE)
                } else {
                    0
                };
                exit(
                    ExitKind::Exception,
                    0,
                    u64::from(information & 0xff),
                    error_code,
                    qualification,
                )
            }
            reason::EXTERNAL_INTERRUPT | reason::INIT | reason::STARTUP_IPI | reason::IO_SMI | reason::OTHER_SMI => {
                exit(ExitKind::Preempted, 0, 0, 0, 0)
            }
            reason::INVD => instruction_exit(instruction::INVD),
            reason::WBINVD => instruction_exit(instruction::WBINVD),
            reason::XSETBV => instruction_exit(instruction::XSETBV),
            reason::MONITOR => instruction_exit(instruction::MONITOR),
            reason::MWAIT => instruction_exit(instruction::MWAIT),
            reason::RDPMC => instruction_exit(instruction::RDPMC),
            reason::GETSEC | reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID | reason::VMFUNC => {
                instruction_exit(instruction::VIRTUALISATION)
            }
            _ => exit(ExitKind::InvalidState, 0, u64::from(full_reason), qualification, 0),
        }
    }

    /// An IRET that unblocked NMIs faulted and exited: with virtual NMIs
    /// the guest must be blocked again before it re-runs the IRET.
    fn restore_nmi_blocking(&self, unblocked_by_iret: bool) {
        let vectoring = read(fields::IDT_VECTORING_INFO) as u32;
        if unblocked_by_iret && vectoring & interruption::VALID == 0 && self.configuration.pin & pin::VIRTUAL_NMIS != 0
        {
            let blocking = read(fields::GUEST_INTERRUPTIBILITY) | u64::from(interruptibility::NMI);
            write(fields::GUEST_INTERRUPTIBILITY, blocking);
        }
    }
}

impl Drop for Vmcs {
    fn drop(&mut self) {
        let address = self.address();
        // SAFETY: VMCLEAR writes back whatever the CPU cached of this VMCS
        // and makes it inactive, so the CPU never touches the frame again
        // once it is freed.
        unsafe { asm!("vmclear [{}]", in(reg) &address, options(nostack)) };
        let _ = CURRENT.compare_exchange(address, 0, Ordering::Relaxed, Ordering::Relaxed);
        if let Some(owner) = owner(self.vpid) {
            let _ = owner.compare_exchange(address, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        frames::free(self.page);
    }
}

/// How a VM entry ended.
enum Entered {
    /// The guest ran (or the entry failed on guest state) and exited with
    /// this exit reason.
    Exited(u32),
    /// VMLAUNCH or VMRESUME refused: the VM-instruction error (0 when no
    /// VMCS was current).
    Refused(u64),
}

fn exit(kind: ExitKind, length: u32, a: u64, b: u64, c: u64) -> Exit {
    Exit {
        kind: kind as u32,
        instruction_length: length,
        a,
        b,
        c,
    }
}

/// CR0 bits the host owns: those VMX forces to 1 (but PE and PG, which
/// unrestricted guest frees) or to 0.
fn cr0_owned(configuration: &Configuration) -> u64 {
    (configuration.cr0_fixed0 & !(CR0_PROTECTED | CR0_PAGING)) | (!configuration.cr0_fixed1 & 0xffff_ffff)
}

/// CR4 bits the host owns: those VMX forces to 1 (VMXE) or to 0.
fn cr4_owned(configuration: &Configuration) -> u64 {
    configuration.cr4_fixed0 | (!configuration.cr4_fixed1 & 0xffff_ffff)
}

/// The host state a VM exit loads: the kernel as it is now, returning
/// into the world switch (which sets RSP and RIP itself).
fn write_host_state() {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack)) };
    write(fields::HOST_CR0, x86_64::registers::control::Cr0::read_raw());
    write(fields::HOST_CR3, cr3);
    write(fields::HOST_CR4, x86_64::registers::control::Cr4::read_raw());
    let code: u16;
    let stack: u16;
    let task: u16;
    // SAFETY: reading segment selectors has no side effects.
    unsafe {
        asm!("mov {:x}, cs", out(reg) code, options(nomem, nostack));
        asm!("mov {:x}, ss", out(reg) stack, options(nomem, nostack));
        asm!("str {:x}", out(reg) task, options(nomem, nostack));
    }
    write(fields::HOST_CS_SELECTOR, u64::from(code));
    write(fields::HOST_SS_SELECTOR, u64::from(stack));
    // The kernel runs with null data segments; FS and GS matter only by
    // their bases.
    for field in [
        fields::HOST_DS_SELECTOR,
        fields::HOST_ES_SELECTOR,
        fields::HOST_FS_SELECTOR,
        fields::HOST_GS_SELECTOR,
    ] {
        write(field, 0);
    }
    write(fields::HOST_TR_SELECTOR, u64::from(task));
    let gdt = sgdt();
    write(fields::HOST_GDTR_BASE, gdt.base.as_u64());
    write(fields::HOST_IDTR_BASE, sidt().base.as_u64());
    write(fields::HOST_TR_BASE, task_base(gdt.base.as_u64(), task));
    write(fields::HOST_FS_BASE, read_msr(msr::FS_BASE));
    write(fields::HOST_GS_BASE, read_msr(msr::GS_BASE));
    write(fields::HOST_SYSENTER_CS, read_msr(msr::SYSENTER_CS));
    write(fields::HOST_SYSENTER_ESP, read_msr(msr::SYSENTER_ESP));
    write(fields::HOST_SYSENTER_EIP, read_msr(msr::SYSENTER_EIP));
    write(fields::HOST_EFER, read_msr(msr::EFER));
    write(fields::HOST_PAT, read_msr(msr::PAT));
}

/// The base of the TSS whose selector is `task`, from its 16-byte
/// descriptor in the GDT at `gdt`.
fn task_base(gdt: u64, task: u16) -> u64 {
    let descriptor = (gdt + u64::from(task & !0x7)) as *const u64;
    // SAFETY: the selector is the loaded TR's, so its descriptor (two
    // quadwords) lies inside the kernel's GDT, which is mapped for ever.
    let (low, high) = unsafe { (descriptor.read(), descriptor.add(1).read()) };
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32)
}

/// VMX access rights for ABI segment `attributes` (the VMCB layout): AVL,
/// L, D/B and G move up four bits, and a segment that is not present is
/// unusable.
fn access_rights(attributes: u16) -> u64 {
    let attributes = u64::from(attributes);
    let mut rights = (attributes & 0xff) | ((attributes & 0xf00) << 4);
    if attributes & u64::from(attribute::PRESENT) == 0 {
        rights |= 1 << 16;
    }
    rights
}

/// ABI segment attributes for VMX access `rights`; an unusable segment
/// reads as not present.
fn attributes(rights: u64) -> u16 {
    let mut attributes = ((rights & 0xff) | ((rights >> 4) & 0xf00)) as u16;
    if rights & (1 << 16) != 0 {
        attributes &= !attribute::PRESENT;
    }
    attributes
}

/// The VM-entry interruption information and error code for `event`, or
/// `None` for nothing to inject.
fn injection(event: Event) -> Option<(u32, u32)> {
    let (kind, vector) = match EventKind::from_number(event.kind)? {
        EventKind::None => return None,
        EventKind::Interrupt => (interruption::EXTERNAL_INTERRUPT, event.vector & 0xff),
        EventKind::Nmi => (interruption::NMI, 2),
        EventKind::Exception => (interruption::HARDWARE_EXCEPTION, event.vector & 0xff),
    };
    let mut information = vector | (kind << 8) | interruption::VALID;
    if kind == interruption::HARDWARE_EXCEPTION && event.has_error_code != 0 {
        information |= interruption::ERROR_CODE;
    }
    Some((information, event.error_code))
}

/// The event an IDT-vectoring information word describes; `None` for
/// software interrupts and exceptions (INT n, INT3, INTO, INT1), which
/// restart with their instruction.
fn event_from(information: u32, error_code: u32) -> Option<Event> {
    let vector = (information & 0xff) as u8;
    match (information >> 8) & 0b111 {
        interruption::EXTERNAL_INTERRUPT => Some(Event::interrupt(vector)),
        interruption::NMI => Some(Event {
            kind: EventKind::Nmi as u32,
            vector: 2,
            has_error_code: 0,
            error_code: 0,
        }),
        interruption::HARDWARE_EXCEPTION => Some(Event::exception(
            vector,
            (information & interruption::ERROR_CODE != 0).then_some(error_code),
        )),
        _ => None,
    }
}

/// Saves the host's callee-saved registers, points the VMCS's host RSP
/// and RIP at this frame, loads the guest's general registers from
/// `registers` (all but `rsp`, which is in the VMCS), and enters the guest
/// with VMLAUNCH (`launched` = 0) or VMRESUME. On the VM exit it stores
/// them back and returns 0; if the entry instruction fails it returns 1
/// (VMfailInvalid) or 2 (VMfailValid).
///
/// # Safety
/// A valid VMCS is current and holds the kernel's host state; interrupts
/// are off.
#[unsafe(naked)]
unsafe extern "sysv64" fn world_switch(registers: *mut Registers, launched: u64) -> u64 {
    // `Registers` offsets: rax 0x00, rbx 0x08, rcx 0x10, rdx 0x18, rsi
    // 0x20, rdi 0x28, rbp 0x30, rsp 0x38, r8..r15 0x40..0x78.
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdi",
        "mov rax, {host_rsp}",
        "vmwrite rax, rsp",
        "lea rbx, [rip + 2f]",
        "mov rax, {host_rip}",
        "vmwrite rax, rbx",
        "cmp rsi, 0",
        "mov rax, [rdi + 0x00]",
        load_guest_registers!(),
        "mov rdi, [rdi + 0x28]",
        "jne 3f",
        "vmlaunch",
        "jmp 4f",
        "3:",
        "vmresume",
        // Only a failed entry gets here: CF set is VMfailInvalid, ZF set
        // VMfailValid.
        "4:",
        "mov eax, 1",
        "jc 5f",
        "mov eax, 2",
        "5:",
        "pop rdi",
        "jmp 6f",
        // The VM exit: RSP is as it was at the entry, with `registers` on top.
        "2:",
        "push rdi",
        "mov rdi, [rsp + 8]",
        "mov [rdi + 0x00], rax",
        store_guest_registers!(),
        "pop rax",
        "mov [rdi + 0x28], rax",
        "pop rdi",
        "xor eax, eax",
        "6:",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
        host_rsp = const fields::HOST_RSP,
        host_rip = const fields::HOST_RIP,
    );
}
