//! The two listeners: MQTT over TLS and MQTT over WebSocket over TLS. Each accepted connection
//! runs in its own task; a failing connection never affects the others.

use crate::conn::{self, ConnInfo};
use crate::timeline::ConnRecord;
use crate::{ws, Shared, MAX_PACKET};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

#[derive(Clone, Copy)]
pub(crate) enum Transport {
    Mqtt,
    Ws,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::Ws => "ws",
        }
    }
}

/// Serves both listeners until `stop` turns true.
pub(crate) async fn serve(
    mqtt: TcpListener,
    wss: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let a = tokio::spawn(accept_loop(
        mqtt,
        Transport::Mqtt,
        shared.clone(),
        stop.clone(),
    ));
    let b = tokio::spawn(accept_loop(wss, Transport::Ws, shared, stop));
    let _ = tokio::join!(a, b);
}

async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(handle(stream, peer, transport, shared.clone()));
                }
                Err(e) => {
                    // e.g. out of file descriptors: wait a little instead of spinning
                    shared.log.line(format!("{} accept failed: {e}", transport.name()));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle(stream: TcpStream, peer: SocketAddr, transport: Transport, shared: Arc<Shared>) {
    let accepted = Instant::now();
    let id = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
    let name = transport.name();
    let rec = ConnRecord::new(
        shared.timeline.clone(),
        id,
        name,
        peer.to_string(),
        accepted.into_std(),
    );
    let log = |text: String| shared.log.line(format!("conn {id} {name}: {text}"));
    log(format!("accepted from {peer}"));
    // Replies are small and latency matters more than packing.
    let _ = stream.set_nodelay(true);
    let deadline = accepted + shared.cfg.connect_timeout;
    let acceptor = TlsAcceptor::from(shared.tls.config.clone());
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Err(_) => return log("closed: TLS handshake timed out".into()),
        Ok(Err(e)) => return log(format!("closed: TLS handshake failed: {e}")),
        Ok(Ok(s)) => s,
    };
    let (_, session) = tls.get_ref();
    let client_chain = session.peer_certificates().map(|c| c.to_vec());
    let version = session
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    log(format!(
        "TLS {version} established{}",
        if client_chain.is_some() {
            ", client certificate presented"
        } else {
            ""
        }
    ));
    let info = ConnInfo {
        id,
        transport: name,
        accepted,
        client_chain,
    };
    match transport {
        Transport::Mqtt => conn::run(tls, shared.clone(), info, rec).await,
        Transport::Ws => {
            match tokio::time::timeout_at(deadline, ws::accept(tls, MAX_PACKET)).await {
                Err(_) => log("closed: WebSocket upgrade timed out".into()),
                Ok(Err(why)) => log(format!("closed: {why}")),
                Ok(Ok((stream, proto))) => {
                    log(format!("WebSocket upgraded (subprotocol {proto:?})"));
                    conn::run(stream, shared.clone(), info, rec).await
                }
            }
        }
    }
}
