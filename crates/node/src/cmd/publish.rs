//! `{"type":"publish","room":"lobby","data":…}`: a message to every member of
//! a room, the sender's sessions included. Publishing does not require
//! membership (the HTTP API publishes without being a member, too).

use serde_json::value::RawValue;
use wsring_protocol::{ErrorCode, MsgId};

use super::{ack, dedup_key};
use crate::session::{End, Session};

pub(super) async fn apply(
    s: &mut Session,
    room: &str,
    data: &RawValue,
    id: Option<MsgId>,
) -> Result<(), End> {
    let key = dedup_key(s, id.as_ref());
    let from = s.handle.user.clone();
    match s.node.publish_room(Some(&from), room, data, key).await {
        Ok(_) => ack(s, id.as_ref()).await,
        Err(e) => {
            s.error(ErrorCode::Unavailable, &e.to_string(), id.as_ref())
                .await
        }
    }
}
