//! The IPC state machine: who is blocked on what, who may reply to whom,
//! and who wakes when something dies.
//!
//! It decides; the kernel moves the bytes. A successful rendezvous returns a
//! [`Transfer`] naming the two threads, and the kernel copies the message
//! between their registers and IPC buffers. Every thread woken because its
//! peer died is recorded and taken with [`Ipc::take_peer_died`], so the
//! kernel can hand each one its `PeerDied` error.
//!
//! A thread's state is one of [`State`]; the transitions are:
//!
//! ```text
//! Stopped --start--> Runnable
//! Runnable --send/call, no receiver--> Sending --receiver arrives--> Runnable (send)
//!                                                               \--> AwaitingReply (call, fault)
//! Runnable --receive, no sender--> Receiving --sender arrives--> Runnable
//! AwaitingReply --reply--> Runnable (a fault reply leaves it Stopped for the kernel to decide)
//! Runnable --wait, word is 0--> Waiting --signal--> Runnable
//! Runnable --sleep--> Sleeping --its tick comes--> Runnable
//! any --stop--> Stopped (queues left, pending calls abandoned)
//! Sending/Receiving/Waiting --object destroyed--> Runnable with PeerDied
//! AwaitingReply --server destroyed or stopped, or server receives again--> Runnable with PeerDied
//! ```

use crate::queues::{Priority, WaitQueue};
use crate::scheduler::{Scheduler, ThreadId};
use alloc::vec::Vec;

/// Identifies an endpoint; the kernel assigns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub u32);

/// Identifies a notification; the kernel assigns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NotificationId(pub u32);

/// How a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    /// A one-way message: the sender goes on once it is delivered.
    Send,
    /// A call: the sender waits for the receiver's reply.
    Call,
    /// A fault message the kernel sends for a thread: a call whose reply
    /// decides whether the thread resumes.
    Fault,
}

/// What a thread is doing, as far as IPC and scheduling are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running and not waiting for anything: new, stopped, or a faulted
    /// thread whose handler chose not to resume it.
    Stopped,
    /// On the CPU or in the run queue.
    Runnable,
    /// Queued on an endpoint until a receiver takes the message.
    Sending {
        /// Where.
        endpoint: EndpointId,
        /// The badge of the capability it sent with.
        badge: u64,
        /// Send, call or fault.
        kind: SendKind,
        /// Whether the capability allowed sending capabilities.
        grant: bool,
    },
    /// Queued on an endpoint until a sender arrives.
    Receiving {
        /// Where.
        endpoint: EndpointId,
    },
    /// Its call (or fault message) was received; waiting for the reply.
    AwaitingReply {
        /// The thread that received the call and may reply.
        server: ThreadId,
        /// The call was a fault message.
        fault: bool,
    },
    /// Waiting for a notification's word to become non-zero.
    Waiting {
        /// Which notification.
        notification: NotificationId,
    },
    /// Asleep until the clock reaches `until` (in timer ticks).
    Sleeping {
        /// The tick it wakes at.
        until: u64,
    },
}

/// A message moving from one thread to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The thread whose message it is.
    pub from: ThreadId,
    /// The thread that receives it.
    pub to: ThreadId,
    /// The badge the receiver sees (0 for replies).
    pub badge: u64,
    /// What kind of message.
    pub kind: TransferKind,
    /// Capabilities may go with it.
    pub grant: bool,
}

/// What kind of message a [`Transfer`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// A one-way message.
    Send,
    /// A call; the receiver now holds the reply right.
    Call,
    /// A fault message made by the kernel for `from`; the receiver holds
    /// the reply right.
    Fault,
    /// A reply to a call.
    Reply,
    /// A reply to a fault message: the kernel resumes `to` or leaves it
    /// stopped, according to the label.
    FaultReply,
}

/// The result of an operation that may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The rendezvous happened now.
    Delivered(Transfer),
    /// The caller is blocked until a peer arrives.
    Blocked,
}

/// Why an IPC operation was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpcError {
    /// Non-blocking, and no peer was waiting.
    WouldBlock,
    /// Reply without a call to reply to.
    NoReplyTarget,
    /// The caller being replied to has died or stopped.
    PeerDied,
    /// The thread is not in a state that allows this (not runnable, or
    /// not stopped for `start`).
    InvalidState,
    /// No such thread, endpoint or notification.
    NoSuchObject,
}

/// The reply right a thread holds after receiving a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Waiting(ThreadId),
    /// The caller died or stopped; a reply fails with `PeerDied`.
    Gone,
}

