//! VT-x numbers: the VMCS field encodings, control bits, capability MSRs
//! and exit reasons the backend uses (Intel SDM volume 3, chapters 24–27
//! and appendices A–C).
//!
//! An encoding is `width << 13 | kind << 10 | index << 1`: width 0 is
//! 16-bit, 1 is 64-bit, 2 is 32-bit and 3 natural (64-bit here); kind 0
//! is a control, 1 read-only exit information, 2 guest state and 3 host
//! state.

/// The capability and configuration MSRs.
pub mod msr {
    pub const FEATURE_CONTROL: u32 = 0x3a;
    pub const BASIC: u32 = 0x480;
    pub const PROCESSOR_CONTROLS: u32 = 0x482;
    pub const CR0_FIXED0: u32 = 0x486;
    pub const CR0_FIXED1: u32 = 0x487;
    pub const CR4_FIXED0: u32 = 0x488;
    pub const CR4_FIXED1: u32 = 0x489;
    pub const SECONDARY_CONTROLS: u32 = 0x48b;
    pub const EPT_VPID_CAPABILITIES: u32 = 0x48c;
    pub const TRUE_PIN_CONTROLS: u32 = 0x48d;
    pub const TRUE_PROCESSOR_CONTROLS: u32 = 0x48e;
    pub const TRUE_EXIT_CONTROLS: u32 = 0x48f;
    pub const TRUE_ENTRY_CONTROLS: u32 = 0x490;
    /// The non-TRUE control MSRs, for CPUs without the TRUE ones.
    pub const PIN_CONTROLS: u32 = 0x481;
    pub const EXIT_CONTROLS: u32 = 0x483;
    pub const ENTRY_CONTROLS: u32 = 0x484;

    /// FEATURE_CONTROL: locked, and VMX allowed outside SMX.
    pub const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
    pub const FEATURE_CONTROL_VMX: u64 = 1 << 2;
    /// BASIC: the TRUE control MSRs exist.
    pub const BASIC_TRUE_CONTROLS: u64 = 1 << 55;

    /// EPT_VPID_CAPABILITIES bits.
    pub const EPT_WALK_4: u64 = 1 << 6;
    pub const EPT_WRITE_BACK: u64 = 1 << 14;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVEPT_ALL: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE: u64 = 1 << 41;
    pub const INVVPID_ALL: u64 = 1 << 42;

    /// MSRs the world switch exchanges by hand (VMX does not).
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// Host state read at set-up or per entry.
    pub const EFER: u32 = 0xc000_0080;
    pub const PAT: u32 = 0x277;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
}

/// Pin-based execution controls.
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
}

