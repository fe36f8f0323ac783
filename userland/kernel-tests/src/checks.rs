//! The checks, one function per area of the ABI. Each prints `PASS name`
//! or `FAIL name: why`; the run ends with `kernel-tests: N passed, M failed`.

use crate::roles::{
    CHILD_ENDPOINT, CHILD_OWN_ADDRESS_SPACE, CHILD_OWN_THREAD, LABEL_IDENTIFY, LABEL_QUIT, LABEL_SUM, Role, UNMAPPED,
};
use abi::init::slot;
use abi::{Error, ErrorKind, ObjectType, Rights, Syscall, fault};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use runtime::capability::{
    self, AddressSpace, CSpace, Destination, DeviceMemoryControl, Endpoint, Frame, IoPorts, IrqControl, Memory,
    Notification, PortControl, Slot, Slots, Thread,
};
use runtime::ipc::{Buffer, Message};
use runtime::println;
use runtime::process::{Process, Spawn};
use runtime::syscall::{call, invoke_number};
use runtime::thread::ThreadSpawn;

type Check = Result<(), String>;

static SLOTS: Slots = Slots::new(slot::FIRST_FREE, abi::init::CSPACE_SLOTS);
const MEMORY: Memory = Memory(Slot(slot::MEMORY));
const OWN_SPACE: AddressSpace = AddressSpace(Slot(slot::ADDRESS_SPACE));
const OWN_CSPACE: CSpace = CSpace(Slot(slot::CSPACE));
const OWN_THREAD: Thread = Thread(Slot(slot::THREAD));

fn fresh() -> Slot {
    SLOTS.allocate().expect("kernel-tests ran out of slots")
}

/// Succeeds if `result` is the error `kind`, about `argument` if given.
#[track_caller]
fn expect_error<T>(result: Result<T, Error>, kind: ErrorKind, argument: Option<u8>) -> Check {
    let line = core::panic::Location::caller().line();
    match result {
        Ok(_) => Err(format!("line {line}: expected {kind:?}, got success")),
        Err(error) if error.kind == kind && (argument.is_none() || error.argument == argument) => Ok(()),
        Err(error) => Err(format!(
            "line {line}: expected {kind:?} (argument {argument:?}), got {error:?}"
        )),
    }
}

fn ok<T>(result: Result<T, Error>, what: &str) -> Result<T, String> {
    result.map_err(|error| format!("{what}: {error:?}"))
}

fn ensure(condition: bool, what: &str) -> Check {
    if condition { Ok(()) } else { Err(String::from(what)) }
}

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, name: &str, body: fn() -> Check) {
        match body() {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }
}

/// Runs every check; returns how many failed.
pub fn run_all() -> u32 {
    let mut tally = Tally { passed: 0, failed: 0 };
    tally.check("debug_write rejects bad pointers and lengths", debug_write_errors);
    tally.check("unknown syscall numbers are refused", unknown_syscalls);
    tally.check("the clock advances", clock);
    tally.check("sleep lets lower priorities run and wakes on time", sleep);
    tally.check("initial capabilities have their documented types", initial_capabilities);
    tally.check("identify names empty and out-of-range slots", identify_errors);
    tally.check("create makes every object type", create_objects);
    tally.check("create checks pool, type, slot and size", create_errors);
    tally.check("pools are quotas and revoke refunds them", pool_quota);
    tally.check("copy, mint, move and delete", capability_operations);
    tally.check(
        "deleting a CSpace of 600 mapped frames, in steps, frees them all",
        large_cspace_delete,
    );
    tally.check("capability operations refuse bad slots", capability_errors);
    tally.check(
        "revoke deletes derived capabilities in other CSpaces",
        revoke_across_cspaces,
    );
    tally.check("map shares frames; unmap removes them", map_and_unmap);
    tally.check("frames for DMA are physically consecutive", contiguous_frames);
    tally.check("map checks address, rights and overlap", map_errors);
    tally.check("notifications: signal, poll, wait", notifications);
    tally.check("notification rights are enforced", notification_errors);
    tally.check("thread registers, priority and state checks", thread_control);
    tally.check("each thread keeps its own SSE registers", sse_registers_per_thread);
    tally.check("IPC between threads: call, reply, badges", ipc_same_address_space);
    tally.check("non-blocking IPC and reply without a call", ipc_non_blocking);
    tally.check("a blocking send waits for its receiver", ipc_blocking_send);
    tally.check(
        "IPC across address spaces: words, long messages, capabilities",
        ipc_across_address_spaces,
    );
    tally.check(
        "a blocked caller wakes with PeerDied when its endpoint dies",
        peer_died_on_endpoint,
    );
    tally.check("a reply to a caller that died fails with PeerDied", peer_died_on_reply);
    tally.check("faults are IPC: a user-space pager maps and resumes", faults_as_ipc);
    tally.check(
        "an exception from a thread with DF set leaves the kernel intact",
        exception_with_direction_flag_set,
    );
    tally.check("a thread may destroy its own address space and itself", self_destruct);
    tally.check("interrupts arrive as notifications (RTC, line 8)", interrupts);
    tally.check(
        "port and device-memory capabilities are checked",
        ports_and_device_memory,
    );
    tally.check("vcpus and guest memory: checks, exits, isolation", virtualisation);
    println!("kernel-tests: {} passed, {} failed", tally.passed, tally.failed);
    tally.failed
}

fn debug_write_errors() -> Check {
    let kernel = call(Syscall::DebugWrite, &[0xffff_8000_0000_0000, 8]);
    expect_error(kernel, ErrorKind::InvalidAddress, Some(0))?;
    let unmapped = call(Syscall::DebugWrite, &[UNMAPPED, 8]);
    expect_error(unmapped, ErrorKind::InvalidAddress, Some(0))?;
    let text = b"x";
    let long = call(
        Syscall::DebugWrite,
        &[text.as_ptr() as u64, abi::DEBUG_WRITE_MAX as u64 + 1],
    );
    expect_error(long, ErrorKind::InvalidLength, Some(1))?;
    let wrapping = call(Syscall::DebugWrite, &[u64::MAX - 2, 8]);
    expect_error(wrapping, ErrorKind::InvalidAddress, Some(0))?;
    ok(runtime::syscall::debug_write(b""), "empty write")
}

fn unknown_syscalls() -> Check {
    for number in [0, 6, 99, u64::MAX] {
        expect_error(invoke_number(number, [0; 10]), ErrorKind::UnknownSyscall, None)?;
    }
    Ok(())
}

fn clock() -> Check {
    let [start, per_second, ..] = ok(call(Syscall::Clock, &[]), "clock")?;
    ensure(per_second == 100, &format!("{per_second} ticks per second"))?;
    for _ in 0..10_000 {
        let [now, ..] = ok(call(Syscall::Clock, &[]), "clock")?;
        if now > start {
            return Ok(());
        }
        runtime::syscall::yield_now();
    }
    Err(String::from("the tick count never moved"))
}

fn sleep() -> Check {
    expect_error(call(Syscall::Sleep, &[0]), ErrorKind::InvalidArgument, Some(0))?;
    expect_error(
        call(Syscall::Sleep, &[abi::MAX_SLEEP_TICKS + 1]),
        ErrorKind::InvalidArgument,
        Some(0),
    )?;
    // A thread far below this one runs while it sleeps (yield would not
    // let it).
    static RAN: AtomicU64 = AtomicU64::new(0);
    ok(
        thread_spawner(1).spawn(|_| {
            RAN.store(1, Ordering::SeqCst);
            0
        }),
        "spawn a low-priority thread",
    )?;
    let [before, ..] = ok(call(Syscall::Clock, &[]), "clock")?;
    ok(call(Syscall::Sleep, &[5]), "sleep")?;
    let [after, ..] = ok(call(Syscall::Clock, &[]), "clock")?;
    ensure(after >= before + 5, &format!("slept from tick {before} to {after}"))?;
    ensure(
        RAN.load(Ordering::SeqCst) == 1,
        "the low-priority thread ran during the sleep",
    )
}

