//! `{"type":"ping","id":…}`: an application-level liveness check, answered
//! with `pong` carrying the same id (null when absent).

use wsring_protocol::{MsgId, ServerFrame};

use crate::session::{End, Session};

pub(super) async fn apply(s: &mut Session, id: Option<MsgId>) -> Result<(), End> {
    let f = ServerFrame::Pong { id: id.as_ref() };
    s.write_text(f.to_json()).await
}
