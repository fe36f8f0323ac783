//! Every blocking and waking transition of the IPC state machine.

use super::*;

const CLIENT: ThreadId = ThreadId(1);
const SERVER: ThreadId = ThreadId(2);
const OTHER: ThreadId = ThreadId(3);
const ENDPOINT: EndpointId = EndpointId(0);
const NOTIFICATION: NotificationId = NotificationId(0);

/// Client, server and a third thread, all started at priority 10, plus an
/// endpoint and a notification.
fn setup() -> Ipc {
    let mut ipc = Ipc::new();
    for thread in [CLIENT, SERVER, OTHER] {
        ipc.add_thread(thread, 10);
        ipc.start(thread).unwrap();
    }
    ipc.add_endpoint(ENDPOINT);
    ipc.add_notification(NOTIFICATION);
    ipc
}

fn transfer(from: ThreadId, to: ThreadId, badge: u64, kind: TransferKind) -> Delivery {
    Delivery::Delivered(Transfer {
        from,
        to,
        badge,
        kind,
        grant: false,
    })
}

fn runnable(ipc: &Ipc, thread: ThreadId) -> bool {
    ipc.state(thread) == Some(State::Runnable)
}

#[test]
fn send_blocks_until_a_receiver_takes_it() {
    let mut ipc = setup();
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 7, SendKind::Send, false, true),
        Ok(Delivery::Blocked)
    );
    assert!(matches!(ipc.state(CLIENT), Some(State::Sending { badge: 7, .. })));
    assert_eq!(ipc.scheduler.runnable(), 2, "the blocked sender left the run queue");
    assert_eq!(
        ipc.receive(SERVER, ENDPOINT, true),
        Ok(transfer(CLIENT, SERVER, 7, TransferKind::Send))
    );
    assert!(runnable(&ipc, CLIENT) && runnable(&ipc, SERVER));
    assert_eq!(ipc.scheduler.runnable(), 3);
}

#[test]
fn receive_blocks_until_a_sender_arrives() {
    let mut ipc = setup();
    assert_eq!(ipc.receive(SERVER, ENDPOINT, true), Ok(Delivery::Blocked));
    assert_eq!(ipc.state(SERVER), Some(State::Receiving { endpoint: ENDPOINT }));
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 3, SendKind::Send, true, true),
        Ok(Delivery::Delivered(Transfer {
            from: CLIENT,
            to: SERVER,
            badge: 3,
            kind: TransferKind::Send,
            grant: true
        }))
    );
    assert!(runnable(&ipc, CLIENT) && runnable(&ipc, SERVER));
}

#[test]
fn non_blocking_calls_fail_and_change_nothing() {
    let mut ipc = setup();
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 0, SendKind::Send, false, false),
        Err(IpcError::WouldBlock)
    );
    assert_eq!(ipc.receive(SERVER, ENDPOINT, false), Err(IpcError::WouldBlock));
    assert!(runnable(&ipc, CLIENT) && runnable(&ipc, SERVER));
    assert_eq!(ipc.scheduler.runnable(), 3);
    // With a peer waiting, the non-blocking forms succeed.
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    assert!(matches!(
        ipc.send(CLIENT, ENDPOINT, 0, SendKind::Send, false, false),
        Ok(Delivery::Delivered(_))
    ));
}

#[test]
fn call_and_reply() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 9, SendKind::Call, false, true),
        Ok(transfer(CLIENT, SERVER, 9, TransferKind::Call))
    );
    assert_eq!(
        ipc.state(CLIENT),
        Some(State::AwaitingReply {
            server: SERVER,
            fault: false
        })
    );
    assert_eq!(ipc.scheduler.runnable(), 2, "the caller waits off the run queue");
    let reply = ipc.reply(SERVER).unwrap();
    assert_eq!(
        reply,
        Transfer {
            from: SERVER,
            to: CLIENT,
            badge: 0,
            kind: TransferKind::Reply,
            grant: true
        }
    );
    assert!(runnable(&ipc, CLIENT));
    assert_eq!(
        ipc.reply(SERVER),
        Err(IpcError::NoReplyTarget),
        "the reply right is one-shot"
    );
}