fn initial_capabilities() -> Check {
    let expected = [
        (slot::THREAD, ObjectType::Thread),
        (slot::ADDRESS_SPACE, ObjectType::AddressSpace),
        (slot::CSPACE, ObjectType::CSpace),
        (slot::MEMORY, ObjectType::Memory),
        (slot::IRQ_CONTROL, ObjectType::IrqControl),
        (slot::PORT_CONTROL, ObjectType::PortControl),
        (slot::DEVICE_MEMORY_CONTROL, ObjectType::DeviceMemoryControl),
        (slot::IPC_BUFFER_FRAME, ObjectType::Frame),
    ];
    for (index, kind) in expected {
        let identity = ok(capability::identify(Slot(index)), "identify")?;
        ensure(
            identity.object_type == Some(kind),
            &format!("slot {index} is {:?}", identity.object_type),
        )?;
        ensure(
            identity.rights == Rights::ALL && identity.badge == 0,
            "initial rights and badge",
        )?;
    }
    Ok(())
}

fn identify_errors() -> Check {
    expect_error(
        capability::identify(Slot(slot::FIRST_FREE + 4000)),
        ErrorKind::EmptySlot,
        Some(0),
    )?;
    expect_error(
        capability::identify(Slot(abi::init::CSPACE_SLOTS)),
        ErrorKind::InvalidSlot,
        Some(0),
    )?;
    expect_error(capability::identify(Slot(u64::MAX)), ErrorKind::InvalidSlot, Some(0))?;
    expect_error(capability::identify(Slot(0)), ErrorKind::EmptySlot, Some(0))
}

fn create_objects() -> Check {
    let kinds = [
        (ObjectType::Thread, 0),
        (ObjectType::AddressSpace, 0),
        (ObjectType::CSpace, 16),
        (ObjectType::Endpoint, 0),
        (ObjectType::Notification, 0),
        (ObjectType::Frame, 0),
        (ObjectType::Memory, 8192),
    ];
    for (kind, size) in kinds {
        let slot = fresh();
        ok(
            call(Syscall::Create, &[MEMORY.0.0, kind as u64, slot.0, size]),
            "create",
        )?;
        let identity = ok(capability::identify(slot), "identify")?;
        ensure(
            identity.object_type == Some(kind),
            &format!("{kind:?} created as {:?}", identity.object_type),
        )?;
        ok(capability::delete(Destination::own(slot)), "delete")?;
    }
    Ok(())
}

fn create_errors() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    let create =
        |pool: u64, kind: u64, destination: u64, size: u64| call(Syscall::Create, &[pool, kind, destination, size]);
    expect_error(
        create(endpoint.0.0, ObjectType::Frame as u64, fresh().0, 0),
        ErrorKind::WrongObjectType,
        Some(0),
    )?;
    expect_error(create(MEMORY.0.0, 0, fresh().0, 0), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(
        create(MEMORY.0.0, ObjectType::Irq as u64, fresh().0, 0),
        ErrorKind::InvalidArgument,
        Some(1),
    )?;
    expect_error(
        create(MEMORY.0.0, ObjectType::Frame as u64, endpoint.0.0, 0),
        ErrorKind::SlotOccupied,
        Some(2),
    )?;
    expect_error(
        create(MEMORY.0.0, ObjectType::Frame as u64, 0, 0),
        ErrorKind::InvalidSlot,
        Some(2),
    )?;
    expect_error(
        create(MEMORY.0.0, ObjectType::CSpace as u64, fresh().0, 0),
        ErrorKind::InvalidArgument,
        Some(3),
    )?;
    expect_error(
        create(MEMORY.0.0, ObjectType::Memory as u64, fresh().0, 0),
        ErrorKind::InvalidArgument,
        Some(3),
    )?;
    let huge = create(MEMORY.0.0, ObjectType::Memory as u64, fresh().0, u64::MAX / 2);
    expect_error(huge, ErrorKind::OutOfMemory, None)?;
    let weak = fresh();
    ok(
        capability::mint(MEMORY, Destination::own(weak), Rights::READ, 0),
        "mint read-only pool",
    )?;
    expect_error(
        create(weak.0, ObjectType::Frame as u64, fresh().0, 0),
        ErrorKind::InsufficientRights,
        Some(0),
    )
}

fn pool_quota() -> Check {
    let pool_slot = fresh();
    let pool = ok(MEMORY.create_pool(pool_slot, 16 * 4096), "pool")?;
    ensure(
        ok(capability::identify(pool), "identify pool")?.available == 16 * 4096,
        "a new pool has all its budget",
    )?;
    let mut made = 0;
    let exhausted = loop {
        match pool.create_frame(fresh()) {
            Ok(_) => made += 1,
            Err(error) => break error,
        }
        if made > 64 {
            return Err(String::from("a 64 KiB pool paid for more than 64 frames"));
        }
    };
    ensure(made == 16, &format!("a 64 KiB pool paid for {made} frames"))?;
    ensure(
        ok(capability::identify(pool), "identify pool")?.available == 0,
        "a spent pool has nothing left",
    )?;
    ensure(
        exhausted.kind == ErrorKind::OutOfMemory,
        &format!("exhausted pool said {exhausted:?}"),
    )?;
    // Revoking the pool capability destroys the frames and refunds them.
    ok(capability::revoke(Destination::own(pool_slot)), "revoke pool")?;
    for _ in 0..16 {
        ok(pool.create_frame(fresh()), "frame after refund")?;
    }
    ok(capability::revoke(Destination::own(pool_slot)), "revoke again")?;
    // Every kind of object goes back to the pool it was paid from (a
    // restarted process's CSpace once stayed charged for ever).
    ok(pool.create_cspace(fresh(), 64), "cspace")?;
    ok(pool.create_thread(fresh()), "thread")?;
    ok(pool.create_endpoint(fresh()), "endpoint")?;
    ok(pool.create_notification(fresh()), "notification")?;
    ok(capability::revoke(Destination::own(pool_slot)), "revoke the objects")?;
    ensure(
        ok(capability::identify(pool), "identify pool")?.available == 16 * 4096,
        "revoking a pool's objects refunds all of them",
    )?;
    ok(capability::delete(Destination::own(pool_slot)), "delete pool")
}

fn capability_operations() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    let copy = fresh();
    ok(capability::copy(endpoint, Destination::own(copy)), "copy")?;
    ensure(
        ok(capability::identify(copy), "identify copy")?.rights == Rights::ALL,
        "copy keeps rights",
    )?;
    let minted = fresh();
    ok(
        capability::mint(endpoint, Destination::own(minted), Rights::WRITE, 42),
        "mint",
    )?;
    let identity = ok(capability::identify(minted), "identify minted")?;
    ensure(
        identity.rights == Rights::WRITE && identity.badge == 42,
        "mint sets rights and badge",
    )?;
    let rebadge = capability::mint(minted, Destination::own(fresh()), Rights::ALL, 7);
    expect_error(rebadge, ErrorKind::BadgeAlreadySet, Some(4))?;
    let remint = fresh();
    ok(
        capability::mint(minted, Destination::own(remint), Rights::ALL, 0),
        "re-mint keeps badge",
    )?;
    let identity = ok(capability::identify(remint), "identify re-mint")?;
    ensure(
        identity.rights == Rights::WRITE && identity.badge == 42,
        "mint only removes rights",
    )?;
    let moved = fresh();
    ok(capability::move_to(copy, Destination::own(moved)), "move")?;
    expect_error(capability::identify(copy), ErrorKind::EmptySlot, Some(0))?;
    ok(capability::identify(moved), "identify moved")?;
    ok(capability::delete(Destination::own(moved)), "delete")?;
    expect_error(capability::identify(moved), ErrorKind::EmptySlot, Some(0))?;
    // Revoke: the minted children go, the original stays.
    ok(capability::revoke(Destination::own(endpoint.0)), "revoke")?;
    expect_error(capability::identify(minted), ErrorKind::EmptySlot, Some(0))?;
    expect_error(capability::identify(remint), ErrorKind::EmptySlot, Some(0))?;
    ok(capability::identify(endpoint), "original survives revoke")?;
    Ok(())
}

