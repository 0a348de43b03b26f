//! The bridge between a handle (caller's thread, inside `dowork`) and its connection task on
//! the shared I/O thread. `dowork` only does non-blocking channel operations here.

use std::sync::mpsc;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use tokio::sync::mpsc as tmpsc;

use super::connect::establish;
use super::{runtime, ConnectSpec, Flavor};
use crate::dps::MAX_PACKET;
use crate::error::Error;
use crate::session::NetEvent;

enum Cmd {
    Send(Packet),
    /// Flush what was sent, close the stream, stop.
    Close,
}

/// One connection attempt and its lifetime. Dropping it without [`Link::close`] aborts the task.
pub struct Link {
    commands: tmpsc::UnboundedSender<Cmd>,
    events: mpsc::Receiver<NetEvent>,
    task: tokio::task::AbortHandle,
    closing: bool,
}

impl Link {
    pub fn spawn(spec: ConnectSpec, flavor: Flavor) -> Result<Link, Error> {
        let rt = runtime::handle()?;
        let (commands, rx) = tmpsc::unbounded_channel();
        let (tx, events) = mpsc::channel();
        let task = rt.spawn(run(spec, flavor, rx, tx)).abort_handle();
        Ok(Link {
            commands,
            events,
            task,
            closing: false,
        })
    }

    pub fn send(&self, packet: Packet) {
        let _ = self.commands.send(Cmd::Send(packet));
    }

    /// The next event, without waiting.
    pub fn try_event(&self) -> Option<NetEvent> {
        self.events.try_recv().ok()
    }

    /// Ends the connection: `graceful` lets what was sent go out first.
    pub fn close(mut self, graceful: bool) {
        if graceful && self.commands.send(Cmd::Close).is_ok() {
            self.closing = true;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if !self.closing {
            self.task.abort();
        }
    }
}

/// How long a graceful close may take to flush.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn run(
    spec: ConnectSpec,
    flavor: Flavor,
    mut commands: tmpsc::UnboundedReceiver<Cmd>,
    events: mpsc::Sender<NetEvent>,
) {
    let host = spec.endpoint.host.clone();
    // Packets queued while connecting go out together as soon as the channel is up.
    let mut queued = Vec::new();
    let connecting = establish(&spec, flavor);
    tokio::pin!(connecting);
    let established = loop {
        tokio::select! {
            result = &mut connecting => break result,
            command = commands.recv() => match command {
                None | Some(Cmd::Close) => return,
                Some(Cmd::Send(packet)) => queued.push(packet),
            },
        }
    };
    let (mut io, description) = match established {
        Ok(up) => up,
        Err(e) => {
            let _ = events.send(NetEvent::Down(e));
            return;
        }
    };
    let _ = events.send(NetEvent::Up(description));
    let mut out = BytesMut::with_capacity(1024);
    let mut closing = false;
    for packet in queued {
        encode(&packet, &mut out);
    }
    let mut inbound = BytesMut::with_capacity(4096);
    loop {
        if !out.is_empty() {
            if let Err(e) = io.write_all(&out, &host).await {
                let _ = events.send(NetEvent::Down(e));
                return;
            }
            out.clear();
        }
        if closing {
            let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
            return;
        }
        tokio::select! {
            command = commands.recv() => {
                let mut next = command;
                loop {
                    match next {
                        None => return,
                        Some(Cmd::Close) => { closing = true; break }
                        Some(Cmd::Send(packet)) => encode(&packet, &mut out),
                    }
                    next = match commands.try_recv() { Ok(c) => Some(c), Err(_) => break };
                }
            }
            read = io.read_into(&mut inbound, &host) => {
                let result = match read {
                    Ok(0) => Err(Error::ConnectionLost("the server closed the connection".into())),
                    Ok(_) => decode(&mut inbound, &events),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    let _ = events.send(NetEvent::Down(e));
                    return;
                }
            }
        }
    }
}

fn encode(packet: &Packet, out: &mut BytesMut) {
    // Our own packets are far below the limit; a failure here would be a bug, so it is logged.
    if let Err(e) = packet.write(out, MAX_PACKET) {
        crate::error!("", "cannot encode an outgoing packet: {e}");
    }
}

/// Hands every complete packet in `inbound` to the handle.
fn decode(inbound: &mut BytesMut, events: &mpsc::Sender<NetEvent>) -> Result<(), Error> {
    use rumqttc::mqttbytes::Error as E;
    loop {
        match Packet::read(inbound, MAX_PACKET) {
            Ok(packet) => {
                if events.send(NetEvent::Packet(packet)).is_err() {
                    return Ok(());
                }
            }
            Err(E::InsufficientBytes(_)) => return Ok(()),
            Err(E::PayloadSizeLimitExceeded(n)) => return Err(Error::PacketTooLarge(n)),
            Err(e) => return Err(Error::Protocol(format!("malformed packet: {e}"))),
        }
    }
}