struct ThreadIpc {
    state: State,
    priority: Priority,
    caller: Option<Caller>,
}

#[derive(Default)]
struct Endpoint {
    senders: WaitQueue<ThreadId>,
    receivers: WaitQueue<ThreadId>,
}

#[derive(Default)]
struct Notification {
    word: u64,
    waiters: WaitQueue<ThreadId>,
}

/// A table indexed by id, growing as ids are used.
struct Table<T>(Vec<Option<T>>);

impl<T> Table<T> {
    const fn new() -> Self {
        Self(Vec::new())
    }

    fn get(&self, index: u32) -> Option<&T> {
        self.0.get(index as usize)?.as_ref()
    }

    fn get_mut(&mut self, index: u32) -> Option<&mut T> {
        self.0.get_mut(index as usize)?.as_mut()
    }

    fn insert(&mut self, index: u32, value: T) {
        let index = index as usize;
        if self.0.len() <= index {
            self.0.resize_with(index + 1, || None);
        }
        if let Some(entry) = self.0.get_mut(index) {
            *entry = Some(value);
        }
    }

    fn remove(&mut self, index: u32) -> Option<T> {
        self.0.get_mut(index as usize)?.take()
    }
}

/// Thread states, endpoint and notification queues, and the scheduler.
pub struct Ipc {
    /// Who runs.
    pub scheduler: Scheduler,
    threads: Table<ThreadIpc>,
    endpoints: Table<Endpoint>,
    notifications: Table<Notification>,
    peer_died: Vec<ThreadId>,
    /// Sleeping threads with the tick each wakes at.
    sleepers: Vec<(u64, ThreadId)>,
}

impl Default for Ipc {
    fn default() -> Self {
        Self::new()
    }
}

impl Ipc {
    /// Nothing yet.
    pub const fn new() -> Self {
        Self {
            scheduler: Scheduler::new(),
            threads: Table::new(),
            endpoints: Table::new(),
            notifications: Table::new(),
            peer_died: Vec::new(),
            sleepers: Vec::new(),
        }
    }

    // ---- objects ----

    /// Registers a new, stopped thread.
    pub fn add_thread(&mut self, thread: ThreadId, priority: Priority) {
        self.threads.insert(
            thread.0,
            ThreadIpc {
                state: State::Stopped,
                priority,
                caller: None,
            },
        );
    }

    /// Registers a new endpoint.
    pub fn add_endpoint(&mut self, endpoint: EndpointId) {
        self.endpoints.insert(endpoint.0, Endpoint::default());
    }

    /// Registers a new notification with a clear word.
    pub fn add_notification(&mut self, notification: NotificationId) {
        self.notifications.insert(notification.0, Notification::default());
    }

    /// Removes a thread: it stops (leaving every queue), a caller waiting
    /// for its reply wakes with `PeerDied`, and it is forgotten.
    pub fn remove_thread(&mut self, thread: ThreadId) {
        self.stop(thread);
        if let Some(record) = self.threads.remove(thread.0)
            && let Some(Caller::Waiting(caller)) = record.caller
        {
            self.wake_caller_with_peer_died(caller, thread);
        }
    }

    /// Removes an endpoint; every thread queued on it wakes with `PeerDied`.
    pub fn remove_endpoint(&mut self, endpoint: EndpointId) {
        if let Some(mut queues) = self.endpoints.remove(endpoint.0) {
            for thread in queues
                .senders
                .drain_all()
                .into_iter()
                .chain(queues.receivers.drain_all())
            {
                self.wake_with_peer_died(thread);
            }
        }
    }

    /// Removes a notification; its waiters wake with `PeerDied`.
    pub fn remove_notification(&mut self, notification: NotificationId) {
        if let Some(mut record) = self.notifications.remove(notification.0) {
            for thread in record.waiters.drain_all() {
                self.wake_with_peer_died(thread);
            }
        }
    }

    /// Threads woken with `PeerDied` since the last call.
    pub fn take_peer_died(&mut self) -> Vec<ThreadId> {
        core::mem::take(&mut self.peer_died)
    }

    // ---- thread control ----

    /// A thread's state.
    pub fn state(&self, thread: ThreadId) -> Option<State> {
        self.threads.get(thread.0).map(|record| record.state)
    }

    /// A thread's priority.
    pub fn priority(&self, thread: ThreadId) -> Option<Priority> {
        self.threads.get(thread.0).map(|record| record.priority)
    }

