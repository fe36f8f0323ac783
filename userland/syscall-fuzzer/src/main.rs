//! syscall-fuzzer: a hostile init. It makes at least 100,000 syscalls with
//! random, seeded arguments (random slots, kernel and unmapped pointers,
//! misaligned addresses, huge lengths, wrong object types) while helper
//! threads sit blocked on the endpoints and notifications it deletes and
//! revokes under them. Every call must come back with success or a
//! well-formed error; then the kernel must still work.
//!
//! It first moves its own capabilities out of reach (to slots the random
//! arguments never name) and hands the random calls a playground of
//! capabilities in slots 1..[`PLAYGROUND`], paid for by a small pool, so
//! whatever the calls do, they cannot take init's own thread, address space
//! or memory away. Hardware authority (ports, irqs, device memory) stays
//! out of the playground: writing random ports may legitimately reset the
//! machine.

#![no_std]
#![no_main]

use abi::init::slot;
use abi::{ErrorKind, MessageTag, ObjectType, Rights, Syscall};
use runtime::capability::{self, AddressSpace, CSpace, Destination, Endpoint, Memory, Notification, Slot, Slots};
use runtime::ipc::Message;
use runtime::println;
use runtime::syscall::invoke_number;
use runtime::thread::ThreadSpawn;

runtime::entry!(main);

/// Random slot arguments fall in 0..PLAYGROUND.
const PLAYGROUND: u64 = 48;
/// Where init's own capabilities are moved, out of the random calls' reach.
const SAFE: u64 = 3000;
const OWN_THREAD: Slot = Slot(SAFE);
const OWN_SPACE: AddressSpace = AddressSpace(Slot(SAFE + 1));
const OWN_CSPACE: CSpace = CSpace(Slot(SAFE + 2));
const MEMORY: Memory = Memory(Slot(SAFE + 3));
/// The seed; the test prints it so a failure can be replayed.
const SEED: u64 = 0x5eed_1234_abcd_0001;
/// Syscalls to make.
const CALLS: u64 = 100_000;

/// A small xorshift generator: deterministic for a seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The syscalls the random calls choose from: all that cannot block the
/// fuzzer for long or end it (`Sleep` only with its own small arguments,
/// below). (Blocking receive, wait and call are made
/// only where a counterpart is sure to answer; see `main`.)
const CHOICES: &[Syscall] = &[
    Syscall::Yield,
    Syscall::Clock,
    Syscall::SendNonBlocking,
    Syscall::ReceiveNonBlocking,
    Syscall::Reply,
    Syscall::Signal,
    Syscall::Poll,
    Syscall::CapabilityCopy,
    Syscall::CapabilityMint,
    Syscall::CapabilityMove,
    Syscall::CapabilityDelete,
    Syscall::CapabilityRevoke,
    Syscall::CapabilityIdentify,
    Syscall::Create,
    Syscall::Map,
    Syscall::Unmap,
    Syscall::ThreadConfigure,
    Syscall::ThreadWriteRegisters,
    Syscall::ThreadReadRegisters,
    Syscall::ThreadStart,
    Syscall::ThreadStop,
    Syscall::ThreadSetPriority,
    Syscall::IrqBind,
    Syscall::IrqAcknowledge,
    Syscall::PortRead,
    Syscall::PortWrite,
    Syscall::PortReadString,
    Syscall::PortWriteString,
];

/// An argument worth trying: mostly playground slots, else the values that
/// break careless kernels.
fn argument(random: &mut Random) -> u64 {
    let value = match random.below(16) {
        0..=6 => random.below(PLAYGROUND),
        7 => random.next(),
        8 => 0xffff_8000_0000_0000 + random.below(1 << 40) * 8,
        9 => 0x0000_4000_0000_0000 + random.below(64) * 4096 + random.below(2) * random.below(4096),
        10 => [0, 1, u64::MAX, u64::MAX - 7, 1 << 47, (1 << 47) - 4096][random.below(6) as usize],
        11 => random.below(16),
        12 => u64::from(Rights::all().bits()) & random.next(),
        13 => MessageTag {
            label: random.next() as u32,
            words: random.below(140) as u8,
            capabilities: random.below(6) as u8,
        }
        .to_raw(),
        14 => 0x40_0000 + random.below(256) * 4096,
        _ => random.below(1 << 20),
    };
    // Never name a slot outside the playground that exists: that is where
    // init's own capabilities are.
    if (PLAYGROUND..abi::init::CSPACE_SLOTS).contains(&value) {
        value % PLAYGROUND
    } else {
        value
    }
}

