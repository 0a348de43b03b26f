//! MQTT over WebSocket: the upgrade (`/$iothub/websocket`, subprotocol `mqtt` in any case) and
//! a byte-stream adapter over WebSocket messages.
//!
//! MQTT packets are not aligned to WebSocket messages: one packet may span several binary
//! messages and one message may hold several packets, so the adapter turns the messages into a
//! plain byte stream ([`WsStream`] implements `AsyncRead` + `AsyncWrite`) and the MQTT codec
//! frames packets as it would over TCP. Each write becomes one binary message.

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::client::Request as ClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The resource path Azure IoT clients open.
pub const PATH: &str = "/$iothub/websocket";

/// A WebSocket connection seen as a byte stream.
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WsStream<S> {
    /// Wraps an established WebSocket.
    pub fn new(inner: WebSocketStream<S>) -> Self {
        WsStream {
            inner,
            pending: Bytes::new(),
        }
    }
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                // end of stream
                None => return Poll::Ready(Ok(())),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()))
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                Some(Ok(Message::Binary(b))) => this.pending = b,
                Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "WebSocket text message (MQTT needs binary messages)",
                    )))
                }
                // pings are answered by tungstenite itself
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut this.inner)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().inner).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

/// Limits a WebSocket message and frame to a little over the MQTT packet limit. Buffers are small
/// (tungstenite's defaults are 128 KiB each, per connection: 1.5 GB for a fleet of 10,000), and
/// with no write-side target each message goes to TLS as it is written.
pub fn config(max_packet: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_packet + 1024))
        .max_frame_size(Some(max_packet + 1024))
}

/// Picks the client's `mqtt` subprotocol (any case) from a `Sec-WebSocket-Protocol` header.
pub fn pick_subprotocol(header: &str) -> Option<&str> {
    header
        .split(',')
        .map(str::trim)
        .find(|p| p.eq_ignore_ascii_case("mqtt"))
}

#[allow(clippy::result_large_err)]
fn refuse(status: StatusCode, why: String) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why));
    *r.status_mut() = status;
    r
}

/// Server side of the upgrade. Checks the path and the subprotocol and echoes the client's
/// spelling of `mqtt`. Returns the stream and the subprotocol, or why the upgrade failed.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    max_packet: usize,
) -> Result<(WsStream<S>, String), String> {
    let outcome: Arc<Mutex<Result<String, String>>> =
        Arc::new(Mutex::new(Err("no upgrade request".into())));
    let seen = outcome.clone();
    // the signature is tungstenite's callback type; its large Err is not ours to shrink
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let set = |r: Result<String, String>| {
            if let Ok(mut o) = seen.lock() {
                *o = r;
            }
        };
        if req.uri().path() != PATH {
            let why = format!("WebSocket path {:?}, expected {PATH:?}", req.uri().path());
            set(Err(why.clone()));
            return Err(refuse(StatusCode::NOT_FOUND, why));
        }
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(pick_subprotocol)
            .map(str::to_string);
        let Some(proto) = offered else {
            let why = "WebSocket upgrade without the mqtt subprotocol".to_string();
            set(Err(why.clone()));
            return Err(refuse(StatusCode::BAD_REQUEST, why));
        };
        if let Ok(v) = HeaderValue::from_str(&proto) {
            resp.headers_mut().insert("sec-websocket-protocol", v);
        }
        set(Ok(proto));
        Ok(resp)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config(max_packet)))
            .await;
    let decided = outcome
        .lock()
        .map(|o| o.clone())
        .unwrap_or_else(|_| Err("internal lock".into()));
    match (ws, decided) {
        (Ok(ws), Ok(proto)) => Ok((WsStream::new(ws), proto)),
        (Err(_), Err(why)) => Err(why),
        (Err(e), Ok(_)) => Err(format!("WebSocket handshake failed: {e}")),
        (Ok(_), Err(why)) => Err(why),
    }
}

/// Client side of the upgrade (for tests and tools): opens `wss://<host>:<port>/$iothub/websocket`
/// over an established (TLS) stream, offering `subprotocol`.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host_port: &str,
    subprotocol: &str,
) -> Result<WsStream<S>, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req: ClientRequest = format!("wss://{host_port}{PATH}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let v = HeaderValue::from_str(subprotocol).map_err(|e| e.to_string())?;
    req.headers_mut().insert("sec-websocket-protocol", v);
    let (ws, _resp) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(config(98_304)))
            .await
            .map_err(|e| format!("WebSocket upgrade failed: {e}"))?;
    Ok(WsStream::new(ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_matching_keeps_the_clients_spelling() {
        assert_eq!(pick_subprotocol("MQTT"), Some("MQTT"));
        assert_eq!(pick_subprotocol("mqttv3.1, mqtt"), Some("mqtt"));
        assert_eq!(pick_subprotocol("Mqtt"), Some("Mqtt"));
        assert_eq!(pick_subprotocol("wamp"), None);
    }
}