    /// Makes a stopped thread runnable.
    ///
    /// # Errors
    /// `NoSuchObject`, or `InvalidState` unless it is stopped.
    pub fn start(&mut self, thread: ThreadId) -> Result<(), IpcError> {
        let record = self.threads.get_mut(thread.0).ok_or(IpcError::NoSuchObject)?;
        if record.state != State::Stopped {
            return Err(IpcError::InvalidState);
        }
        record.state = State::Runnable;
        let priority = record.priority;
        self.scheduler.make_ready(thread, priority);
        Ok(())
    }

    /// Stops a thread wherever it is: it leaves the run queue or the queue
    /// it waits in; a call it is waiting on is abandoned (the server's
    /// reply will fail). A reply right it holds stays, so a stopped server
    /// can still be resumed to reply.
    pub fn stop(&mut self, thread: ThreadId) {
        let Some(record) = self.threads.get_mut(thread.0) else {
            return;
        };
        let (state, priority) = (record.state, record.priority);
        record.state = State::Stopped;
        match state {
            State::Stopped => {}
            State::Runnable => self.scheduler.remove(thread, priority),
            State::Sending { endpoint, .. } => {
                if let Some(queues) = self.endpoints.get_mut(endpoint.0) {
                    queues.senders.remove(thread);
                }
            }
            State::Receiving { endpoint } => {
                if let Some(queues) = self.endpoints.get_mut(endpoint.0) {
                    queues.receivers.remove(thread);
                }
            }
            State::AwaitingReply { server, .. } => {
                if let Some(server) = self.threads.get_mut(server.0)
                    && server.caller == Some(Caller::Waiting(thread))
                {
                    server.caller = Some(Caller::Gone);
                }
            }
            State::Waiting { notification } => {
                if let Some(record) = self.notifications.get_mut(notification.0) {
                    record.waiters.remove(thread);
                }
            }
            State::Sleeping { .. } => self.sleepers.retain(|&(_, sleeper)| sleeper != thread),
        }
    }

    /// Changes a thread's priority wherever it waits.
    pub fn set_priority(&mut self, thread: ThreadId, priority: Priority) {
        let Some(record) = self.threads.get_mut(thread.0) else {
            return;
        };
        let old = record.priority;
        record.priority = priority;
        match record.state {
            State::Runnable => self.scheduler.reprioritise(thread, old, priority),
            State::Sending { endpoint, .. } => {
                if let Some(queues) = self.endpoints.get_mut(endpoint.0) {
                    queues.senders.reprioritise(thread, priority);
                }
            }
            State::Receiving { endpoint } => {
                if let Some(queues) = self.endpoints.get_mut(endpoint.0) {
                    queues.receivers.reprioritise(thread, priority);
                }
            }
            State::Waiting { notification } => {
                if let Some(record) = self.notifications.get_mut(notification.0) {
                    record.waiters.reprioritise(thread, priority);
                }
            }
            State::Stopped | State::AwaitingReply { .. } | State::Sleeping { .. } => {}
        }
    }

    // ---- the clock ----

    /// Puts a runnable thread to sleep until tick `until`.
    ///
    /// # Errors
    /// `NoSuchObject`, or `InvalidState` unless it is runnable.
    pub fn sleep(&mut self, thread: ThreadId, until: u64) -> Result<(), IpcError> {
        let record = self.threads.get(thread.0).ok_or(IpcError::NoSuchObject)?;
        if record.state != State::Runnable {
            return Err(IpcError::InvalidState);
        }
        let priority = record.priority;
        self.scheduler.remove(thread, priority);
        self.set_state(thread, State::Sleeping { until });
        self.sleepers.push((until, thread));
        Ok(())
    }

    /// Wakes every thread whose time has come (`now` is the current tick);
    /// returns them. O(sleepers).
    pub fn wake_sleepers(&mut self, now: u64) -> Vec<ThreadId> {
        let mut woken = Vec::new();
        self.sleepers.retain(|&(until, thread)| {
            let due = until <= now;
            if due {
                woken.push(thread);
            }
            !due
        });
        for &thread in &woken {
            self.make_runnable(thread);
        }
        woken
    }

    // ---- endpoints ----

