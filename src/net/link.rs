//! The bridge between a handle (caller's thread, inside `dowork`) and its connection task on
//! the shared I/O thread. `dowork` only does non-blocking channel operations here; `close`
//! waits, bounded, for its goodbye to be written.
//!
//! Inbound data is bounded: the task decodes one packet at a time and hands it over through a
//! small queue; when the queue is full it stops reading, so the server's writes are pushed back
//! by TCP instead of growing this process.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as smpsc, Arc};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use tokio::sync::mpsc as tmpsc;

use super::connect::establish;
use super::io::Io;
use super::{runtime, ConnectSpec, Flavor};
use crate::dps::MAX_PACKET;
use crate::error::Error;
use crate::session::NetEvent;

/// Events (packets) decoded but not yet taken by `dowork`: one `dowork`'s share (a packet is at
/// most 96 KB, so at most 3 MB per connection).
pub const EVENT_QUEUE: usize = 32;

/// How long `close` waits for the DISCONNECT (and what was sent before it) to be written.
pub const GOODBYE_WAIT: Duration = Duration::from_millis(200);

/// How long a closed connection's task may live on to flush and shut down; then it is aborted
/// (a peer that does not read would otherwise keep it, and its socket, forever).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Events handed to handles by every link of the process (tests read it to see how many one
/// `dowork` took).
static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// How many network events every link of the process has handed over so far.
#[doc(hidden)]
pub fn events_delivered() -> u64 {
    DELIVERED.load(Ordering::Relaxed)
}

// Channel items are small (a box, or a box and a sender): tokio's channels allocate their slots
// 32 at a time, and a 144-byte packet in place made the two channels' first blocks 9 KB of every
// connection.
enum Cmd {
    Send(Box<Packet>),
    /// Write what was sent, signal `flushed`, shut the stream down, stop.
    Close {
        flushed: smpsc::SyncSender<()>,
    },
}

/// One connection attempt and its lifetime. Dropping it without [`Link::close`] aborts the task.
pub struct Link {
    /// Everything that reaches into the runtime. Never dropped in a child of `fork` (see
    /// `pid`): dropping a channel end wakes the other end's task, which takes the runtime's
    /// scheduler lock, and that lock may have been copied held.
    /// `None` only while dropping.
    tie: Option<Tie>,
    /// Set by the task once the secure channel (and the WebSocket) is up.
    up: Arc<AtomicBool>,
    closing: bool,
    /// A `Down` was handed over: nothing more comes.
    ended: bool,
    /// The process that started the task. In a child of `fork` the task and its I/O thread do
    /// not exist: the link must not touch the parent's runtime there (its locks may have been
    /// copied held), nor wait for a goodbye nobody will write.
    pid: u32,
}

/// A link's ends in the runtime: its channels, the runtime, the task.
struct Tie {
    commands: tmpsc::UnboundedSender<Cmd>,
    events: tmpsc::Receiver<Box<NetEvent>>,
    rt: tokio::runtime::Handle,
    task: tokio::task::AbortHandle,
}

/// A graceful close in flight, returned by [`Link::close`].
pub struct Goodbye {
    flushed: smpsc::Receiver<()>,
    up: Arc<AtomicBool>,
}

impl Goodbye {
    /// Waits until the DISCONNECT and everything sent before it are written, at most
    /// [`GOODBYE_WAIT`]; not at all when the connection never came up (still connecting or in
    /// its TLS handshake: then nothing was going to be sent). True when it was written.
    pub fn wait(self) -> bool {
        if !self.up.load(Ordering::Acquire) {
            return false;
        }
        self.flushed.recv_timeout(GOODBYE_WAIT).is_ok()
    }
}

/// What a connection task gets: commands in, events out, and the flag it sets once up.
struct TaskEnds {
    commands: tmpsc::UnboundedReceiver<Cmd>,
    events: tmpsc::Sender<Box<NetEvent>>,
    up: Arc<AtomicBool>,
}

impl Link {
    pub fn spawn(spec: ConnectSpec, flavor: Flavor) -> Result<Link, Error> {
        Link::start(move |ends| run(spec, flavor, ends))
    }

