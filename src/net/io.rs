//! A connected byte stream: TLS, or a WebSocket over TLS whose binary messages carry MQTT bytes
//! (a packet may span messages and a message may hold several packets).

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::error::Error;

/// What a read from TLS asks for at least.
const READ_CHUNK: usize = 1024;

pub enum Io {
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

impl Io {
    /// Appends what arrives to `buf`; Ok(0) when the peer closed. Cancel-safe.
    pub async fn read_into(&mut self, buf: &mut BytesMut, host: &str) -> Result<usize, Error> {
        match self {
            Io::Tls(s) => {
                // DPS's packets are small (a reply is under 1 KB unless it carries an issued
                // certificate); a larger one takes more reads, the buffer growing
                buf.reserve(READ_CHUNK);
                s.read_buf(buf).await.map_err(|e| read_error(e, host))
            }
            Io::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Binary(data))) => {
                        buf.extend_from_slice(&data);
                        if !data.is_empty() {
                            return Ok(data.len());
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(Error::Protocol(
                            "a WebSocket text message where MQTT needs binary".into(),
                        ))
                    }
                    Some(Ok(_)) => {} // ping/pong: tungstenite answers pings itself
                    Some(Err(e)) => return Err(ws_error(e, host)),
                }
            },
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8], host: &str) -> Result<(), Error> {
        match self {
            Io::Tls(s) => {
                s.write_all(bytes).await.map_err(|e| read_error(e, host))?;
                s.flush().await.map_err(|e| read_error(e, host))
            }
            Io::Ws(ws) => ws
                .send(Message::binary(bytes.to_vec()))
                .await
                .map_err(|e| ws_error(e, host)),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = match self {
            Io::Tls(s) => s.shutdown().await.map_err(drop),
            Io::Ws(ws) => SinkExt::close(&mut **ws).await.map_err(drop),
        };
    }
}

/// An I/O failure after the handshake; a TLS alert here (e.g. the client certificate was
/// refused after a TLS 1.3 handshake) is explained like a handshake failure.
pub fn read_error(e: std::io::Error, host: &str) -> Error {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        let (why, transient) = super::tls::explain(tls, host);
        return Error::Tls { why, transient };
    }
    Error::ConnectionLost(e.to_string())
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error, host: &str) -> Error {
    use tokio_tungstenite::tungstenite::Error as W;
    match e {
        W::Io(io) => read_error(io, host),
        W::ConnectionClosed | W::AlreadyClosed => {
            Error::ConnectionLost("the WebSocket was closed".into())
        }
        W::Capacity(c) => Error::Protocol(format!("WebSocket message too large: {c}")),
        other => Error::Protocol(format!("WebSocket: {other}")),
    }
}
