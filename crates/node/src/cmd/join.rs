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
    let limit = s.node.cfg.max_rooms_per_session;
    let stream = StreamName::Room(room);
    let StreamName::Room(room) = &stream else {
        return Ok(());
    };
    if !s.node.table.is_in(&session, room) && s.node.table.room_count(&session) >= limit {
        let msg = format!("a session may be in at most {limit} rooms");
        return s.error(ErrorCode::LimitExceeded, &msg, id.as_ref()).await;
    }
    let added = match s.node.join_room(&session, room).await {
        Ok(added) => added,
        Err(e) => {
            return s
                .error(ErrorCode::Unavailable, &e.to_string(), id.as_ref())
                .await;
        }
    };
    let Some(store) = s.node.streams.clone() else {
        return ack(s, id.as_ref()).await;
    };
    let following = s.cursors.contains_key(&stream);
    if following && resume.is_none() {
        // Already live in this room: keep the cursor (replacing it with the
        // head would skip messages queued for this session right now).
        ack(s, id.as_ref()).await?;
        return s.catch_up(&stream, true).await;
    }
    let head = match store.head(&stream).await {
        Ok(h) => h,
        Err(e) => {
            // Undo only what this request did.
            if added {
                s.node.leave_room(&session, room).await;
            }
            let msg = format!("stream store unavailable: {e}");
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
    s.cursors.insert(stream.clone(), cursor);
    ack(s, id.as_ref()).await?;
    s.catch_up(&stream, true).await
}