/// A CSpace holding 600 frames, each mapped here too (as a VMM keeps a
/// guest's RAM): deleting its last capability goes in steps the kernel
/// restarts, yet the caller sees one delete that unmaps every frame and
/// refunds all of it to the pool.
fn large_cspace_delete() -> Check {
    const FRAMES: u64 = 600;
    let pool_slot = fresh();
    let pool = ok(MEMORY.create_pool(pool_slot, (FRAMES + 16) * 4096), "pool")?;
    let budget = ok(capability::identify(pool), "identify pool")?.available;
    let frames = ok(pool.create_cspace(fresh(), FRAMES + 1), "frame CSpace")?;
    let region = runtime::memory::Region::reserve(FRAMES as usize);
    let scratch = fresh();
    for index in 1..=FRAMES {
        let frame = ok(pool.create_frame(scratch), "frame")?;
        let page = index as usize - 1;
        ok(region.map_page(OWN_SPACE, frame, page, Rights::READ | Rights::WRITE), "map the frame")?;
        region
            .write(page * 4096, &index.to_le_bytes())
            .map_err(|_| String::from("the page is outside its region"))?;
        ok(capability::move_to(frame, Destination::in_cspace(frames, index)), "keep it in the CSpace")?;
    }
    ok(capability::delete(Destination::own(frames.0)), "delete the CSpace")?;
    expect_error(capability::identify(frames.0), ErrorKind::EmptySlot, Some(0))?;
    let left = ok(capability::identify(pool), "identify pool")?.available;
    ensure(left == budget, &format!("{left} of {budget} bytes came back to the pool"))?;
    // Every page is unmapped: a new frame maps where the last one was.
    let frame = ok(pool.create_frame(scratch), "a later frame")?;
    ok(
        region.map_page(OWN_SPACE, frame, FRAMES as usize - 1, Rights::READ),
        "map where the last frame was",
    )?;
    ok(capability::revoke(Destination::own(pool_slot)), "revoke the later frame")?;
    ok(capability::delete(Destination::own(pool_slot)), "delete pool")
}

fn capability_errors() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    let empty = fresh();
    expect_error(
        capability::copy(empty, Destination::own(fresh())),
        ErrorKind::EmptySlot,
        Some(0),
    )?;
    expect_error(
        capability::copy(endpoint, Destination::own(endpoint.0)),
        ErrorKind::SlotOccupied,
        Some(2),
    )?;
    expect_error(
        capability::copy(endpoint, Destination::own(Slot(0))),
        ErrorKind::InvalidSlot,
        Some(2),
    )?;
    expect_error(
        capability::copy(endpoint, Destination::own(Slot(1 << 40))),
        ErrorKind::InvalidSlot,
        Some(2),
    )?;
    expect_error(
        capability::copy(Slot(1 << 40), Destination::own(fresh())),
        ErrorKind::InvalidSlot,
        Some(0),
    )?;
    let bad_rights = call(Syscall::CapabilityMint, &[endpoint.0.0, 0, fresh().0, 1 << 20, 0]);
    expect_error(bad_rights, ErrorKind::InvalidArgument, Some(3))?;
    // A destination CSpace must be a CSpace capability.
    expect_error(
        capability::copy(endpoint, Destination::in_cspace(CSpace(endpoint.0), 1)),
        ErrorKind::WrongObjectType,
        Some(1),
    )?;
    expect_error(
        capability::delete(Destination::own(empty)),
        ErrorKind::EmptySlot,
        Some(1),
    )?;
    expect_error(
        capability::revoke(Destination::own(Slot(u64::MAX))),
        ErrorKind::InvalidSlot,
        Some(1),
    )
}

fn revoke_across_cspaces() -> Check {
    let other = ok(MEMORY.create_cspace(fresh(), 8), "cspace")?;
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    ok(
        capability::copy(endpoint, Destination::in_cspace(other, 3)),
        "copy into other CSpace",
    )?;
    expect_error(
        capability::copy(endpoint, Destination::in_cspace(other, 3)),
        ErrorKind::SlotOccupied,
        Some(2),
    )?;
    expect_error(
        capability::copy(endpoint, Destination::in_cspace(other, 8)),
        ErrorKind::InvalidSlot,
        Some(2),
    )?;
    ok(capability::revoke(Destination::own(endpoint.0)), "revoke")?;
    // The copy is gone: the slot takes a new capability again.
    ok(
        capability::copy(endpoint, Destination::in_cspace(other, 3)),
        "slot is free after revoke",
    )?;
    ok(
        capability::delete(Destination::in_cspace(other, 3)),
        "delete in other CSpace",
    )?;
    expect_error(
        capability::delete(Destination::in_cspace(other, 3)),
        ErrorKind::EmptySlot,
        Some(1),
    )
}

const TEST_PAGES: u64 = 0x0000_4000_0000_0000;

fn map_and_unmap() -> Check {
    let frame = ok(MEMORY.create_frame(fresh()), "frame")?;
    let (first, second) = (TEST_PAGES, TEST_PAGES + 0x10_0000);
    ok(OWN_SPACE.map(frame, first, Rights::READ | Rights::WRITE), "map")?;
    ok(OWN_SPACE.map(frame, second, Rights::READ), "map again elsewhere")?;
    // SAFETY: both pages were just mapped to the same frame, the first
    // writable; nothing else uses them.
    let seen = unsafe {
        (first as *mut u64).write_volatile(0x1234_5678);
        (second as *const u64).read_volatile()
    };
    ensure(seen == 0x1234_5678, "the two mappings share the frame")?;
    ok(OWN_SPACE.unmap(first), "unmap")?;
    ok(OWN_SPACE.unmap(second), "unmap second")?;
    expect_error(OWN_SPACE.unmap(first), ErrorKind::NotMapped, Some(1))?;
    // A new frame is zeroed.
    let fresh_frame = ok(MEMORY.create_frame(fresh()), "second frame")?;
    ok(OWN_SPACE.map(fresh_frame, first, Rights::READ), "map fresh")?;
    // SAFETY: mapped readable just above.
    let zero = unsafe { (first as *const u64).read_volatile() };
    ok(OWN_SPACE.unmap(first), "unmap fresh")?;
    ensure(zero == 0, "new frames are zeroed")
}

