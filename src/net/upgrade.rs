//! The WebSocket upgrade, with the connection's buffers sized by us, not by the handshake.
//!
//! tungstenite's client handshake reads the upgrade answer into a 4 KiB buffer (beside a 4 KiB
//! read chunk) and hands that buffer on to the WebSocket as its read buffer, so every connection
//! kept 4 KiB whatever `read_buffer_size` says, and 8 KiB while waiting for the answer: in a
//! gateway opening thousands of registrations at once, a fifth of what one holds (issue 14's
//! fleet). So the request tungstenite would write (`generate_request`) is sent here, the answer
//! is read into a buffer the size of the answer (tungstenite's parser says when it is whole),
//! tungstenite's handshake checks it (status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`,
//! subprotocol) over the bytes read, and the WebSocket is then made with our configuration and
//! whatever followed the answer.

use std::io::{self, Cursor, Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::client::{
    generate_request, ClientHandshake, Request, Response,
};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::HandshakeError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

/// The longest upgrade answer read: tungstenite's own limit for a handshake.
const MAX_ANSWER: usize = 64 * 1024;
/// What a read of the answer asks for at least (an answer from DPS is about 160 bytes).
const READ_CHUNK: usize = 256;

/// Upgrades `stream` with `request`; errors are tungstenite's, as its own handshake gives them.
pub async fn client<S>(
    request: Request,
    mut stream: S,
    config: WebSocketConfig,
) -> Result<WebSocketStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (bytes, _key) = generate_request(request.clone())?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    drop(bytes); // not held while the answer is awaited
    let mut answer = Vec::new();
    let end = loop {
        if let Some((end, _)) = Response::try_parse(&answer)? {
            break end;
        }
        if answer.len() >= MAX_ANSWER {
            return Err(WsError::AttackAttempt);
        }
        answer.reserve(READ_CHUNK);
        if stream.read_buf(&mut answer).await? == 0 {
            return Err(WsError::Protocol(ProtocolError::HandshakeIncomplete));
        }
    };
    let after = answer.split_off(end);
    check(request, answer)?;
    Ok(WebSocketStream::from_partially_read(stream, after, Role::Client, Some(config)).await)
}

/// tungstenite's checks of a whole upgrade answer to `request`.
#[allow(clippy::result_large_err)] // tungstenite's error, as its handshake gives it (`client`)
fn check(request: Request, answer: Vec<u8>) -> Result<(), WsError> {
    match ClientHandshake::start(Answered(Cursor::new(answer)), request, None)?.handshake() {
        Ok(_) => Ok(()),
        Err(HandshakeError::Failure(e)) => Err(e),
        // it has the whole answer: it cannot be waiting for more
        Err(HandshakeError::Interrupted(_)) => {
            Err(WsError::Protocol(ProtocolError::HandshakeIncomplete))
        }
    }
}

/// An upgrade answer as read, for tungstenite's handshake; its write of the request, which was
/// sent already, goes nowhere.
struct Answered(Cursor<Vec<u8>>);

impl Read for Answered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut self.0, buf)
    }
}

impl Write for Answered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{duplex, AsyncBufReadExt, BufReader, ReadBuf};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::Message;

    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
    }

    /// A server that reads the upgrade request and answers it, agreeing to subprotocol `answer`,
    /// with one binary message after the answer (or, for `None`, closes without answering).
    /// Returns the request's lines and what the client wrote after the request.
    async fn server(
        stream: tokio::io::DuplexStream,
        answer: Option<&'static str>,
    ) -> (Vec<String>, Vec<u8>) {
        let mut stream = BufReader::new(stream);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            lines.push(line.trim_end().to_owned());
        }
        let Some(protocol) = answer else {
            return (lines, Vec::new()); // dropped: closed without answering
        };
        let key = lines
            .iter()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        let accept = derive_accept_key(key.as_bytes());
        // what the client wrote after the request's blank line, read ahead by the BufReader
        let mut rest = stream.buffer().to_vec();
        let mut stream = stream.into_inner();
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        // the answer and the first frame (binary, unmasked, 3 bytes) in one write, as a server
        // may send them
        let mut bytes = answer.into_bytes();
        bytes.extend_from_slice(&[0x82, 3, b'a', b'b', b'c']);
        stream.write_all(&bytes).await.unwrap();
        let _ = stream.read_to_end(&mut rest).await;
        (lines, rest)
    }

    fn request() -> Request {
        let mut request = "wss://dps.example/$iothub/websocket"
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        request
    }

    #[tokio::test]
    async fn the_request_goes_out_once_and_the_answer_and_a_frame_after_it_arrive_whole() {
        use futures_util::StreamExt;
        let (client_end, server_end) = duplex(4096);
        let server = tokio::spawn(server(server_end, Some("mqtt")));
        let mut ws = client(request(), client_end, config()).await.unwrap();
        // a frame lost with the answer's read would leave this waiting
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("the frame that came with the answer");
        assert_eq!(frame.unwrap().unwrap(), Message::binary(b"abc".to_vec()));
        drop(ws);
        let (lines, after) = server.await.unwrap();
        assert_eq!(lines[0], "GET /$iothub/websocket HTTP/1.1");
        assert!(lines.contains(&"Sec-WebSocket-Protocol: mqtt".to_owned()));
        // the request went out once: nothing followed it (a dropped WebSocket sends no close)
        assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
    }

    #[tokio::test]
    async fn tungstenite_still_checks_the_answer() {
        let (client_end, server_end) = duplex(4096);
        tokio::spawn(server(server_end, Some("other")));
        let Err(e) = client(request(), client_end, config()).await else {
            panic!("the upgrade succeeded")
        };
        assert!(
            matches!(
                e,
                WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_))
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_server_that_closes_without_answering_is_a_handshake_left_incomplete() {
        let (client_end, server_end) = duplex(4096);
        tokio::spawn(server(server_end, None));
        let Err(e) = client(request(), client_end, config()).await else {
            panic!("the upgrade succeeded")
        };
        assert!(
            matches!(e, WsError::Protocol(ProtocolError::HandshakeIncomplete)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_read_error_while_waiting_is_tungstenites_io_error() {
        struct Failing;
        impl AsyncRead for Failing {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")))
            }
        }
        impl AsyncWrite for Failing {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Poll::Ready(Ok(buf.len()))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let Err(e) = client(request(), Failing, config()).await else {
            panic!("the upgrade succeeded")
        };
        assert!(
            matches!(e, WsError::Io(ref io) if io.kind() == io::ErrorKind::ConnectionReset),
            "{e:?}"
        );
    }
}