    fn start<F, Fut>(task: F) -> Result<Link, Error>
    where
        F: FnOnce(TaskEnds) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let rt = runtime::handle()?;
        let (commands, commands_rx) = tmpsc::unbounded_channel();
        let (events_tx, events) = tmpsc::channel(EVENT_QUEUE);
        let up = Arc::new(AtomicBool::new(false));
        let ends = TaskEnds {
            commands: commands_rx,
            events: events_tx,
            up: up.clone(),
        };
        // Built here, the connection's future (1.3 KB; its 10 KB set-up is boxed inside when it
        // starts) would be moved through several stack frames of the caller's thread, whose
        // touched pages stay resident for the life of a C program's main thread (52 KB when the
        // set-up was inline). Built and boxed on the I/O thread when the task first runs, the
        // caller moves only its few captures.
        let task = rt
            .spawn(async move { Box::pin(task(ends)).await })
            .abort_handle();
        Ok(Link {
            tie: Some(Tie {
                commands,
                events,
                rt,
                task,
            }),
            up,
            closing: false,
            ended: false,
            pid: std::process::id(),
        })
    }

    fn inherited(&self) -> bool {
        self.pid != std::process::id()
    }

    pub fn send(&self, packet: Packet) {
        if let (false, Some(tie)) = (self.inherited(), &self.tie) {
            let _ = tie.commands.send(Cmd::Send(Box::new(packet)));
        }
    }

    /// The next event, without waiting. A task that ended without saying why (it panicked, or
    /// the I/O thread is gone) is reported once as a `Down`, never a silent stall.
    pub fn try_event(&mut self) -> Option<NetEvent> {
        use tmpsc::error::TryRecvError;
        let (false, Some(tie)) = (self.ended, &mut self.tie) else {
            return None;
        };
        let event = match tie.events.try_recv() {
            Ok(event) => *event,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => NetEvent::Down(Error::Internal(
                "the connection task ended unexpectedly (it panicked on the I/O thread); \
                 the connection is gone"
                    .into(),
            )),
        };
        self.ended = matches!(event, NetEvent::Down(_));
        DELIVERED.fetch_add(1, Ordering::Relaxed);
        Some(event)
    }

    /// Ends the connection. `graceful` lets what was sent go out first: the returned goodbye
    /// waits for that. Either way the task is gone [`CLOSE_GRACE`] later at the latest.
    pub fn close(mut self, graceful: bool) -> Option<Goodbye> {
        let inherited = self.inherited();
        // dropping aborts the task (in the process that has it)
        let tie = self.tie.as_ref().filter(|_| graceful && !inherited)?;
        let (flushed, done) = smpsc::sync_channel(1);
        if tie.commands.send(Cmd::Close { flushed }).is_err() {
            return None; // the task has already ended
        }
        let task = tie.task.clone();
        tie.rt.spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            task.abort();
        });
        self.closing = true;
        Some(Goodbye {
            flushed: done,
            up: self.up.clone(),
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let Some(tie) = self.tie.take() else { return };
        if self.inherited() {
            // its runtime does not exist in this process: leak it rather than wake that
            std::mem::forget(tie);
        } else if !self.closing {
            tie.task.abort();
        }
    }
}

async fn run(spec: ConnectSpec, flavor: Flavor, ends: TaskEnds) {
    let TaskEnds {
        mut commands,
        events,
        up,
    } = ends;
    let host = spec.endpoint.host.clone();
    // Packets queued while connecting go out together as soon as the channel is up.
    let mut queued = Vec::new();
    // Setting up (resolve, TCP, proxy, TLS, WebSocket) is a ~10 KB future and the connected
    // loop under 1 KB: boxed, the set-up's memory goes back as soon as the channel is up instead
    // of staying in the task for the connection's life.
    let mut connecting = Box::pin(establish(&spec, flavor));
    let established = loop {
        tokio::select! {
            result = &mut connecting => break result,
            command = commands.recv() => match command {
                // still connecting: there is nobody to say goodbye to
                None | Some(Cmd::Close { .. }) => return,
                Some(Cmd::Send(packet)) => queued.push(packet),
            },
        }
    };
    drop(connecting);
    let (io, description) = match established {
        Ok(up) => up,
        Err(e) => return down(&events, e).await,
    };
    up.store(true, Ordering::Release);
    if events
        .send(Box::new(NetEvent::Up(description)))
        .await
        .is_err()
    {
        return;
    }
    let mut out = BytesMut::new();
    for packet in queued {
        encode(&packet, &mut out);
    }
    if let Err(e) = connected(io, &host, &mut commands, &events, out).await {
        down(&events, e).await;
    }
}

/// The connection's life once up: writes what the handle sends, hands over what arrives (one
/// packet at a time, reading only when the queue has room), ends on close or on a failure.
async fn connected(
    mut io: Io,
    host: &str,
    commands: &mut tmpsc::UnboundedReceiver<Cmd>,
    events: &tmpsc::Sender<Box<NetEvent>>,
    mut out: BytesMut,
) -> Result<(), Error> {
    // A connection spends its life waiting (for a reply, a retry-after, the keep-alive): its
    // buffers are let go whenever they are empty (the read buffer once a packet is decoded, the
    // write buffer once written), so a waiting registration holds only rustls' 4 KB receive
    // buffer of its own; a fleet of 10,000 saves 15 MB.
    let mut inbound = BytesMut::new();
    let mut pending: Option<Packet> = None;
    let mut closing: Option<smpsc::SyncSender<()>> = None;
    loop {
        if !out.is_empty() {
            io.write_all(&out, host).await?;
            out = BytesMut::new();
        }
        if let Some(flushed) = closing.take() {
            let _ = flushed.try_send(());
            io.shutdown().await;
            return Ok(());
        }
        if pending.is_none() {
            pending = decode(&mut inbound)?;
            if inbound.is_empty() {
                inbound = BytesMut::new();
            }
        }
        tokio::select! {
            command = commands.recv() => {
                let mut next = command;
                loop {
                    match next {
                        None => return Ok(()), // the handle dropped the link
                        Some(Cmd::Close { flushed }) => { closing = Some(flushed); break }
                        Some(Cmd::Send(packet)) => encode(&packet, &mut out),
                    }
                    next = match commands.try_recv() { Ok(c) => Some(c), Err(_) => break };
                }
            }
            permit = events.reserve(), if pending.is_some() => match (permit, pending.take()) {
                (Ok(permit), Some(packet)) => permit.send(Box::new(NetEvent::Packet(packet))),
                _ => return Ok(()), // the handle is gone
            },
            read = io.read_into(&mut inbound, host), if pending.is_none() => {
                if read? == 0 {
                    return Err(Error::ConnectionLost("the server closed the connection".into()));
                }
            }
        }
    }
}