fn contiguous_frames() -> Check {
    let first = fresh();
    for _ in 1..4 {
        fresh();
    }
    ok(MEMORY.create_contiguous_frames(first, 4), "four consecutive frames")?;
    let base = ok(capability::identify(first), "identify")?.physical;
    ensure(base != 0 && base % 4096 == 0, &format!("physical address {base:#x}"))?;
    for index in 1..4 {
        let physical = ok(capability::identify(Slot(first.0 + index)), "identify")?.physical;
        ensure(
            physical == base + index * 4096,
            &format!("frame {index} at {physical:#x}, first at {base:#x}"),
        )?;
    }
    // Every destination slot must be empty and exist.
    let occupied = MEMORY.create_contiguous_frames(Slot(first.0 + 2), 4);
    expect_error(occupied, ErrorKind::SlotOccupied, Some(2))?;
    let past_the_end = MEMORY.create_contiguous_frames(Slot(abi::init::CSPACE_SLOTS - 2), 4);
    expect_error(past_the_end, ErrorKind::InvalidSlot, Some(2))?;
    let too_many = call(
        Syscall::Create,
        &[MEMORY.0.0, ObjectType::Frame as u64, fresh().0, 100_000],
    );
    expect_error(too_many, ErrorKind::InvalidArgument, Some(3))?;
    // Other objects have no physical address to show.
    ensure(
        ok(capability::identify(MEMORY), "identify pool")?.physical == 0,
        "a pool has no address",
    )
}

fn map_errors() -> Check {
    let frame = ok(MEMORY.create_frame(fresh()), "frame")?;
    let rw = Rights::READ | Rights::WRITE;
    expect_error(
        OWN_SPACE.map(frame, TEST_PAGES + 1, rw),
        ErrorKind::InvalidAddress,
        Some(2),
    )?;
    expect_error(
        OWN_SPACE.map(frame, 0xffff_8000_0000_0000, rw),
        ErrorKind::InvalidAddress,
        Some(2),
    )?;
    expect_error(
        OWN_SPACE.map(frame, TEST_PAGES, Rights::WRITE),
        ErrorKind::InvalidArgument,
        Some(3),
    )?;
    expect_error(
        OWN_SPACE.map(Frame(OWN_SPACE.0), TEST_PAGES, rw),
        ErrorKind::WrongObjectType,
        Some(1),
    )?;
    expect_error(
        AddressSpace(frame.0).map(frame, TEST_PAGES, rw),
        ErrorKind::WrongObjectType,
        Some(0),
    )?;
    let read_only = Frame(fresh());
    ok(
        capability::mint(frame, Destination::own(read_only.0), Rights::READ, 0),
        "mint read-only frame",
    )?;
    expect_error(
        OWN_SPACE.map(read_only, TEST_PAGES, rw),
        ErrorKind::InsufficientRights,
        Some(3),
    )?;
    ok(OWN_SPACE.map(frame, TEST_PAGES, rw), "map")?;
    expect_error(OWN_SPACE.map(frame, TEST_PAGES, rw), ErrorKind::AlreadyMapped, Some(2))?;
    // Deleting the last capability of a mapped frame unmaps it.
    ok(
        capability::delete(Destination::own(read_only.0)),
        "delete read-only copy",
    )?;
    ok(capability::delete(Destination::own(frame.0)), "delete frame")?;
    expect_error(OWN_SPACE.unmap(TEST_PAGES), ErrorKind::NotMapped, Some(1))
}

fn notifications() -> Check {
    let notification = ok(MEMORY.create_notification(fresh()), "notification")?;
    let badged = Notification(fresh());
    ok(
        capability::mint(notification, Destination::own(badged.0), Rights::WRITE, 0b101),
        "mint badge",
    )?;
    ensure(ok(notification.poll(), "poll")? == 0, "a new notification is clear")?;
    ok(badged.signal(), "signal")?;
    let other = Notification(fresh());
    ok(
        capability::mint(notification, Destination::own(other.0), Rights::WRITE, 0b1000),
        "mint second badge",
    )?;
    ok(other.signal(), "signal second")?;
    ensure(
        ok(notification.wait(), "wait")? == 0b1101,
        "wait returns the bits of both badges",
    )?;
    ensure(ok(notification.poll(), "poll")? == 0, "wait cleared the word")?;
    Ok(())
}

fn notification_errors() -> Check {
    let notification = ok(MEMORY.create_notification(fresh()), "notification")?;
    let send_only = Notification(fresh());
    ok(
        capability::mint(notification, Destination::own(send_only.0), Rights::WRITE, 1),
        "mint",
    )?;
    expect_error(send_only.wait(), ErrorKind::InsufficientRights, Some(0))?;
    let receive_only = Notification(fresh());
    ok(
        capability::mint(notification, Destination::own(receive_only.0), Rights::READ, 0),
        "mint",
    )?;
    expect_error(receive_only.signal(), ErrorKind::InsufficientRights, Some(0))?;
    expect_error(Notification(OWN_SPACE.0).signal(), ErrorKind::WrongObjectType, Some(0))
}

fn thread_spawner(priority: u8) -> ThreadSpawn<'static> {
    ThreadSpawn {
        memory: MEMORY,
        address_space: OWN_SPACE,
        cspace: OWN_CSPACE,
        slots: &SLOTS,
        fault_endpoint: None,
        priority: Some(priority),
        stack_pages: runtime::thread::STACK_PAGES,
    }
}

fn thread_control() -> Check {
    let thread = ok(MEMORY.create_thread(fresh()), "thread")?;
    expect_error(thread.start(), ErrorKind::InvalidState, Some(0))?;
    expect_error(
        thread.write_registers(0xffff_8000_0000_0000, 0x1000, 0, 0),
        ErrorKind::InvalidAddress,
        Some(1),
    )?;
    expect_error(
        thread.write_registers(0x1000, u64::MAX, 0, 0),
        ErrorKind::InvalidAddress,
        Some(2),
    )?;
    ok(thread.write_registers(0x4000, 0x8000, 11, 22), "write registers")?;
    let registers = ok(thread.read_registers(), "read registers")?;
    ensure(
        registers.rip == 0x4000 && registers.rsp == 0x8000 && registers.rdi == 11 && registers.rsi == 22,
        "registers read back",
    )?;
    expect_error(
        thread.configure(OWN_CSPACE, AddressSpace(OWN_CSPACE.0), 0, None),
        ErrorKind::WrongObjectType,
        Some(2),
    )?;
    expect_error(
        thread.configure(CSpace(OWN_SPACE.0), OWN_SPACE, 0, None),
        ErrorKind::WrongObjectType,
        Some(1),
    )?;
    expect_error(
        thread.configure(OWN_CSPACE, OWN_SPACE, 0x123, None),
        ErrorKind::InvalidAddress,
        Some(3),
    )?;
    expect_error(
        thread.set_priority(abi::init::PRIORITY + 1),
        ErrorKind::PriorityTooHigh,
        Some(1),
    )?;
    ok(thread.set_priority(abi::init::PRIORITY), "priority at the ceiling")?;
    // A running thread's registers cannot be written.
    static SPIN: AtomicU64 = AtomicU64::new(0);
    let running = ok(
        thread_spawner(1).spawn(|_| {
            while SPIN.load(Ordering::Relaxed) == 0 {
                runtime::syscall::yield_now();
            }
            0
        }),
        "spawn",
    )?;
    expect_error(
        running.write_registers(0x4000, 0x8000, 0, 0),
        ErrorKind::InvalidState,
        Some(0),
    )?;
    expect_error(running.start(), ErrorKind::InvalidState, Some(0))?;
    ok(running.stop(), "stop")?;
    ok(
        running.write_registers(0x4000, 0x8000, 0, 0),
        "write registers once stopped",
    )?;
    SPIN.store(1, Ordering::Relaxed);
    ok(capability::delete(Destination::own(running.0)), "delete thread")?;
    expect_error(OWN_THREAD.set_priority(255), ErrorKind::PriorityTooHigh, Some(1))
}

/// Puts `value` in xmm0, yields `rounds` times, and returns what xmm0 then
/// holds: the value, if the kernel kept this thread's SSE registers.
fn sse_survives_yields(value: u64, rounds: u32) -> u64 {
    // SAFETY: moves a value into and out of xmm0, which nothing else in
    // this program uses (it is built without SSE); no memory is touched.
    unsafe { core::arch::asm!("movq xmm0, {value}", value = in(reg) value, options(nomem, nostack)) };
    for _ in 0..rounds {
        runtime::syscall::yield_now();
    }
    let read: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("movq {read}, xmm0", read = out(reg) read, options(nomem, nostack)) };
    read
}

