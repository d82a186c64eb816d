//! Client frame handlers, one file per frame kind (in the style of
//! mini-redis's `cmd/`), dispatched from [`ClientFrame`].
//!
//! Every handler answers in-band: an `ack` when the request carried an `id`
//! and the cluster accepted it, an `error` frame otherwise. None of them ends
//! the session on failure.

mod join;
mod leave;
mod ping;
mod publish;
mod send;

use wsring_protocol::{ClientFrame, MsgId};

use crate::session::{End, Session};

/// Applies one parsed client frame.
pub(crate) async fn apply(s: &mut Session, frame: ClientFrame) -> Result<(), End> {
    match frame {
        ClientFrame::Send { to, data, id } => send::apply(s, &to, &data, id).await,
        ClientFrame::Join {
            room,
            id,
            resume,
            epoch,
        } => join::apply(s, room, id, resume, epoch).await,
        ClientFrame::Leave { room, id } => leave::apply(s, &room, id).await,
        ClientFrame::Publish { room, data, id } => publish::apply(s, &room, &data, id).await,
        ClientFrame::Ping { id } => ping::apply(s, id).await,
    }
}

/// The idempotency key of a client request: per sender, per client id.
/// `/` cannot occur in a user id, so the key is unambiguous even though user
/// ids and request ids may both contain `:`.
fn dedup_key(s: &Session, id: Option<&MsgId>) -> Option<String> {
    id.map(|id| format!("ws/{}/{}", s.handle.user, id.key()))
}

/// Sends `ack` for an accepted request that carried an id.
async fn ack(s: &mut Session, id: Option<&MsgId>) -> Result<(), End> {
    match id {
        Some(id) => {
            let f = wsring_protocol::ServerFrame::Ack { id };
            s.write_text(f.to_json()).await
        }
        None => Ok(()),
    }
}