    /// `sender` sends on `endpoint` with `badge`. With a receiver waiting,
    /// the message is delivered now; otherwise the sender blocks (or the
    /// call fails with `WouldBlock` when `blocking` is false). A call or
    /// fault leaves the sender awaiting the reply.
    ///
    /// # Errors
    /// `NoSuchObject`, `InvalidState` unless the sender is runnable (or
    /// stopped, for a fault message), `WouldBlock`.
    pub fn send(
        &mut self,
        sender: ThreadId,
        endpoint: EndpointId,
        badge: u64,
        kind: SendKind,
        grant: bool,
        blocking: bool,
    ) -> Result<Delivery, IpcError> {
        let sender_record = self.threads.get(sender.0).ok_or(IpcError::NoSuchObject)?;
        let (state, priority) = (sender_record.state, sender_record.priority);
        let allowed = state == State::Runnable || (kind == SendKind::Fault && state == State::Stopped);
        if !allowed {
            return Err(IpcError::InvalidState);
        }
        let queues = self.endpoints.get_mut(endpoint.0).ok_or(IpcError::NoSuchObject)?;
        match queues.receivers.pop() {
            Some(receiver) => {
                if state == State::Runnable && kind != SendKind::Send {
                    self.scheduler.remove(sender, priority);
                }
                self.make_runnable(receiver);
                Ok(Delivery::Delivered(self.deliver(sender, receiver, badge, kind, grant)))
            }
            None if !blocking => Err(IpcError::WouldBlock),
            None => {
                queues.senders.push(sender, priority);
                if state == State::Runnable {
                    self.scheduler.remove(sender, priority);
                }
                self.set_state(
                    sender,
                    State::Sending {
                        endpoint,
                        badge,
                        kind,
                        grant,
                    },
                );
                Ok(Delivery::Blocked)
            }
        }
    }

    /// `receiver` receives on `endpoint`. A reply right it still holds is
    /// dropped first (its caller wakes with `PeerDied`): a server that
    /// receives again will never reply to the old call.
    ///
    /// # Errors
    /// `NoSuchObject`, `InvalidState` unless runnable, `WouldBlock`.
    pub fn receive(&mut self, receiver: ThreadId, endpoint: EndpointId, blocking: bool) -> Result<Delivery, IpcError> {
        let record = self.threads.get(receiver.0).ok_or(IpcError::NoSuchObject)?;
        if record.state != State::Runnable {
            return Err(IpcError::InvalidState);
        }
        let priority = record.priority;
        let queues = self.endpoints.get(endpoint.0).ok_or(IpcError::NoSuchObject)?;
        if !blocking && queues.senders.is_empty() {
            return Err(IpcError::WouldBlock);
        }
        self.drop_caller(receiver);
        let queues = self.endpoints.get_mut(endpoint.0).ok_or(IpcError::NoSuchObject)?;
        match queues.senders.pop() {
            Some(sender) => {
                let Some(State::Sending { badge, kind, grant, .. }) = self.state(sender) else {
                    return Err(IpcError::InvalidState);
                };
                if kind == SendKind::Send {
                    self.make_runnable(sender);
                }
                Ok(Delivery::Delivered(self.deliver(sender, receiver, badge, kind, grant)))
            }
            None => {
                queues.receivers.push(receiver, priority);
                self.scheduler.remove(receiver, priority);
                self.set_state(receiver, State::Receiving { endpoint });
                Ok(Delivery::Blocked)
            }
        }
    }

    /// `server` replies to the call it received last (capabilities may go
    /// with the reply); the caller becomes
    /// runnable (a faulted caller is left stopped: see
    /// [`TransferKind::FaultReply`]). Never blocks.
    ///
    /// # Errors
    /// `NoSuchObject`, `NoReplyTarget` if it holds no reply right,
    /// `PeerDied` if the caller died or stopped (the right is used up).
    pub fn reply(&mut self, server: ThreadId) -> Result<Transfer, IpcError> {
        let record = self.threads.get_mut(server.0).ok_or(IpcError::NoSuchObject)?;
        let caller = match record.caller.take() {
            None => return Err(IpcError::NoReplyTarget),
            Some(Caller::Gone) => return Err(IpcError::PeerDied),
            Some(Caller::Waiting(caller)) => caller,
        };
        let Some(State::AwaitingReply { fault, .. }) = self.state(caller) else {
            return Err(IpcError::PeerDied);
        };
        if fault {
            self.set_state(caller, State::Stopped);
        } else {
            self.make_runnable(caller);
        }
        let kind = if fault {
            TransferKind::FaultReply
        } else {
            TransferKind::Reply
        };
        // A reply may carry the server's capabilities: the caller opted in
        // by naming receive slots, and the server gives only its own.
        Ok(Transfer {
            from: server,
            to: caller,
            badge: 0,
            kind,
            grant: true,
        })
    }

    // ---- notifications ----