fn sse_registers_per_thread() -> Check {
    static SEEN: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    for (index, value) in [0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888]
        .into_iter()
        .enumerate()
    {
        ok(
            thread_spawner(abi::init::PRIORITY).spawn(move |_| {
                SEEN[index].store(sse_survives_yields(value, 50), Ordering::SeqCst);
                0
            }),
            "spawn",
        )?;
    }
    let own = sse_survives_yields(0x9999_aaaa_bbbb_cccc, 60);
    for _ in 0..1000 {
        if SEEN.iter().all(|seen| seen.load(Ordering::SeqCst) != 0) {
            break;
        }
        runtime::syscall::yield_now();
    }
    let seen = [SEEN[0].load(Ordering::SeqCst), SEEN[1].load(Ordering::SeqCst)];
    ensure(
        own == 0x9999_aaaa_bbbb_cccc && seen == [0x1111_2222_3333_4444, 0x5555_6666_7777_8888],
        &format!("xmm0 read back as {own:#x} and {seen:x?}"),
    )
}

/// Starts a thread serving `endpoint` as the echo server does.
fn serving_thread(endpoint: Endpoint, requests: u32) -> Result<Thread, String> {
    ok(
        thread_spawner(abi::init::PRIORITY).spawn(move |buffer: Buffer| {
            let Ok(mut request) = endpoint.receive() else { return 1 };
            for _ in 1..requests {
                let reply = Message::new(request.message.label, &[request.badge, request.message.words[0] * 2]);
                request = match endpoint.reply_receive(&reply) {
                    Ok(request) => request,
                    Err(_) => return 2,
                };
            }
            let _ = runtime::ipc::reply(&Message::new(0, &[request.badge]));
            let _ = buffer;
            0
        }),
        "spawn server thread",
    )
}

fn ipc_same_address_space() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    let badged = Endpoint(fresh());
    ok(
        capability::mint(endpoint, Destination::own(badged.0), Rights::WRITE, 0xbadd),
        "mint badge",
    )?;
    serving_thread(endpoint, 3)?;
    let reply = ok(endpoint.call(&Message::new(7, &[21])), "call")?;
    ensure(
        reply.label == 7 && reply.words[0] == 0 && reply.words[1] == 42,
        &format!("reply {reply:?}"),
    )?;
    let reply = ok(badged.call(&Message::new(8, &[5])), "badged call")?;
    ensure(
        reply.words[0] == 0xbadd && reply.words[1] == 10,
        &format!("badge not delivered: {reply:?}"),
    )?;
    let receive_only = Endpoint(fresh());
    ok(
        capability::mint(endpoint, Destination::own(receive_only.0), Rights::READ, 0),
        "mint",
    )?;
    expect_error(
        receive_only.call(&Message::new(0, &[])),
        ErrorKind::InsufficientRights,
        Some(0),
    )?;
    let send_only = badged;
    expect_error(send_only.receive(), ErrorKind::InsufficientRights, Some(0))?;
    let last = ok(endpoint.call(&Message::new(9, &[1])), "last call")?;
    ensure(last.words[0] == 0, "last reply")
}

fn ipc_non_blocking() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    expect_error(endpoint.try_send(&Message::new(1, &[])), ErrorKind::WouldBlock, None)?;
    expect_error(endpoint.try_receive(), ErrorKind::WouldBlock, None)?;
    expect_error(
        runtime::ipc::reply(&Message::new(0, &[])),
        ErrorKind::NoReplyTarget,
        None,
    )?;
    let bad_tag = runtime::syscall::invoke(Syscall::Send, [endpoint.0.0, 1 << 50, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect_error(bad_tag, ErrorKind::InvalidArgument, Some(1))?;
    // A thread waiting to receive takes a non-blocking send.
    static GOT: AtomicU64 = AtomicU64::new(0);
    ok(
        thread_spawner(abi::init::PRIORITY).spawn(move |_| match endpoint.receive() {
            Ok(received) => {
                GOT.store(received.message.words[0], Ordering::SeqCst);
                0
            }
            Err(_) => 1,
        }),
        "spawn receiver",
    )?;
    // Let the receiver block first.
    let mut sent = false;
    for _ in 0..1000 {
        if !sent {
            sent = endpoint.try_send(&Message::new(1, &[77])).is_ok();
        }
        if GOT.load(Ordering::SeqCst) == 77 {
            return Ok(());
        }
        runtime::syscall::yield_now();
    }
    Err(format!(
        "non-blocking send delivered: {sent}; receiver got {}",
        GOT.load(Ordering::SeqCst)
    ))
}

fn ipc_blocking_send() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    static GOT: AtomicU64 = AtomicU64::new(0);
    ok(
        thread_spawner(abi::init::PRIORITY).spawn(move |_| {
            // Arrive late: the sender is blocked by then.
            for _ in 0..10 {
                runtime::syscall::yield_now();
            }
            match endpoint.receive() {
                Ok(received) => {
                    GOT.store(received.message.words[1], Ordering::SeqCst);
                    0
                }
                Err(_) => 1,
            }
        }),
        "spawn late receiver",
    )?;
    ok(endpoint.send(&Message::new(4, &[0, 0xabc])), "blocking send")?;
    for _ in 0..100 {
        if GOT.load(Ordering::SeqCst) == 0xabc {
            return Ok(());
        }
        runtime::syscall::yield_now();
    }
    Err(format!("the receiver got {:#x}", GOT.load(Ordering::SeqCst)))
}

fn spawner() -> Spawn<'static> {
    Spawn {
        memory: MEMORY,
        own_address_space: OWN_SPACE,
        slots: &SLOTS,
        cspace_slots: 16,
        fault_endpoint: None,
    }
}

fn own_image() -> Result<&'static [u8], String> {
    // SAFETY: this is init (started with the boot archive's address), and
    // it never unmaps the archive.
    let archive = unsafe { runtime::boot_archive() }.map_err(|error| format!("boot archive: {error}"))?;
    archive
        .find("init")
        .map(|file| file.data)
        .ok_or_else(|| String::from("no 'init' in the archive"))
}

/// Starts a copy of this program playing `role`, with `endpoint` at its
/// slot 1.
fn start_child(
    role: Role,
    argument: u64,
    endpoint: Endpoint,
    fault_endpoint: Option<Endpoint>,
) -> Result<Process, String> {
    let spawn = Spawn {
        fault_endpoint,
        ..spawner()
    };
    let process = spawn
        .spawn(own_image()?, [role as u64, argument])
        .map_err(|error| format!("spawn: {error:?}"))?;
    ok(
        capability::copy(endpoint, Destination::in_cspace(process.cspace, CHILD_ENDPOINT.0)),
        "give endpoint",
    )?;
    ok(process.start(), "start child")?;
    Ok(process)
}