#[test]
fn a_queued_call_is_received_later() {
    let mut ipc = setup();
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 1, SendKind::Call, false, true),
        Ok(Delivery::Blocked)
    );
    assert_eq!(
        ipc.receive(SERVER, ENDPOINT, true),
        Ok(transfer(CLIENT, SERVER, 1, TransferKind::Call))
    );
    assert_eq!(
        ipc.state(CLIENT),
        Some(State::AwaitingReply {
            server: SERVER,
            fault: false
        })
    );
    assert!(runnable(&ipc, SERVER));
    ipc.reply(SERVER).unwrap();
    assert!(runnable(&ipc, CLIENT));
}

#[test]
fn reply_without_a_call_is_refused() {
    let mut ipc = setup();
    assert_eq!(ipc.reply(SERVER), Err(IpcError::NoReplyTarget));
}

#[test]
fn senders_are_served_by_priority_then_in_order() {
    let mut ipc = setup();
    let low = ThreadId(10);
    let high = ThreadId(11);
    let low_again = ThreadId(12);
    for (thread, priority) in [(low, 1), (high, 50), (low_again, 1)] {
        ipc.add_thread(thread, priority);
        ipc.start(thread).unwrap();
        ipc.send(thread, ENDPOINT, u64::from(thread.0), SendKind::Send, false, true)
            .unwrap();
    }
    let order: Vec<u64> = (0..3)
        .map(|_| match ipc.receive(SERVER, ENDPOINT, true).unwrap() {
            Delivery::Delivered(transfer) => transfer.badge,
            Delivery::Blocked => panic!("a sender was queued"),
        })
        .collect();
    assert_eq!(order, [11, 10, 12]);
}

#[test]
fn set_priority_reorders_a_waiting_sender() {
    let mut ipc = setup();
    ipc.send(CLIENT, ENDPOINT, 1, SendKind::Send, false, true).unwrap();
    ipc.send(OTHER, ENDPOINT, 3, SendKind::Send, false, true).unwrap();
    ipc.set_priority(OTHER, 99);
    assert_eq!(
        ipc.receive(SERVER, ENDPOINT, true),
        Ok(transfer(OTHER, SERVER, 3, TransferKind::Send))
    );
}

#[test]
fn destroying_an_endpoint_wakes_every_waiter_with_peer_died() {
    let mut ipc = setup();
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true).unwrap();
    ipc.send(OTHER, ENDPOINT, 0, SendKind::Send, false, true).unwrap();
    let second = EndpointId(1);
    ipc.add_endpoint(second);
    ipc.receive(SERVER, second, true).unwrap();
    ipc.remove_endpoint(ENDPOINT);
    ipc.remove_endpoint(second);
    let mut woken = ipc.take_peer_died();
    woken.sort();
    assert_eq!(woken, [CLIENT, SERVER, OTHER]);
    assert!([CLIENT, SERVER, OTHER].iter().all(|thread| runnable(&ipc, *thread)));
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 0, SendKind::Send, false, true),
        Err(IpcError::NoSuchObject)
    );
}

#[test]
fn destroying_the_server_wakes_its_caller_with_peer_died() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true).unwrap();
    ipc.remove_thread(SERVER);
    assert_eq!(ipc.take_peer_died(), [CLIENT]);
    assert!(runnable(&ipc, CLIENT));
    assert_eq!(ipc.state(SERVER), None);
}

#[test]
fn destroying_a_receiving_server_leaves_queued_callers_for_the_next_one() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.remove_thread(SERVER);
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true),
        Ok(Delivery::Blocked)
    );
    assert!(ipc.take_peer_died().is_empty());
    assert_eq!(
        ipc.receive(OTHER, ENDPOINT, true),
        Ok(transfer(CLIENT, OTHER, 0, TransferKind::Call))
    );
}