/// Primary processor-based execution controls.
pub mod processor {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based execution controls.
pub mod secondary {
    pub const EPT: u32 = 1 << 1;
    pub const RDTSCP: u32 = 1 << 3;
    pub const VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const INVPCID: u32 = 1 << 12;
}

/// VM-exit controls.
pub mod exit_control {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_64_BIT: u32 = 1 << 9;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls.
pub mod entry_control {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const LONG_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// 16-bit fields.
pub const VPID: u32 = 0x0000;
pub const GUEST_ES_SELECTOR: u32 = 0x0800;
pub const HOST_ES_SELECTOR: u32 = 0x0c00;
pub const HOST_CS_SELECTOR: u32 = 0x0c02;
pub const HOST_SS_SELECTOR: u32 = 0x0c04;
pub const HOST_DS_SELECTOR: u32 = 0x0c06;
pub const HOST_FS_SELECTOR: u32 = 0x0c08;
pub const HOST_GS_SELECTOR: u32 = 0x0c0a;
pub const HOST_TR_SELECTOR: u32 = 0x0c0c;

/// 64-bit fields.
pub const MSR_BITMAPS: u32 = 0x2004;
pub const EPT_POINTER: u32 = 0x201a;
pub const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
pub const VMCS_LINK_POINTER: u32 = 0x2800;
pub const GUEST_DEBUGCTL: u32 = 0x2802;
pub const GUEST_PAT: u32 = 0x2804;
pub const GUEST_EFER: u32 = 0x2806;
pub const HOST_PAT: u32 = 0x2c00;
pub const HOST_EFER: u32 = 0x2c02;

/// 32-bit fields.
pub const PIN_CONTROLS: u32 = 0x4000;
pub const PROCESSOR_CONTROLS: u32 = 0x4002;
pub const EXCEPTION_BITMAP: u32 = 0x4004;
pub const EXIT_CONTROLS: u32 = 0x400c;
pub const ENTRY_CONTROLS: u32 = 0x4012;
pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
pub const ENTRY_EXCEPTION_ERROR_CODE: u32 = 0x4018;
pub const SECONDARY_CONTROLS: u32 = 0x401e;
pub const INSTRUCTION_ERROR: u32 = 0x4400;
pub const EXIT_REASON: u32 = 0x4402;
pub const EXIT_INTERRUPTION_INFO: u32 = 0x4404;
pub const EXIT_INTERRUPTION_ERROR_CODE: u32 = 0x4406;
pub const IDT_VECTORING_INFO: u32 = 0x4408;
pub const IDT_VECTORING_ERROR_CODE: u32 = 0x440a;
pub const EXIT_INSTRUCTION_LENGTH: u32 = 0x440c;
pub const GUEST_ES_LIMIT: u32 = 0x4800;
pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
pub const GUEST_ES_ACCESS_RIGHTS: u32 = 0x4814;
pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
pub const GUEST_ACTIVITY_STATE: u32 = 0x4826;
pub const GUEST_SYSENTER_CS: u32 = 0x482a;
pub const HOST_SYSENTER_CS: u32 = 0x4c00;

/// Natural-width fields.
pub const CR0_GUEST_HOST_MASK: u32 = 0x6000;
pub const CR4_GUEST_HOST_MASK: u32 = 0x6002;
pub const CR0_READ_SHADOW: u32 = 0x6004;
pub const CR4_READ_SHADOW: u32 = 0x6006;
pub const EXIT_QUALIFICATION: u32 = 0x6400;
pub const GUEST_CR0: u32 = 0x6800;
pub const GUEST_CR3: u32 = 0x6802;
pub const GUEST_CR4: u32 = 0x6804;
pub const GUEST_ES_BASE: u32 = 0x6806;
pub const GUEST_GDTR_BASE: u32 = 0x6816;
pub const GUEST_IDTR_BASE: u32 = 0x6818;
pub const GUEST_DR7: u32 = 0x681a;
pub const GUEST_RSP: u32 = 0x681c;
pub const GUEST_RIP: u32 = 0x681e;
pub const GUEST_RFLAGS: u32 = 0x6820;
pub const GUEST_PENDING_DEBUG_EXCEPTIONS: u32 = 0x6822;
pub const GUEST_SYSENTER_ESP: u32 = 0x6824;
pub const GUEST_SYSENTER_EIP: u32 = 0x6826;
pub const HOST_CR0: u32 = 0x6c00;
pub const HOST_CR3: u32 = 0x6c02;
pub const HOST_CR4: u32 = 0x6c04;
pub const HOST_FS_BASE: u32 = 0x6c06;
pub const HOST_GS_BASE: u32 = 0x6c08;
pub const HOST_TR_BASE: u32 = 0x6c0a;
pub const HOST_GDTR_BASE: u32 = 0x6c0c;
pub const HOST_IDTR_BASE: u32 = 0x6c0e;
pub const HOST_SYSENTER_ESP: u32 = 0x6c10;
pub const HOST_SYSENTER_EIP: u32 = 0x6c12;
pub const HOST_RSP: u32 = 0x6c14;
pub const HOST_RIP: u32 = 0x6c16;

/// The guest segment fields are laid out in the order ES, CS, SS, DS, FS,
/// GS, LDTR, TR, two encodings apart: register `n`'s field is the ES
/// field plus `2 * n`.
pub const SEGMENT_STRIDE: u32 = 2;

/// Basic exit reasons (bits 15:0 of the exit reason).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u32 = 0;
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    pub const TRIPLE_FAULT: u32 = 2;
    pub const INIT: u32 = 3;
    pub const STARTUP_IPI: u32 = 4;
    pub const IO_SMI: u32 = 5;
    pub const OTHER_SMI: u32 = 6;
    pub const INTERRUPT_WINDOW: u32 = 7;
    pub const CPUID: u32 = 10;
    pub const GETSEC: u32 = 11;
    pub const HLT: u32 = 12;
    pub const INVD: u32 = 13;
    pub const RDPMC: u32 = 15;
    pub const VMCALL: u32 = 18;
    /// VMCLEAR, VMLAUNCH, VMPTRLD, VMPTRST, VMREAD, VMRESUME, VMWRITE,
    /// VMXOFF, VMXON: 19..=27.
    pub const VMCLEAR: u32 = 19;
    pub const VMXON: u32 = 27;
    pub const CONTROL_REGISTER_ACCESS: u32 = 28;
    pub const IO_INSTRUCTION: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const MWAIT: u32 = 36;
    pub const MONITOR: u32 = 39;
    pub const EPT_VIOLATION: u32 = 48;
    pub const EPT_MISCONFIGURATION: u32 = 49;
    pub const INVEPT: u32 = 50;
    pub const INVVPID: u32 = 53;
    pub const WBINVD: u32 = 54;
    pub const XSETBV: u32 = 55;
    pub const VMFUNC: u32 = 59;
    /// Bit 31 of the exit reason: the VM entry itself failed.
    pub const ENTRY_FAILURE: u32 = 1 << 31;
}

/// Interruption-information fields (VM-entry injection, exit, IDT
/// vectoring): vector in bits 7:0, type in 10:8, error code valid in 11,
/// valid in 31.
pub mod interruption {
    pub const VALID: u32 = 1 << 31;
    pub const ERROR_CODE: u32 = 1 << 11;
    pub const EXTERNAL_INTERRUPT: u32 = 0;
    pub const NMI: u32 = 2;
    pub const HARDWARE_EXCEPTION: u32 = 3;
}

/// Guest interruptibility-state bits.
pub mod interruptibility {
    pub const STI: u32 = 1 << 0;
    pub const MOV_SS: u32 = 1 << 1;
    pub const NMI: u32 = 1 << 3;
}