fn ipc_across_address_spaces() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    start_child(Role::EchoServer, 0, endpoint, None)?;
    let reply = ok(endpoint.call(&Message::new(5, &[1, 2, 3, 4, 5, 6, 7, 8])), "call")?;
    ensure(
        reply.words == [2, 3, 4, 5, 6, 7, 8, 9] && reply.length == 8,
        &format!("echo {reply:?}"),
    )?;
    // A long message: 8 words in registers, 120 through the IPC buffers.
    let buffer = Buffer::main_thread();
    for index in 8..128 {
        buffer.set_word(index, index as u64);
    }
    let mut long = Message::new(LABEL_SUM, &[1, 1, 1, 1, 1, 1, 1, 1]);
    long.length = 128;
    let reply = ok(endpoint.call(&long), "long call")?;
    let expected = 8 + (8..128).sum::<u64>();
    ensure(
        reply.words[0] == expected && reply.words[1] == 128,
        &format!("sum {reply:?}, expected {expected}"),
    )?;
    // A capability: the server identifies the frame it received.
    let frame = ok(MEMORY.create_frame(fresh()), "frame")?;
    let granted = Endpoint(fresh());
    ok(
        capability::mint(endpoint, Destination::own(granted.0), Rights::WRITE | Rights::GRANT, 0),
        "mint grant",
    )?;
    buffer.set_send_capabilities(&[frame.0]);
    let mut with_capability = Message::new(LABEL_IDENTIFY, &[]);
    with_capability.capabilities = 1;
    let send_without_grant = Endpoint(fresh());
    ok(
        capability::mint(endpoint, Destination::own(send_without_grant.0), Rights::WRITE, 0),
        "mint without grant",
    )?;
    expect_error(
        send_without_grant.call(&with_capability),
        ErrorKind::InsufficientRights,
        Some(0),
    )?;
    let reply = ok(granted.call(&with_capability), "call with capability")?;
    ensure(
        reply.words[0] == 1 && reply.words[1] == ObjectType::Frame as u64,
        &format!("identified {reply:?}"),
    )?;
    ok(endpoint.call(&Message::new(LABEL_QUIT, &[])), "quit").map(drop)
}

fn peer_died_on_endpoint() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    static RESULT: AtomicU64 = AtomicU64::new(0);
    ok(
        thread_spawner(abi::init::PRIORITY).spawn(move |_| {
            let outcome = match endpoint.call(&Message::new(1, &[])) {
                Err(error) if error.kind == ErrorKind::PeerDied => 1,
                _ => 2,
            };
            RESULT.store(outcome, Ordering::SeqCst);
            0
        }),
        "spawn caller",
    )?;
    // Let it block in the call, then destroy the endpoint under it.
    runtime::syscall::yield_now();
    ok(capability::delete(Destination::own(endpoint.0)), "delete endpoint")?;
    for _ in 0..100 {
        if RESULT.load(Ordering::SeqCst) != 0 {
            break;
        }
        runtime::syscall::yield_now();
    }
    ensure(
        RESULT.load(Ordering::SeqCst) == 1,
        &format!("caller saw {}", RESULT.load(Ordering::SeqCst)),
    )
}

fn peer_died_on_reply() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    let caller = ok(
        thread_spawner(abi::init::PRIORITY).spawn(move |_| {
            let _ = endpoint.call(&Message::new(1, &[]));
            0
        }),
        "spawn caller",
    )?;
    let request = ok(endpoint.receive(), "receive the call")?;
    ensure(request.message.label == 1, "got the call")?;
    ok(capability::delete(Destination::own(caller.0)), "destroy the caller")?;
    expect_error(runtime::ipc::reply(&Message::new(0, &[])), ErrorKind::PeerDied, None)?;
    expect_error(
        runtime::ipc::reply(&Message::new(0, &[])),
        ErrorKind::NoReplyTarget,
        None,
    )
}

/// Starts a child playing `role` whose faults come to a new endpoint (badged
/// `badge`), and receives its first fault, checking label and badge. This
/// thread blocks in that receive before the child runs, so the kernel
/// builds the fault message in the exception's own path.
fn first_fault_of(role: Role, argument: u64, badge: u64) -> Result<(Endpoint, Process, [u64; abi::REGISTER_WORDS]), String> {
    let handler = ok(MEMORY.create_endpoint(fresh()), "fault handler endpoint")?;
    let fault_endpoint = Endpoint(fresh());
    ok(
        capability::mint(handler, Destination::own(fault_endpoint.0), Rights::WRITE, badge),
        "mint fault badge",
    )?;
    let child = start_child(role, argument, handler, Some(fault_endpoint))?;
    let fault_message = ok(handler.receive(), "receive fault")?;
    ensure(fault_message.message.label == fault::FAULT_LABEL, "fault label")?;
    ensure(fault_message.badge == badge, "fault carries the fault endpoint's badge")?;
    Ok((handler, child, fault_message.message.words))
}

fn faults_as_ipc() -> Check {
    let (pager, child, words) = first_fault_of(Role::PagedWriter, 0x5eed, 77)?;
    ensure(
        words[fault::word::VECTOR] == 14,
        &format!("vector {}", words[fault::word::VECTOR]),
    )?;
    ensure(
        words[fault::word::ADDRESS] == UNMAPPED,
        &format!("address {:#x}", words[fault::word::ADDRESS]),
    )?;
    ensure(
        words[fault::word::ERROR_CODE] & 0b110 == 0b110,
        "a user write to a missing page",
    )?;
    // Page it in and resume.
    let frame = ok(MEMORY.create_frame(fresh()), "frame")?;
    ok(
        child.address_space.map(frame, UNMAPPED, Rights::READ | Rights::WRITE),
        "map the missing page",
    )?;
    ok(runtime::ipc::reply(&Message::new(fault::FAULT_RESUME, &[])), "resume")?;
    let report = ok(pager.receive(), "the child's report")?;
    ensure(
        report.message.words[0] == 0x5eed,
        &format!("child read back {:#x}", report.message.words[0]),
    )?;
    ok(runtime::ipc::reply(&Message::new(0, &[])), "release the child")?;
    Ok(())
}

/// The kernel's own copies and fills (building the fault message among
/// them) assume a clear direction flag; the exception entry must clear it
/// whatever the thread left there.
fn exception_with_direction_flag_set() -> Check {
    // The fault message is built with DF as the child left it.
    let (_, child, words) = first_fault_of(Role::BackwardFault, 0, 78)?;
    ensure(
        words[fault::word::VECTOR] == 6 && words[fault::word::ERROR_CODE] == 0 && words[fault::word::ADDRESS] == 0,
        &format!("fault words {:x?}", &words[..5]),
    )?;
    ok(runtime::ipc::reply(&Message::new(0, &[])), "leave it stopped")?;
    for slot in [child.thread.0, child.address_space.0, child.cspace.0] {
        ok(capability::delete(Destination::own(slot)), "take the child down")?;
    }
    Ok(())
}

fn self_destruct() -> Check {
    let endpoint = ok(MEMORY.create_endpoint(fresh()), "endpoint")?;
    let child = spawner()
        .spawn(own_image()?, [Role::SelfDestruct as u64, 0])
        .map_err(|error| format!("spawn: {error:?}"))?;
    let give = |source: Slot, slot: Slot| capability::copy(source, Destination::in_cspace(child.cspace, slot.0));
    ok(give(endpoint.0, CHILD_ENDPOINT), "endpoint")?;
    ok(give(child.address_space.0, CHILD_OWN_ADDRESS_SPACE), "address space")?;
    ok(give(child.thread.0, CHILD_OWN_THREAD), "thread")?;
    ok(child.start(), "start")?;
    // From here the child holds the last capabilities to its thread and
    // address space (its CSpace lives on in the thread's own references).
    for slot in [child.address_space.0, child.thread.0, child.cspace.0] {
        ok(capability::delete(Destination::own(slot)), "drop our copy")?;
    }
    let report = ok(endpoint.receive(), "the child's last words")?;
    ensure(
        report.message.label == Role::SelfDestruct as u32,
        "the child reported before destroying itself",
    )?;
    for _ in 0..20 {
        runtime::syscall::yield_now();
    }
    // The kernel carried on: objects can still be made, used and dropped.
    create_objects()
}