/// Whether a raw status is success or an error this ABI defines, naming
/// an argument that exists.
fn well_formed(status: u64) -> bool {
    if status == 0 {
        return true;
    }
    let kind_known = ErrorKind::ALL.iter().any(|kind| *kind as u64 == status & 0xffff);
    let argument = (status >> 16) & 0xff;
    kind_known && argument <= 6 && status >> 24 == 0
}

/// Makes `number` with `arguments`; returns the raw status.
fn raw_call(number: Syscall, arguments: [u64; 6], words: [u64; 4]) -> u64 {
    let [a0, a1, a2, a3, a4, a5] = arguments;
    match invoke_number(
        number as u64,
        [a0, a1, a2, a3, a4, a5, words[0], words[1], words[2], words[3]],
    ) {
        Ok(_) => 0,
        Err(error) => error.to_status(),
    }
}

fn main() -> u64 {
    let slots = Slots::new(SAFE + 10, abi::init::CSPACE_SLOTS);
    // Out of reach: init's own capabilities.
    let moves = [
        (slot::THREAD, OWN_THREAD.0),
        (slot::ADDRESS_SPACE, OWN_SPACE.0.0),
        (slot::CSPACE, OWN_CSPACE.0.0),
        (slot::MEMORY, MEMORY.0.0),
        (slot::IPC_BUFFER_FRAME, SAFE + 4),
        (slot::PORT_CONTROL, SAFE + 5),
        (slot::IRQ_CONTROL, SAFE + 6),
        (slot::DEVICE_MEMORY_CONTROL, SAFE + 7),
    ];
    for (from, to) in moves {
        if capability::move_to(Slot(from), Destination::own(Slot(to))).is_err() {
            println!("syscall-fuzzer: cannot move slot {from} away");
            return 1;
        }
    }
    let Ok(playground_pool) = MEMORY.create_pool(Slot(1), 4 << 20) else {
        return 1;
    };
    let served = match populate_playground(playground_pool, &slots) {
        Ok(served) => served,
        Err(error) => {
            println!("syscall-fuzzer: setting up the playground failed: {error:?}");
            return 1;
        }
    };
    println!("syscall-fuzzer: seed {SEED:#x}, {CALLS} calls");
    let mut random = Random(SEED);
    let mut succeeded = 0u64;
    let mut refused = 0u64;
    let mut malformed = 0u64;
    for call in 0..CALLS {
        let status = if call % 97 == 0 {
            // A call that is always answered: the echo helper replies.
            let message = Message::new(random.next() as u32, &[random.next(), random.next()]);
            match served.call(&message) {
                Ok(_) => 0,
                Err(error) => error.to_status(),
            }
        } else {
            let number = CHOICES[random.below(CHOICES.len() as u64) as usize];
            // The first argument is nearly always a slot: most calls then get
            // past the capability lookup and into the deeper checks.
            let mut arguments = [0; 6].map(|_: u64| argument(&mut random));
            if random.below(8) != 0 {
                arguments[0] = random.below(PLAYGROUND);
            }
            raw_call(
                number,
                arguments,
                [random.next(), random.next(), random.next(), random.next()],
            )
        };
        if !well_formed(status) {
            malformed += 1;
            println!("syscall-fuzzer: call {call}: malformed status {status:#x}");
        } else if status == 0 {
            succeeded += 1;
        } else {
            refused += 1;
        }
        // Short sleeps now and then, with the timer waking the fuzzer.
        if call % 5000 == 0 {
            let status = raw_call(Syscall::Sleep, [random.below(3), 0, 0, 0, 0, 0], [0; 4]);
            if !well_formed(status) {
                malformed += 1;
            }
        }
        // Calls to undefined numbers and deliberately bad pointers too.
        if call % 1000 == 0 {
            let bad = raw_call_number(random.next() | 0x100);
            let write = raw_call(
                Syscall::DebugWrite,
                [0xffff_8000_0000_0000 + random.below(1 << 30), 8, 0, 0, 0, 0],
                [0; 4],
            );
            if !well_formed(bad) || bad == 0 || !well_formed(write) || write == 0 {
                malformed += 1;
            }
        }
    }
    println!(
        "syscall-fuzzer: {CALLS} calls: {succeeded} succeeded, {refused} refused with an error, {malformed} malformed"
    );
    if still_works(&slots) {
        println!("syscall-fuzzer: the kernel still works");
    } else {
        println!("syscall-fuzzer: the kernel no longer serves simple requests");
        return 1;
    }
    u64::from(malformed > 0)
}