#[test]
fn reply_to_a_caller_that_died_fails_with_peer_died() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true).unwrap();
    ipc.remove_thread(CLIENT);
    assert_eq!(ipc.reply(SERVER), Err(IpcError::PeerDied));
    assert_eq!(
        ipc.reply(SERVER),
        Err(IpcError::NoReplyTarget),
        "the failed reply used the right up"
    );
    assert!(ipc.take_peer_died().is_empty());
}

#[test]
fn reply_to_a_caller_that_was_stopped_fails_with_peer_died() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true).unwrap();
    ipc.stop(CLIENT);
    assert_eq!(ipc.reply(SERVER), Err(IpcError::PeerDied));
    assert_eq!(ipc.state(CLIENT), Some(State::Stopped));
}

#[test]
fn receiving_again_without_replying_releases_the_caller() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true).unwrap();
    assert_eq!(ipc.receive(SERVER, ENDPOINT, true), Ok(Delivery::Blocked));
    assert_eq!(ipc.take_peer_died(), [CLIENT]);
    assert!(runnable(&ipc, CLIENT));
}

#[test]
fn stopping_a_queued_sender_withdraws_its_message() {
    let mut ipc = setup();
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Send, false, true).unwrap();
    ipc.stop(CLIENT);
    assert_eq!(ipc.state(CLIENT), Some(State::Stopped));
    assert_eq!(ipc.receive(SERVER, ENDPOINT, false), Err(IpcError::WouldBlock));
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.stop(SERVER);
    assert_eq!(
        ipc.send(OTHER, ENDPOINT, 0, SendKind::Send, false, false),
        Err(IpcError::WouldBlock)
    );
}

#[test]
fn only_runnable_threads_send_and_receive_and_only_stopped_ones_start() {
    let mut ipc = setup();
    ipc.stop(CLIENT);
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 0, SendKind::Send, false, true),
        Err(IpcError::InvalidState)
    );
    assert_eq!(ipc.receive(CLIENT, ENDPOINT, true), Err(IpcError::InvalidState));
    assert_eq!(ipc.start(SERVER), Err(IpcError::InvalidState));
    assert_eq!(ipc.start(ThreadId(99)), Err(IpcError::NoSuchObject));
    ipc.start(CLIENT).unwrap();
    assert!(runnable(&ipc, CLIENT));
}

#[test]
fn faults_are_calls_whose_reply_leaves_the_thread_stopped() {
    let mut ipc = setup();
    ipc.stop(CLIENT); // the kernel stops a faulting thread first
    assert_eq!(
        ipc.send(CLIENT, ENDPOINT, 4, SendKind::Fault, false, true),
        Ok(Delivery::Blocked)
    );
    assert_eq!(
        ipc.receive(SERVER, ENDPOINT, true),
        Ok(transfer(CLIENT, SERVER, 4, TransferKind::Fault))
    );
    assert_eq!(
        ipc.state(CLIENT),
        Some(State::AwaitingReply {
            server: SERVER,
            fault: true
        })
    );
    let reply = ipc.reply(SERVER).unwrap();
    assert_eq!(reply.kind, TransferKind::FaultReply);
    assert_eq!(
        ipc.state(CLIENT),
        Some(State::Stopped),
        "the kernel decides whether to resume"
    );
    ipc.start(CLIENT).unwrap();
    assert!(runnable(&ipc, CLIENT));
}

#[test]
fn a_faulted_thread_whose_handler_dies_stays_stopped() {
    let mut ipc = setup();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    ipc.stop(CLIENT);
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Fault, false, true).unwrap();
    ipc.remove_thread(SERVER);
    assert_eq!(ipc.state(CLIENT), Some(State::Stopped));
    assert!(
        ipc.take_peer_died().is_empty(),
        "its registers hold the fault, not a syscall result"
    );
    // Queued fault messages on a destroyed endpoint likewise.
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Fault, false, true).unwrap();
    ipc.remove_endpoint(ENDPOINT);
    assert_eq!(ipc.state(CLIENT), Some(State::Stopped));
    assert!(ipc.take_peer_died().is_empty());
}