    /// ORs `badge` into the notification's word; if a thread waits, it
    /// takes the whole word and wakes. Returns the woken thread and the word
    /// it receives.
    ///
    /// # Errors
    /// `NoSuchObject`.
    pub fn signal(&mut self, notification: NotificationId, badge: u64) -> Result<Option<(ThreadId, u64)>, IpcError> {
        let record = self
            .notifications
            .get_mut(notification.0)
            .ok_or(IpcError::NoSuchObject)?;
        record.word |= badge;
        if record.word == 0 {
            return Ok(None);
        }
        let Some(waiter) = record.waiters.pop() else {
            return Ok(None);
        };
        let word = core::mem::take(&mut record.word);
        self.make_runnable(waiter);
        Ok(Some((waiter, word)))
    }

    /// `thread` waits on a notification: returns the word at once (and
    /// clears it) if it is non-zero, else blocks (`Ok(None)`), or returns
    /// `Ok(Some(0))` when not `blocking`.
    ///
    /// # Errors
    /// `NoSuchObject`, `InvalidState` unless runnable.
    pub fn wait(
        &mut self,
        thread: ThreadId,
        notification: NotificationId,
        blocking: bool,
    ) -> Result<Option<u64>, IpcError> {
        let record = self.threads.get(thread.0).ok_or(IpcError::NoSuchObject)?;
        if record.state != State::Runnable {
            return Err(IpcError::InvalidState);
        }
        let priority = record.priority;
        let waited = self
            .notifications
            .get_mut(notification.0)
            .ok_or(IpcError::NoSuchObject)?;
        if waited.word != 0 || !blocking {
            return Ok(Some(core::mem::take(&mut waited.word)));
        }
        waited.waiters.push(thread, priority);
        self.scheduler.remove(thread, priority);
        self.set_state(thread, State::Waiting { notification });
        Ok(None)
    }

    // ---- helpers ----

    fn set_state(&mut self, thread: ThreadId, state: State) {
        if let Some(record) = self.threads.get_mut(thread.0) {
            record.state = state;
        }
    }

    /// Makes a blocked thread runnable.
    fn make_runnable(&mut self, thread: ThreadId) {
        if let Some(record) = self.threads.get_mut(thread.0) {
            record.state = State::Runnable;
            let priority = record.priority;
            self.scheduler.make_ready(thread, priority);
        }
    }

    fn wake_with_peer_died(&mut self, thread: ThreadId) {
        let Some(state) = self.state(thread) else { return };
        if state == State::Stopped || state == State::Runnable {
            return;
        }
        self.stop(thread);
        // A faulted thread whose handler died stays stopped: there is nobody
        // to resume it, running it would only fault again, and its registers
        // are the fault's, not a syscall's to put an error in.
        if let State::AwaitingReply { fault: true, .. }
        | State::Sending {
            kind: SendKind::Fault, ..
        } = state
        {
            return;
        }
        self.make_runnable(thread);
        self.peer_died.push(thread);
    }

    fn drop_caller(&mut self, server: ThreadId) {
        if let Some(record) = self.threads.get_mut(server.0)
            && let Some(Caller::Waiting(caller)) = record.caller.take()
        {
            self.wake_caller_with_peer_died(caller, server);
        }
    }

    /// Wakes `caller` with `PeerDied` if it still awaits a reply from
    /// `server`; a caller that has moved on (to receive as a server itself,
    /// say) is left alone.
    fn wake_caller_with_peer_died(&mut self, caller: ThreadId, server: ThreadId) {
        if matches!(self.state(caller), Some(State::AwaitingReply { server: awaited, .. }) if awaited == server) {
            self.wake_with_peer_died(caller);
        }
    }

    /// Records a rendezvous: a call or fault gives the receiver the reply
    /// right and leaves the sender awaiting it.
    fn deliver(&mut self, from: ThreadId, to: ThreadId, badge: u64, kind: SendKind, grant: bool) -> Transfer {
        let transfer_kind = match kind {
            SendKind::Send => TransferKind::Send,
            SendKind::Call => TransferKind::Call,
            SendKind::Fault => TransferKind::Fault,
        };
        if kind != SendKind::Send {
            self.set_state(
                from,
                State::AwaitingReply {
                    server: to,
                    fault: kind == SendKind::Fault,
                },
            );
            if let Some(record) = self.threads.get_mut(to.0) {
                record.caller = Some(Caller::Waiting(from));
            }
        }
        Transfer {
            from,
            to,
            badge,
            kind: transfer_kind,
            grant,
        }
    }
}

#[cfg(test)]
mod tests;
