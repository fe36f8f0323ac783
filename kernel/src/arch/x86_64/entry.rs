//! Every way into and out of the kernel: the interrupt and exception stubs,
//! the SYSCALL entry, and the return to user mode.
//!
//! The kernel keeps one stack per CPU and saves a user thread's registers in
//! the thread itself (as seL4 does): TSS.RSP0 and the per-CPU `context_top`
//! both point just past the current thread's [`TrapFrame`], so the CPU's own
//! pushes on an interrupt and the stubs' pushes after them fill that frame
//! in place. The stub then moves to the per-CPU kernel stack and calls Rust.
//! Nothing is left on the kernel stack between entries: the way out is
//! always [`return_to_user`], which restores whichever thread is current.

use super::gdt::{USER_CODE, USER_DATA};
use super::percpu::PerCpu;
use core::arch::global_asm;
use core::mem::offset_of;

/// The vector number recorded in a frame saved by the SYSCALL entry.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// A user thread's registers as saved on kernel entry, in push order
/// reversed. The last five fields are the hardware interrupt frame.
#[derive(Clone, Debug, Default)]
#[repr(C, align(16))]
#[allow(missing_docs)] // register names
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Interrupt vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// The exception's error code, or 0.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 22 * 8 && size_of::<TrapFrame>() % 16 == 0);

impl TrapFrame {
    /// The message registers (`abi` register convention), in word order.
    pub fn message_words(&self) -> [u64; 8] {
        [
            self.rdx, self.r10, self.r8, self.r9, self.r12, self.r13, self.r14, self.r15,
        ]
    }

    /// Sets the message registers from `words` (at most eight; the rest
    /// keep their values).
    pub fn set_message_words(&mut self, words: &[u64]) {
        let registers = [
            &mut self.rdx,
            &mut self.r10,
            &mut self.r8,
            &mut self.r9,
            &mut self.r12,
            &mut self.r13,
            &mut self.r14,
            &mut self.r15,
        ];
        for (register, word) in registers.into_iter().zip(words) {
            *register = *word;
        }
    }
}

macro_rules! push_registers {
    () => {
        "push %r15; push %r14; push %r13; push %r12; push %r11; push %r10; push %r9; push %r8;
         push %rbp; push %rdi; push %rsi; push %rdx; push %rcx; push %rbx; push %rax"
    };
}

macro_rules! pop_registers {
    () => {
        "pop %rax; pop %rbx; pop %rcx; pop %rdx; pop %rsi; pop %rdi; pop %rbp;
         pop %r8; pop %r9; pop %r10; pop %r11; pop %r12; pop %r13; pop %r14; pop %r15"
    };
}

// Stubs: one per vector, 16 bytes apart from `trap_vector_stubs`, each
// pushing an error code where the CPU does not, then the vector number.
global_asm!(
    ".pushsection .text.trap_entry, \"ax\"",
    ".p2align 4",
    ".global trap_vector_stubs",
    "trap_vector_stubs:",
    ".set vector, 0",
    ".rept 256",
    ".p2align 4",
    ".if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)",
    ".else",
    "pushq $0",
    ".endif",
    "pushq $vector",
    "jmp trap_common",
    ".set vector, vector + 1",
    ".endr",
    "",
    "trap_common:",
    // Interrupt gates clear IF but not DF, and Rust code assumes DF is
    // clear: a thread interrupted inside a backward copy (memmove's
    // `std; rep movs`) would have the kernel's own copies and fills run
    // backwards, over whatever lies below their buffers. Its RFLAGS, DF
    // included, is already saved in the frame; SYSCALL clears DF through
    // SFMASK.
    "cld",
    // Came from ring 3? (CS of the interrupted context sits above the vector,
    // the error code and RIP.)
    "testb $3, 24(%rsp)",
    "jz 1f",
    "swapgs",
    push_registers!(),
    "mov %rsp, %rdi",
    "mov %gs:{kernel_stack_top}, %rsp",
    "call {from_user}",
    "ud2",
    "1:",
    push_registers!(),
    "mov %rsp, %rdi",
    "call {from_kernel}",
    pop_registers!(),
    "add $16, %rsp",
    "iretq",
    "",
    ".global syscall_entry",
    "syscall_entry:",
    "swapgs",
    "mov %rsp, %gs:{user_rsp}",
    "mov %gs:{context_top}, %rsp",
    "pushq ${user_data}",
    "pushq %gs:{user_rsp}",
    "pushq %r11",
    "pushq ${user_code}",
    "pushq %rcx",
    "pushq $0",
    "pushq ${syscall_vector}",
    push_registers!(),
    "mov %gs:{kernel_stack_top}, %rsp",
    "call {syscall}",
    "ud2",
    "",
    ".global return_to_user",
    "return_to_user:",
    "mov %gs:{context_top}, %rsp",
    "sub ${frame_size}, %rsp",
    pop_registers!(),
    "add $16, %rsp",
    "swapgs",
    "iretq",
    ".popsection",
    kernel_stack_top = const offset_of!(PerCpu, kernel_stack_top),
    context_top = const offset_of!(PerCpu, context_top),
    user_rsp = const offset_of!(PerCpu, user_rsp),
    user_data = const USER_DATA,
    user_code = const USER_CODE,
    syscall_vector = const SYSCALL_VECTOR,
    frame_size = const size_of::<TrapFrame>(),
    from_user = sym super::trap::trap_from_user,
    from_kernel = sym super::trap::trap_from_kernel,
    syscall = sym super::trap::syscall_from_user,
    options(att_syntax)
);

unsafe extern "C" {
    /// The first of 256 interrupt stubs, 16 bytes apart.
    pub safe static trap_vector_stubs: [u8; 256 * 16];
    /// The SYSCALL entry point, for `LSTAR`; never called from Rust.
    pub fn syscall_entry();
    /// Restores the current thread's saved registers and enters ring 3.
    ///
    /// # Safety
    /// The per-CPU `context_top` must point just past the current thread's
    /// [`TrapFrame`], whose CS and SS are user selectors and whose RIP and
    /// RSP are user addresses.
    pub fn return_to_user() -> !;
}