#[test]
fn signals_accumulate_until_waited_for() {
    let mut ipc = setup();
    assert_eq!(ipc.signal(NOTIFICATION, 0b01), Ok(None));
    assert_eq!(ipc.signal(NOTIFICATION, 0b10), Ok(None));
    assert_eq!(ipc.wait(CLIENT, NOTIFICATION, true), Ok(Some(0b11)));
    assert_eq!(
        ipc.wait(CLIENT, NOTIFICATION, false),
        Ok(Some(0)),
        "poll finds the word cleared"
    );
}

#[test]
fn wait_blocks_until_a_signal() {
    let mut ipc = setup();
    assert_eq!(ipc.wait(CLIENT, NOTIFICATION, true), Ok(None));
    assert_eq!(
        ipc.state(CLIENT),
        Some(State::Waiting {
            notification: NOTIFICATION
        })
    );
    assert_eq!(ipc.signal(NOTIFICATION, 0), Ok(None), "a zero badge wakes nobody");
    assert_eq!(ipc.signal(NOTIFICATION, 0x40), Ok(Some((CLIENT, 0x40))));
    assert!(runnable(&ipc, CLIENT));
    assert_eq!(ipc.wait(CLIENT, NOTIFICATION, false), Ok(Some(0)));
}

#[test]
fn destroying_a_notification_wakes_its_waiters() {
    let mut ipc = setup();
    ipc.wait(CLIENT, NOTIFICATION, true).unwrap();
    ipc.remove_notification(NOTIFICATION);
    assert_eq!(ipc.take_peer_died(), [CLIENT]);
    assert_eq!(ipc.signal(NOTIFICATION, 1), Err(IpcError::NoSuchObject));
}

#[test]
fn stopping_a_waiter_removes_it() {
    let mut ipc = setup();
    ipc.wait(CLIENT, NOTIFICATION, true).unwrap();
    ipc.stop(CLIENT);
    assert_eq!(ipc.signal(NOTIFICATION, 1), Ok(None));
    assert_eq!(ipc.state(CLIENT), Some(State::Stopped));
}

#[test]
fn the_scheduler_runs_whoever_is_left() {
    let mut ipc = setup();
    assert_eq!(ipc.scheduler.choose(), Some(CLIENT));
    ipc.send(CLIENT, ENDPOINT, 0, SendKind::Call, false, true).unwrap();
    assert_eq!(ipc.scheduler.choose(), Some(SERVER));
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    assert_eq!(ipc.scheduler.choose(), Some(SERVER));
    ipc.reply(SERVER).unwrap();
    ipc.receive(SERVER, ENDPOINT, true).unwrap();
    assert_eq!(ipc.scheduler.choose(), Some(OTHER));
}

#[test]
fn sleepers_wake_when_their_tick_comes() {
    let mut ipc = setup();
    ipc.sleep(CLIENT, 10).unwrap();
    ipc.sleep(SERVER, 5).unwrap();
    assert_eq!(ipc.state(CLIENT), Some(State::Sleeping { until: 10 }));
    assert_eq!(ipc.scheduler.runnable(), 1);
    assert!(ipc.wake_sleepers(4).is_empty());
    assert_eq!(ipc.wake_sleepers(5), [SERVER]);
    assert!(runnable(&ipc, SERVER) && !runnable(&ipc, CLIENT));
    assert_eq!(ipc.wake_sleepers(100), [CLIENT]);
    assert!(runnable(&ipc, CLIENT));
    assert!(ipc.wake_sleepers(1000).is_empty(), "each sleeper wakes once");
}