fn interrupts() -> Check {
    const RTC_LINE: u8 = 8;
    let irq_control = IrqControl(Slot(slot::IRQ_CONTROL));
    expect_error(irq_control.create(99, fresh()), ErrorKind::InvalidArgument, Some(1))?;
    let irq = ok(irq_control.create(RTC_LINE, fresh()), "irq")?;
    expect_error(irq_control.create(RTC_LINE, fresh()), ErrorKind::AlreadyBound, Some(1))?;
    expect_error(irq.acknowledge(), ErrorKind::InvalidState, Some(0))?;
    let notification = ok(MEMORY.create_notification(fresh()), "notification")?;
    // Unbadged, the interrupt would set no bit: a lost interrupt, refused.
    expect_error(irq.bind(notification), ErrorKind::InvalidArgument, Some(1))?;
    let badged = Notification(fresh());
    ok(
        capability::mint(notification, Destination::own(badged.0), Rights::ALL, 1 << RTC_LINE),
        "badge",
    )?;
    ok(irq.bind(badged), "bind")?;
    let ports = ok(
        PortControl(Slot(slot::PORT_CONTROL)).create(0x70, 2, fresh()),
        "CMOS ports",
    )?;
    // RTC periodic interrupt at 1024 Hz: register B bit 6; register C
    // acknowledges.
    ok(ports.write(0x70, 1, 0x8b), "select B")?;
    let b = ok(ports.read(0x71, 1), "read B")?;
    ok(ports.write(0x70, 1, 0x8b), "select B")?;
    ok(ports.write(0x71, 1, b | 0x40), "enable periodic")?;
    for round in 0..3 {
        ok(ports.write(0x70, 1, 0x0c), "select C")?;
        ok(ports.read(0x71, 1), "read C")?;
        let word = ok(notification.wait(), "wait for the interrupt")?;
        ensure(word == 1 << RTC_LINE, &format!("round {round}: word {word:#x}"))?;
        ok(irq.acknowledge(), "acknowledge")?;
    }
    // The notification goes while bound (as when a driver's pool is
    // revoked): the line is unbound, and a notification that gets the
    // same id later hears nothing of it.
    ok(capability::revoke(Destination::own(notification.0)), "revoke the notification's copies")?;
    ok(capability::delete(Destination::own(notification.0)), "delete the notification")?;
    let later = ok(MEMORY.create_notification(fresh()), "a later notification")?;
    ok(ports.write(0x70, 1, 0x0c), "select C")?;
    ok(ports.read(0x71, 1), "read C")?;
    for _ in 0..3 {
        runtime::syscall::sleep_ms(10);
    }
    let heard = ok(later.poll(), "poll the later notification")?;
    ensure(heard == 0, &format!("a destroyed binding signalled a later notification: {heard:#x}"))?;
    expect_error(irq.acknowledge(), ErrorKind::InvalidState, Some(0))?;
    ok(ports.write(0x70, 1, 0x8b), "select B")?;
    ok(ports.write(0x71, 1, b & !0x40), "disable periodic")?;
    ok(ports.write(0x70, 1, 0x0c), "select C")?;
    ok(ports.read(0x71, 1), "read C")?;
    ok(capability::delete(Destination::own(irq.0)), "delete irq")?;
    Ok(())
}