fn raw_call_number(number: u64) -> u64 {
    match invoke_number(number, [0; 10]) {
        Ok(_) => 0,
        Err(error) => error.to_status(),
    }
}

/// Fills playground slots 2.. with objects of every kind the fuzzer may
/// touch, and starts helper threads blocked on them. Returns an endpoint
/// outside the playground that a helper always answers.
fn populate_playground(pool: Memory, slots: &Slots) -> Result<Endpoint, abi::Error> {
    let endpoints: [Endpoint; 4] = [2, 3, 4, 5].map(|index| Endpoint(Slot(index)));
    for endpoint in endpoints {
        pool.create_endpoint(endpoint.0)?;
    }
    let notifications: [Notification; 2] = [6, 7].map(|index| Notification(Slot(index)));
    for notification in notifications {
        pool.create_notification(notification.0)?;
    }
    capability::mint(notifications[0], Destination::own(Slot(8)), Rights::ALL, 0b11)?;
    capability::mint(
        endpoints[0],
        Destination::own(Slot(9)),
        Rights::WRITE | Rights::GRANT,
        0x77,
    )?;
    for index in 10..14 {
        pool.create_frame(Slot(index))?;
    }
    pool.create_address_space(Slot(14))?;
    pool.create_cspace(Slot(15), 32)?;
    pool.create_thread(Slot(16))?;
    runtime::capability::PortControl(Slot(SAFE + 5)).create(0x70, 2, Slot(18))?;

    // Helpers: blocked receivers and waiters on playground objects (for the
    // fuzzer to delete and revoke under them), and an echo server outside.
    let fault_sink = pool.create_endpoint(Slot(SAFE + 8))?;
    let spawner = ThreadSpawn {
        memory: MEMORY,
        address_space: OWN_SPACE,
        cspace: OWN_CSPACE,
        slots,
        fault_endpoint: Some(fault_sink),
        priority: Some(abi::init::PRIORITY),
        stack_pages: runtime::thread::STACK_PAGES,
    };
    for endpoint in endpoints {
        spawner.spawn(move |_| {
            // Keep receiving until the endpoint is gone.
            while endpoint.receive().is_ok() {}
            0
        })?;
    }
    for notification in notifications {
        spawner.spawn(move |_| {
            while notification.wait().is_ok() {}
            0
        })?;
    }
    let served = MEMORY.create_endpoint(slots.allocate()?)?;
    spawner.spawn(move |_| {
        let Ok(mut request) = served.receive() else { return 1 };
        loop {
            let reply = Message::new(request.message.label, &[request.badge]);
            request = match served.reply_receive(&reply) {
                Ok(request) => request,
                Err(_) => return 2,
            };
        }
    })?;
    Ok(served)
}

/// After the storm: can init still make, use and drop objects?
fn still_works(slots: &Slots) -> bool {
    let check = || -> Result<bool, abi::Error> {
        let notification = MEMORY.create_notification(slots.allocate()?)?;
        let badged = Notification(slots.allocate()?);
        capability::mint(notification, Destination::own(badged.0), Rights::WRITE, 0x40)?;
        badged.signal()?;
        let word = notification.wait()?;
        let frame = MEMORY.create_frame(slots.allocate()?)?;
        let address = 0x0000_4800_0000_0000;
        OWN_SPACE.map(frame, address, Rights::READ | Rights::WRITE)?;
        // SAFETY: the frame was just mapped writable at this address.
        let value = unsafe {
            (address as *mut u64).write_volatile(0xfeed);
            (address as *const u64).read_volatile()
        };
        OWN_SPACE.unmap(address)?;
        let identity = capability::identify(frame)?;
        Ok(word == 0x40 && value == 0xfeed && identity.object_type == Some(ObjectType::Frame))
    };
    check().unwrap_or(false)
}
