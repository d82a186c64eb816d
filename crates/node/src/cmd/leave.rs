//! `{"type":"leave","room":"lobby"}`: stop receiving a room. Leaving a room
//! the session is not in is a no-op, acknowledged like any other leave.

use wsring_cluster::StreamName;
use wsring_protocol::MsgId;

use super::ack;
use crate::session::{End, Session};

pub(super) async fn apply(s: &mut Session, room: &str, id: Option<MsgId>) -> Result<(), End> {
    let session = s.handle.id.clone();
    s.node.leave_room(&session, room).await;
    s.cursors.remove(&StreamName::Room(room.to_owned()));
    ack(s, id.as_ref()).await
}