#[test]
fn a_stopped_sleeper_does_not_wake() {
    let mut ipc = setup();
    ipc.sleep(CLIENT, 3).unwrap();
    ipc.stop(CLIENT);
    assert!(ipc.wake_sleepers(10).is_empty());
    assert_eq!(ipc.state(CLIENT), Some(State::Stopped));
    assert_eq!(
        ipc.sleep(CLIENT, 5),
        Err(IpcError::InvalidState),
        "only runnable threads sleep"
    );
}

/// Checks that every queue, record and list agrees with every thread's
/// state: the invariants the kernel relies on when it pops a queue or wakes
/// a recorded caller.
fn check_invariants(ipc: &Ipc, context: &str) {
    let threads: Vec<(ThreadId, &ThreadIpc)> = ipc
        .threads
        .0
        .iter()
        .enumerate()
        .filter_map(|(index, record)| Some((ThreadId(index as u32), record.as_ref()?)))
        .collect();
    let mut queued: Vec<ThreadId> = Vec::new();
    for (index, endpoint) in ipc.endpoints.0.iter().enumerate() {
        let Some(endpoint) = endpoint else { continue };
        let id = EndpointId(index as u32);
        for sender in endpoint.senders.iter() {
            assert!(
                matches!(ipc.state(sender), Some(State::Sending { endpoint, .. }) if endpoint == id),
                "{context}: {sender:?} queued to send on {id:?} but {:?}",
                ipc.state(sender)
            );
            queued.push(sender);
        }
        for receiver in endpoint.receivers.iter() {
            assert_eq!(
                ipc.state(receiver),
                Some(State::Receiving { endpoint: id }),
                "{context}: {receiver:?} queued to receive on {id:?}"
            );
            queued.push(receiver);
        }
    }
    for (index, notification) in ipc.notifications.0.iter().enumerate() {
        let Some(notification) = notification else { continue };
        let id = NotificationId(index as u32);
        for waiter in notification.waiters.iter() {
            assert_eq!(
                ipc.state(waiter),
                Some(State::Waiting { notification: id }),
                "{context}: {waiter:?} queued on {id:?}"
            );
            queued.push(waiter);
        }
    }
    for &(until, sleeper) in &ipc.sleepers {
        assert_eq!(
            ipc.state(sleeper),
            Some(State::Sleeping { until }),
            "{context}: {sleeper:?} asleep"
        );
        queued.push(sleeper);
    }
    let mut unique = queued.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        queued.len(),
        "{context}: a thread waits in two places: {queued:?}"
    );
    let mut runnable = 0;
    for &(thread, record) in &threads {
        let waits_somewhere = queued.contains(&thread);
        match record.state {
            State::Sending { endpoint, .. } | State::Receiving { endpoint } => {
                assert!(
                    waits_somewhere,
                    "{context}: {thread:?} blocked on {endpoint:?} outside its queues"
                );
            }
            State::Waiting { .. } | State::Sleeping { .. } => {
                assert!(
                    waits_somewhere,
                    "{context}: {thread:?} {:?} but not queued",
                    record.state
                );
            }
            State::AwaitingReply { server, .. } => {
                let held = ipc.threads.get(server.0).and_then(|server| server.caller);
                assert_eq!(
                    held,
                    Some(Caller::Waiting(thread)),
                    "{context}: {thread:?} awaits {server:?}, which does not hold its reply right"
                );
            }
            State::Runnable => runnable += 1,
            State::Stopped => {}
        }
        if let Some(Caller::Waiting(caller)) = record.caller {
            assert!(
                matches!(ipc.state(caller), Some(State::AwaitingReply { server, .. }) if server == thread),
                "{context}: {thread:?} holds the reply right of {caller:?}, which is {:?}",
                ipc.state(caller)
            );
        }
    }
    assert_eq!(
        ipc.scheduler.runnable(),
        runnable,
        "{context}: run queue and states disagree"
    );
    if let Some(current) = ipc.scheduler.current() {
        assert_eq!(
            ipc.state(current),
            Some(State::Runnable),
            "{context}: {current:?} on the CPU"
        );
    }
}