fn ports_and_device_memory() -> Check {
    let control = PortControl(Slot(slot::PORT_CONTROL));
    // The kernel keeps the PIC, the PIT and the emulator's exit device.
    expect_error(control.create(0x40, 4, fresh()), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(control.create(0x1e, 4, fresh()), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(control.create(0xf0, 0x10, fresh()), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(
        control.create(0xfff0, 0x20, fresh()),
        ErrorKind::InvalidArgument,
        Some(2),
    )?;
    expect_error(control.create(0x100, 0, fresh()), ErrorKind::InvalidArgument, Some(2))?;
    let ports = ok(control.create(0x70, 2, fresh()), "ports")?;
    expect_error(ports.read(0x72, 1), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(ports.read(0x71, 2), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(ports.read(0x70, 3), ErrorKind::InvalidArgument, Some(2))?;
    let read_only = runtime::capability::IoPorts(fresh());
    ok(
        capability::mint(ports, Destination::own(read_only.0), Rights::READ, 0),
        "mint",
    )?;
    expect_error(read_only.write(0x70, 1, 0), ErrorKind::InsufficientRights, Some(0))?;
    port_strings(ports, read_only)?;
    let devices = DeviceMemoryControl(Slot(slot::DEVICE_MEMORY_CONTROL));
    expect_error(devices.create(0x10_0000, fresh()), ErrorKind::InvalidAddress, Some(1))?;
    expect_error(devices.create(0xfee0_0000, fresh()), ErrorKind::InvalidAddress, Some(1))?;
    expect_error(devices.create(0xb8001, fresh()), ErrorKind::InvalidAddress, Some(1))?;
    let vga = ok(devices.create(0xb8000, fresh()), "device frame")?;
    ok(
        OWN_SPACE.map(vga, TEST_PAGES + 0x20_0000, Rights::READ | Rights::WRITE),
        "map device frame",
    )?;
    ok(OWN_SPACE.unmap(TEST_PAGES + 0x20_0000), "unmap device frame")?;
    Ok(())
}

/// PortReadString and PortWriteString on the CMOS ports `ports` (0x70 and
/// 0x71; `read_only` is a copy with only the read right): a register read
/// over and over is the same each time, a written string leaves its last
/// item selected, and bad lengths, buffers and rights are refused.
fn port_strings(ports: IoPorts, read_only: IoPorts) -> Check {
    const SELECT: u16 = 0x70;
    const DATA: u16 = 0x71;
    // Registers A and B, with NMIs kept off (bit 7), as `interrupts` does.
    let [a, b] = [0x8a, 0x8b].map(|register| {
        ports
            .write(SELECT, 1, register)
            .and_then(|()| ports.read(DATA, 1))
            .map(|value| value as u8)
    });
    let (a, b) = (ok(a, "read A")?, ok(b, "read B")?);
    ensure(a != b, &format!("registers A and B both read {a:#x}"))?;
    let mut items = [0u8; 8];
    ok(read_only.read_string(DATA, 1, &mut items), "read B eight times")?;
    ensure(items == [b; 8], &format!("B read {items:x?}, not {b:#x} each time"))?;
    ok(ports.write_string(SELECT, 1, &[0x8c, 0x8a, 0x8b]), "select C, A, then B")?;
    let selected = ok(ports.read(DATA, 1), "read the selected register")? as u8;
    ensure(selected == b, &format!("after the string, {selected:#x} is selected, not B ({b:#x})"))?;

    expect_error(ports.read_string(SELECT, 3, &mut items), ErrorKind::InvalidArgument, Some(2))?;
    expect_error(ports.read_string(DATA, 2, &mut items), ErrorKind::InvalidArgument, Some(1))?;
    expect_error(ports.read_string(SELECT, 2, &mut items[..3]), ErrorKind::InvalidLength, Some(4))?;
    expect_error(ports.read_string(DATA, 1, &mut []), ErrorKind::InvalidLength, Some(4))?;
    let mut long = [0u8; abi::PORT_STRING_MAX + 1];
    expect_error(ports.read_string(DATA, 1, &mut long), ErrorKind::InvalidLength, Some(4))?;
    expect_error(read_only.write_string(SELECT, 1, &[0x8b]), ErrorKind::InsufficientRights, Some(0))?;
    let (port, width) = (u64::from(DATA), 1);
    for (address, what) in [(UNMAPPED, "an unmapped buffer"), (b"read-only".as_ptr() as u64, "a read-only buffer")] {
        let read = call(Syscall::PortReadString, &[ports.0.0, port, width, address, 8]);
        expect_error(read, ErrorKind::InvalidAddress, Some(3)).map_err(|error| format!("{what}: {error}"))?;
    }
    let kernel = call(Syscall::PortWriteString, &[ports.0.0, port, width, 0xffff_8000_0000_0000, 8]);
    expect_error(kernel, ErrorKind::InvalidAddress, Some(3))
}

/// A guest-memory frame holding `code` at offset `offset`, mapped at
/// guest-physical `address` (read, write, execute); returns the frame.
fn guest_code(
    memory: runtime::capability::GuestMemory,
    address: u64,
    offset: usize,
    code: &[u8],
) -> Result<Frame, String> {
    let frame = ok(MEMORY.create_frame(fresh()), "guest frame")?;
    let window = ok(
        runtime::memory::Region::map(OWN_SPACE, core::iter::once(frame), Rights::READ | Rights::WRITE),
        "map guest frame here",
    )?;
    window
        .write(offset, code)
        .map_err(|_| String::from("code does not fit"))?;
    ok(
        memory.map(frame, address, Rights::READ | Rights::WRITE | Rights::EXECUTE),
        "guest map",
    )?;
    Ok(frame)
}

/// Runs `vcpu` once and checks the exit's kind.
fn run_expecting(
    vcpu: runtime::capability::Vcpu,
    page: &runtime::vcpu::StatePage,
    kind: abi::vcpu::ExitKind,
) -> Result<abi::vcpu::VcpuState, String> {
    // A host interrupt may end any run early; the guest then simply goes on.
    let mut number = ok(vcpu.run(), "vcpu run")?;
    while number == abi::vcpu::ExitKind::Preempted as u32 {
        number = ok(vcpu.run(), "vcpu run")?;
    }
    let state = page.read();
    ensure(
        number == kind as u32 && state.exit.kind == kind as u32,
        &format!("expected a {kind:?} exit, got {number} ({:?})", state.exit),
    )?;
    Ok(state)
}

fn virtualisation() -> Check {
    use abi::vcpu::{ExitKind, access, io};
    let memory = ok(MEMORY.create_guest_memory(fresh()), "guest memory")?;
    let vcpu = ok(MEMORY.create_vcpu(fresh()), "vcpu")?;
    let frame = ok(MEMORY.create_frame(fresh()), "frame")?;
    let all = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    // GuestMap checks the address, the rights and the frame.
    expect_error(memory.map(frame, 0x1001, all), ErrorKind::InvalidAddress, Some(2))?;
    expect_error(
        memory.map(frame, abi::vcpu::GUEST_PHYSICAL_END, all),
        ErrorKind::InvalidAddress,
        Some(2),
    )?;
    expect_error(
        memory.map(frame, 0x1000, Rights::WRITE),
        ErrorKind::InvalidArgument,
        Some(3),
    )?;
    let read_only = Frame(fresh());
    ok(
        capability::mint(frame, Destination::own(read_only.0), Rights::READ, 0),
        "mint",
    )?;
    expect_error(
        memory.map(read_only, 0x1000, all),
        ErrorKind::InsufficientRights,
        Some(3),
    )?;
    expect_error(
        memory.map(Frame(OWN_SPACE.0), 0x1000, all),
        ErrorKind::WrongObjectType,
        Some(1),
    )?;
    let device = ok(
        DeviceMemoryControl(Slot(slot::DEVICE_MEMORY_CONTROL)).create(0xfebf_0000, fresh()),
        "device frame",
    )?;
    expect_error(memory.map(device, 0x1000, all), ErrorKind::InvalidArgument, Some(1))?;
    ok(memory.map(frame, 0x8000, all), "map")?;
    expect_error(memory.map(frame, 0x8000, all), ErrorKind::AlreadyMapped, Some(2))?;
    expect_error(memory.unmap(0x9000), ErrorKind::NotMapped, Some(1))?;
    ok(memory.unmap(0x8000), "unmap")?;
    // A vcpu runs only once bound, and is bound once.
    expect_error(vcpu.run(), ErrorKind::InvalidState, Some(0))?;
    let page_frame = ok(MEMORY.create_frame(fresh()), "state page")?;
    expect_error(
        vcpu.configure(memory, Frame(OWN_SPACE.0)),
        ErrorKind::WrongObjectType,
        Some(2),
    )?;
    ok(vcpu.configure(memory, page_frame), "configure")?;
    expect_error(vcpu.configure(memory, page_frame), ErrorKind::InvalidState, Some(0))?;
    let page = ok(runtime::vcpu::StatePage::map(OWN_SPACE, page_frame), "map state page")?;
    // From reset, the first fetch (F000:FFF0) finds no memory.
    let state = run_expecting(vcpu, &page, ExitKind::NestedPageFault)?;
    ensure(
        state.exit.a == 0xffff_fff0 && state.exit.b & access::EXECUTE != 0,
        "the reset fetch faults at 0xfffffff0",
    )?;
    // Real-mode code at 0x1000: CPUID; MOV AL, 0x41; OUT 0xF4, AL; a read
    // of unmapped 0x5000; HLT.
    guest_code(
        memory,
        0x1000,
        0,
        &[0x0f, 0xa2, 0xb0, 0x41, 0xe6, 0xf4, 0xa0, 0x00, 0x50, 0xf4],
    )?;
    let mut state = page.read();
    state.segments.cs.selector = 0;
    state.segments.cs.base = 0;
    state.registers.rip = 0x1000;
    state.load = abi::vcpu::group::SEGMENTS;
    page.write(&state);
    let state = run_expecting(vcpu, &page, ExitKind::Cpuid)?;
    ensure(
        state.registers.rip == 0x1000 && state.exit.instruction_length == 2,
        "CPUID at 0x1000, two bytes",
    )?;
    let mut state = state;
    state.registers.rip += 2;
    page.write(&state);
    let state = run_expecting(vcpu, &page, ExitKind::PortIo)?;
    ensure(
        state.exit.a == 0xf4
            && state.exit.b & io::WRITE != 0
            && state.exit.b & io::SIZE_MASK == 1
            && state.exit.c == 0x41,
        &format!("OUT 0xF4 of 0x41: {:?}", state.exit),
    )?;
    let mut state = state;
    state.registers.rip += u64::from(state.exit.instruction_length);
    page.write(&state);
    // Isolation: memory never mapped exits instead of being reached.
    let state = run_expecting(vcpu, &page, ExitKind::NestedPageFault)?;
    ensure(
        state.exit.a == 0x5000 && state.exit.b & access::READ != 0,
        &format!("the read of 0x5000: {:?}", state.exit),
    )?;
    let mut state = state;
    state.registers.rip += 3;
    page.write(&state);
    let halted = run_expecting(vcpu, &page, ExitKind::Hlt)?;
    // A state the hardware refuses (long mode without PAE) fails the run
    // with InvalidState. Loaded whole again (QEMU's SVM leaves the guest
    // state it refused changed), the vcpu runs on: it halts again, as the
    // exit left `rip` at the HLT.
    let mut refused = halted;
    refused.control.cr0 |= 0x8000_0001;
    refused.control.efer |= 0x100;
    refused.control.cr4 = 0;
    refused.load = abi::vcpu::group::CONTROL;
    page.write(&refused);
    run_expecting(vcpu, &page, ExitKind::InvalidState)?;
    let mut fixed = halted;
    fixed.load = abi::vcpu::group::ALL;
    page.write(&fixed);
    run_expecting(vcpu, &page, ExitKind::Hlt)?;
    // Once its copy of the state page's capability is revoked, the vcpu no
    // longer runs.
    ok(
        capability::revoke(Destination::own(page_frame.0)),
        "revoke the state page",
    )?;
    expect_error(vcpu.run(), ErrorKind::InvalidState, Some(0))
}
