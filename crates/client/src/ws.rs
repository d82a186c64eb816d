//! The client's WebSocket connection: TCP, the opening handshake (with the
//! permessage-deflate offer when [`crate::ClientConfig::deflate`] is on),
//! and `wsring-deflate`'s inflating layer below tungstenite, which has no
//! extension support of its own. [`handshake`] is public for tools that
//! open their own sockets (`wsring bench`).
//!
//! The client offers plain `permessage-deflate`: the server decides
//! whether it keeps its compression context (a wsring node does not,
//! unless its operator opted in), and the client never compresses its own
//! messages (RFC 7692 §6 leaves that to each sender), so it holds no
//! compressor, and no inflater between messages unless the server keeps
//! its context.

use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::SEC_WEBSOCKET_EXTENSIONS};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, error::UrlError};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
pub use wsring_deflate::Inflate;
use wsring_deflate::{NAME, Params, elements};

/// A connected WebSocket.
pub(crate) type Ws = WebSocketStream<Inflate<TcpStream>>;

/// The WebSocket settings of every connection the client opens: a small
/// read buffer (see [`wsring_protocol::CLIENT_READ_BUFFER_BYTES`]).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(wsring_protocol::CLIENT_READ_BUFFER_BYTES)
}

/// Opens a WebSocket to `url` (`ws://` only), offering permessage-deflate
/// if `deflate`. A response that agrees to anything not offered fails the
/// connection (RFC 6455 §4.1, RFC 7692 §5).
pub(crate) async fn connect(
    url: &str,
    deflate: bool,
) -> Result<(Ws, Response), tungstenite::Error> {
    let request = url.into_client_request()?;
    let uri = request.uri();
    let port = match uri.scheme_str() {
        Some("ws") => uri.port_u16().unwrap_or(80),
        Some("wss") => return Err(tungstenite::Error::Url(UrlError::TlsFeatureNotEnabled)),
        _ => return Err(tungstenite::Error::Url(UrlError::UnsupportedUrlScheme)),
    };
    let host = uri
        .host()
        .ok_or(tungstenite::Error::Url(UrlError::NoHostName))?
        .to_owned();
    let tcp = TcpStream::connect(format!("{host}:{port}")).await?;
    tcp.set_nodelay(true)?;
    handshake(tcp, request, deflate, ws_config()).await
}

/// The opening handshake of `request` over `stream`, offering
/// permessage-deflate if `deflate`; with it agreed, the server's compressed
/// messages are inflated below tungstenite. A response that agrees to
/// anything not offered fails the connection.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mut request: Request,
    deflate: bool,
    config: WebSocketConfig,
) -> Result<(WebSocketStream<Inflate<S>>, Response), tungstenite::Error> {
    if deflate {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(NAME));
    }
    let limit = config.max_message_size.unwrap_or(usize::MAX);
    let (mut ws, response) =
        client_async_with_config(request, Inflate::client(stream), Some(config)).await?;
    let agreed = agreed(&response, deflate)
        .map_err(|why| tungstenite::Error::Io(io::Error::new(io::ErrorKind::InvalidData, why)))?;
    ws.get_mut().agree(agreed, limit);
    Ok((ws, response))
}

/// What the server's response agreed on: `Some(takeover)` if
/// permessage-deflate (whether the server keeps its compression context),
/// `None` if no extension; an extension or parameter the client did not
/// offer is an error.
fn agreed(response: &Response, offered: bool) -> Result<Option<bool>, String> {
    let mut found = None;
    for value in response.headers().get_all(SEC_WEBSOCKET_EXTENSIONS) {
        let value = value
            .to_str()
            .map_err(|_| "an unreadable Sec-WebSocket-Extensions header".to_owned())?;
        for element in elements(value) {
            if !offered || !element.is_deflate() {
                return Err(format!(
                    "the server agreed to an extension the client did not offer: {}",
                    element.name
                ));
            }
            if found.is_some() {
                return Err("the server agreed to permessage-deflate twice".to_owned());
            }
            let params = Params::parse(&element.params)
                .ok_or_else(|| format!("invalid permessage-deflate response: {value}"))?;
            if params.client_max_window_bits.is_some() {
                // Not offered, so not the server's to set (RFC 7692 §7.1.2.2).
                return Err(format!("client_max_window_bits was not offered: {value}"));
            }
            found = Some(!params.server_no_context_takeover);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(extensions: &[&str]) -> Response {
        let mut r = Response::new(None);
        *r.status_mut() = tungstenite::http::StatusCode::SWITCHING_PROTOCOLS;
        for e in extensions {
            r.headers_mut().append(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(e).expect("header value"),
            );
        }
        r
    }

    #[test]
    fn the_response_decides_what_was_agreed() {
        assert_eq!(agreed(&response(&[]), true), Ok(None));
        assert_eq!(agreed(&response(&[]), false), Ok(None));
        assert_eq!(
            agreed(
                &response(&[
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
                ]),
                true
            ),
            Ok(Some(false))
        );
        assert_eq!(
            agreed(
                &response(&["permessage-deflate; server_max_window_bits=10"]),
                true
            ),
            Ok(Some(true))
        );
        for bad in [
            &["permessage-deflate"][..],
            &["x-webkit-deflate-frame"],
            &["permessage-deflate, permessage-deflate"],
            &["permessage-deflate", "permessage-deflate"],
            &["permessage-deflate; client_max_window_bits=10"],
            &["permessage-deflate; server_max_window_bits=16"],
            &["permessage-deflate; bogus"],
        ] {
            let offered = bad != ["permessage-deflate"];
            assert!(agreed(&response(bad), offered).is_err(), "{bad:?}");
        }
    }
}