/// Random syscalls by whichever thread runs, and random teardown and reuse
/// of threads, endpoints and notifications, as the kernel drives them: after
/// every step the invariants hold and every thread woken with `PeerDied` is
/// runnable.
#[test]
fn random_operations_keep_every_queue_consistent() {
    use crate::test_random::Random;
    const THREADS: u32 = 7;
    const ENDPOINTS: u32 = 3;
    const NOTIFICATIONS: u32 = 2;
    for seed in 1..=300u64 {
        let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut ipc = Ipc::new();
        for thread in 0..THREADS {
            ipc.add_thread(ThreadId(thread), random.below(4) as u8 * 10);
            ipc.start(ThreadId(thread)).unwrap();
        }
        (0..ENDPOINTS).for_each(|endpoint| ipc.add_endpoint(EndpointId(endpoint)));
        (0..NOTIFICATIONS).for_each(|notification| ipc.add_notification(NotificationId(notification)));
        let mut now = 0;
        for step in 0..3_000 {
            let endpoint = EndpointId(random.below(u64::from(ENDPOINTS)) as u32);
            let notification = NotificationId(random.below(u64::from(NOTIFICATIONS)) as u32);
            let anyone = ThreadId(random.below(u64::from(THREADS)) as u32);
            let blocking = random.chance(80);
            let operation = random.below(22);
            let done = match (ipc.scheduler.choose(), operation) {
                (Some(current), 0..=2) => {
                    let kind = if random.chance(50) {
                        SendKind::Send
                    } else {
                        SendKind::Call
                    };
                    let _ = ipc.send(current, endpoint, step, kind, false, blocking);
                    "send"
                }
                (Some(current), 3..=5) => {
                    let _ = ipc.receive(current, endpoint, blocking);
                    "receive"
                }
                (Some(current), 6 | 7) => {
                    let _ = ipc.reply(current);
                    if random.chance(50) {
                        let _ = ipc.receive(current, endpoint, true);
                    }
                    "reply"
                }
                (Some(current), 8) => {
                    let _ = ipc.wait(current, notification, blocking);
                    "wait"
                }
                (Some(current), 9) => {
                    let _ = ipc.sleep(current, now + random.below(3));
                    "sleep"
                }
                (Some(current), 10) => {
                    // An exception or an exit with a fault handler.
                    ipc.stop(current);
                    let _ = ipc.send(current, endpoint, step, SendKind::Fault, false, true);
                    "fault"
                }
                (Some(_), 11) => {
                    ipc.scheduler.yield_current();
                    "yield"
                }
                (_, 12) => {
                    ipc.stop(anyone);
                    "stop"
                }
                (_, 13 | 14) => {
                    let _ = ipc.start(anyone);
                    "start"
                }
                (_, 15) => {
                    ipc.set_priority(anyone, random.below(4) as u8 * 10);
                    "set priority"
                }
                (_, 16) => {
                    // Destroyed, and its id used again at once.
                    ipc.remove_thread(anyone);
                    ipc.add_thread(anyone, random.below(4) as u8 * 10);
                    "remove thread"
                }
                (_, 17) => {
                    ipc.remove_endpoint(endpoint);
                    ipc.add_endpoint(endpoint);
                    "remove endpoint"
                }
                (_, 18) => {
                    ipc.remove_notification(notification);
                    ipc.add_notification(notification);
                    "remove notification"
                }
                (_, 19) => {
                    let _ = ipc.signal(notification, 1 << random.below(4));
                    "signal"
                }
                _ => {
                    now += 1;
                    ipc.wake_sleepers(now);
                    "tick"
                }
            };
            let context = alloc::format!("seed {seed}, step {step}, {done}");
            for woken in ipc.take_peer_died() {
                assert_eq!(
                    ipc.state(woken),
                    Some(State::Runnable),
                    "{context}: {woken:?} woken with PeerDied"
                );
            }
            check_invariants(&ipc, &context);
        }
    }
}