/// Reports the end of the connection; the socket is already closed when this waits for room.
async fn down(events: &tmpsc::Sender<Box<NetEvent>>, error: Error) {
    let _ = events.send(Box::new(NetEvent::Down(error))).await;
}

fn encode(packet: &Packet, out: &mut BytesMut) {
    // Our own packets are far below the limit; a failure here would be a bug, so it is logged.
    if let Err(e) = packet.write(out, MAX_PACKET) {
        crate::error!("", "cannot encode an outgoing packet: {e}");
    }
}

/// The next complete packet in `inbound`, if there is one.
fn decode(inbound: &mut BytesMut) -> Result<Option<Packet>, Error> {
    use rumqttc::mqttbytes::Error as E;
    match Packet::read(inbound, MAX_PACKET) {
        Ok(packet) => Ok(Some(packet)),
        Err(E::InsufficientBytes(_)) => Ok(None),
        Err(E::PayloadSizeLimitExceeded(n)) => Err(Error::PacketTooLarge(n)),
        Err(e) => Err(Error::Protocol(format!("malformed packet: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn next_event(link: &mut Link) -> NetEvent {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(event) = link.try_event() {
                return event;
            }
            assert!(Instant::now() < deadline, "no event within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_task_that_panics_is_reported_once_as_down() {
        let mut link = Link::start(|ends| async move {
            let _keep = ends; // dropped by the unwinding panic
            panic!("a bug on the I/O thread");
        })
        .unwrap();
        match next_event(&mut link) {
            NetEvent::Down(Error::Internal(why)) => {
                assert!(why.contains("ended unexpectedly"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(link.try_event().is_none(), "reported once");
    }

    #[test]
    fn a_down_from_the_task_is_not_reported_twice() {
        let mut link = Link::start(|ends| async move {
            let _ = ends
                .events
                .send(Box::new(NetEvent::Down(Error::ConnectionLost(
                    "gone".into(),
                ))))
                .await;
        })
        .unwrap();
        assert!(matches!(
            next_event(&mut link),
            NetEvent::Down(Error::ConnectionLost(_))
        ));
        std::thread::sleep(Duration::from_millis(20)); // the task has ended by now
        assert!(link.try_event().is_none());
    }

    #[test]
    fn the_queue_is_bounded_and_the_task_waits_for_room() {
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let mut link = Link::start(move |ends| async move {
            loop {
                let packet = NetEvent::Packet(Packet::PingResp);
                if ends.events.send(Box::new(packet)).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
        // the task fills the queue, then waits: the count reaches the bound and stays there
        let settled = |want: u64| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while sent.load(Ordering::SeqCst) < want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(50)); // room for one too many
            sent.load(Ordering::SeqCst)
        };
        assert_eq!(settled(EVENT_QUEUE as u64), EVENT_QUEUE as u64);
        for _ in 0..EVENT_QUEUE {
            assert!(link.try_event().is_some());
        }
        assert_eq!(settled(2 * EVENT_QUEUE as u64), 2 * EVENT_QUEUE as u64);
    }

    #[test]
    fn a_goodbye_is_not_waited_for_before_the_connection_is_up() {
        let link = Link::start(|ends| async move {
            let _keep = ends;
            std::future::pending::<()>().await
        })
        .unwrap();
        let started = Instant::now();
        let goodbye = link.close(true).expect("the task is alive");
        assert!(!goodbye.wait());
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn a_goodbye_to_a_stuck_connection_waits_at_most_the_bound() {
        let link = Link::start(|ends| async move {
            ends.up.store(true, Ordering::Release);
            let _keep = ends;
            std::future::pending::<()>().await // a write that never completes
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !link.up.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        assert!(!link.close(true).unwrap().wait());
        let waited = started.elapsed();
        assert!(
            waited >= GOODBYE_WAIT && waited < GOODBYE_WAIT + Duration::from_millis(300),
            "{waited:?}"
        );
    }
}
