//! `{"type":"join","room":"lobby","resume":…,"epoch":…}`: start receiving a
//! room.
//!
//! The session is added to the room (and the node subscribed to the room's
//! topic) *before* the stream position is read, so a message published during
//! the join is either in the history read or arrives live afterwards — never
//! neither. In durable mode the join always ends with a `resumed` frame that
//! carries the room's position, so a client that never saw a room message can
//! still resume it after a reconnect.

use wsring_cluster::StreamName;
use wsring_protocol::{ErrorCode, MsgId};

use super::ack;
use crate::session::{Cursor, End, Resume, Session};

pub(super) async fn apply(
    s: &mut Session,
    room: String,
    id: Option<MsgId>,
    resume: Option<u64>,
    epoch: Option<String>,
) -> Result<(), End> {
    let session = s.handle.id.clone();
    if let Err(e) = s.node.join_room(&session, &room).await {
        return s
            .error(ErrorCode::Unavailable, &e.to_string(), id.as_ref())
            .await;
    }
    let Some(store) = s.node.streams.clone() else {
        return ack(s, id.as_ref()).await;
    };
    let stream = StreamName::Room(room);
    let head = match store.head(&stream).await {
        Ok(h) => h,
        Err(e) => {
            let msg = format!("stream store unavailable: {e}");
            s.node.leave_room(&session, stream_room(&stream)).await;
            return s.error(ErrorCode::Unavailable, &msg, id.as_ref()).await;
        }
    };
    let cursor = match resume {
        Some(seq) => Cursor::resume(
            &head,
            &Resume {
                seq,
                epoch: epoch.unwrap_or_default(),
            },
        ),
        None => Cursor::at(&head),
    };
    // Re-joining a room already followed keeps the further-along cursor.
    let keep = s
        .cursors
        .get(&stream)
        .is_some_and(|c| *c.epoch == *cursor.epoch && c.seq >= cursor.seq && resume.is_none());
    if !keep {
        s.cursors.insert(stream.clone(), cursor);
    }
    ack(s, id.as_ref()).await?;
    s.catch_up(&stream, true).await
}

fn stream_room(s: &StreamName) -> &str {
    match s {
        StreamName::Room(r) | StreamName::User(r) => r,
    }
}
