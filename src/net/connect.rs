//! One connection attempt: TCP (to the proxy when one is set), HTTP CONNECT, TLS, WebSocket.

use async_http_proxy::HttpError;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::io::{read_error, Io};
use super::{resolve, runtime, tls, upgrade, ConnectSpec, Flavor, Proxy, TlsSetup};
use crate::dps::MAX_PACKET;
use crate::error::Error;

/// The WebSocket path of the SDK's MQTT-over-WebSocket transport.
pub const WS_PATH: &str = "/$iothub/websocket";
/// The subprotocol MQTT 3.1.1 §6 names, as the Python and Node SDKs and Azure use it (the C
/// SDK sends `MQTT`; brokers that match the name exactly, such as mosquitto, refuse that).
pub const WS_SUBPROTOCOL: &str = "mqtt";

/// Opens the secure channel; returns it with a line for the trace.
pub async fn establish(spec: &ConnectSpec, flavor: Flavor) -> Result<(Io, String), Error> {
    let host = spec.endpoint.host.as_str();
    let tcp = async {
        match &spec.proxy {
            None => resolve::connect(host, spec.endpoint.port).await,
            Some(proxy) => through_proxy(proxy, host, spec.endpoint.port).await,
        }
    };
    let (tcp, config) = tokio::try_join!(tcp, tls_config(&spec.tls))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| Error::InvalidArgument {
        what: "uri",
        why: format!("{host:?} is not a valid host name: {e}"),
    })?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| match read_error(e, host) {
            Error::ConnectionLost(why) => Error::Tls {
                why: format!("the connection closed during the handshake ({why})"),
                transient: true,
            },
            other => other,
        })?;
    let (_, session) = tls.get_ref();
    let description = format!(
        "{} {:?} {:?}",
        spec.endpoint,
        session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        session.negotiated_cipher_suite().map(|s| s.suite())
    );
    match flavor {
        Flavor::Tls => Ok((Io::Tls(Box::new(tls)), description)),
        Flavor::WebSocket => {
            let url = format!("wss://{}{WS_PATH}", spec.endpoint);
            let mut request = url
                .into_client_request()
                .map_err(|e| Error::WebSocket(format!("cannot build the upgrade request: {e}")))?;
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(WS_SUBPROTOCOL),
            );
            // tungstenite's buffers default to 128 KiB each, allocated with the connection
            // (malloc mmaps blocks that large: 256 KiB of address space and a resident page or
            // more per connection). DPS packets are small (MAX_PACKET) and every packet is
            // flushed when sent: a 1 KiB read buffer (a DPS reply fits) grows by itself for a
            // larger frame, and with no write-side target a frame is handed to TLS as it is
            // written.
            let config = WebSocketConfig::default()
                .read_buffer_size(1024)
                .write_buffer_size(0)
                .max_message_size(Some(MAX_PACKET + 8))
                .max_frame_size(Some(MAX_PACKET + 8));
            let ws = upgrade::client(request, tls, config)
                .await
                .map_err(|e| upgrade_error(e, host))?;
            Ok((
                Io::Ws(Box::new(ws)),
                format!("{description} WebSocket {WS_PATH}"),
            ))
        }
    }
}

/// A failed WebSocket upgrade. A TLS alert read during it is a TLS refusal, not a WebSocket
/// failure: with TLS 1.3 the server checks the client certificate after the client has finished
/// its handshake, so its rejection arrives with the first read, the upgrade response.
fn upgrade_error(e: tokio_tungstenite::tungstenite::Error, host: &str) -> Error {
    use tokio_tungstenite::tungstenite::Error as W;
    match e {
        W::Io(io) => match read_error(io, host) {
            tls @ Error::Tls { .. } => tls,
            Error::ConnectionLost(why) => Error::WebSocket(format!("IO error: {why}")),
            other => other,
        },
        // The server closed before answering the upgrade: say where we knocked.
        W::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::HandshakeIncomplete) => {
            Error::WebSocket(format!(
                "the server closed the connection without answering the upgrade request \
                 (GET {WS_PATH}, subprotocol {WS_SUBPROTOCOL:?}): it may not serve MQTT over \
                 WebSocket at that path, or not accept the subprotocol MQTT 3.1.1 names"
            ))
        }
        other => Error::WebSocket(other.to_string()),
    }
}

async fn tls_config(setup: &TlsSetup) -> Result<std::sync::Arc<rustls::ClientConfig>, Error> {
    match setup {
        TlsSetup::Ready(config) => Ok(config.clone()),
        TlsSetup::PlatformRoots { identity, min } => {
            let (identity, min) = (identity.clone(), *min);
            runtime::blocking("prov-mqtt-certs", move || {
                tls::client_config(None, identity.as_ref(), min)
            })
            .await?
        }
    }
}

async fn through_proxy(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, Error> {
    let at = format!("{}:{}", proxy.host, proxy.port);
    let mut tcp = resolve::connect(&proxy.host, proxy.port)
        .await
        .map_err(|e| match e {
            Error::Connect { why, .. } => Error::Proxy {
                why: format!("cannot reach the proxy {at}: {why}"),
                transient: true,
            },
            other => other,
        })?;
    let result = match &proxy.credentials {
        None => async_http_proxy::http_connect_tokio(&mut tcp, host, port).await,
        Some((user, password)) => {
            async_http_proxy::http_connect_tokio_with_basic_auth(
                &mut tcp,
                host,
                port,
                user,
                password.expose(),
            )
            .await
        }
    };
    result.map_err(|e| explain_proxy(e, &at, host, port))?;
    Ok(tcp)
}

fn explain_proxy(e: HttpError, at: &str, host: &str, port: u16) -> Error {
    let (why, transient) = match e {
        // 407 is the standard answer; some proxies (tinyproxy) answer CONNECT with 401.
        HttpError::HttpCode200(code @ (401 | 407)) => (
            format!("the proxy {at} refused the tunnel with HTTP {code}: proxy authentication failed (check the proxy user name and password)"),
            false,
        ),
        HttpError::HttpCode200(403) => (format!("the proxy {at} refused CONNECT {host}:{port}: 403 Forbidden"), false),
        HttpError::HttpCode200(code) => {
            (format!("the proxy {at} refused CONNECT {host}:{port} with HTTP {code}"), code >= 500)
        }
        HttpError::IoError(io) => (format!("the proxy {at} dropped the connection: {io}"), true),
        HttpError::EndOfFile => (format!("the proxy {at} closed the connection before answering CONNECT"), true),
        other => (format!("the proxy {at} answered CONNECT with something that is not HTTP: {other}"), false),
    };
    Error::Proxy { why, transient }
}
