//! `{"type":"send","to":"bob","data":…}`: a direct message to every session
//! of a user, wherever the cluster holds them.

use serde_json::value::RawValue;
use wsring_protocol::{ErrorCode, MsgId};

use super::{ack, dedup_key};
use crate::session::{End, Session};

pub(super) async fn apply(
    s: &mut Session,
    to: &str,
    data: &RawValue,
    id: Option<MsgId>,
) -> Result<(), End> {
    let key = dedup_key(s, id.as_ref());
    let from = s.handle.user.clone();
    match s.node.send_direct(Some(&from), to, data, key).await {
        Ok(_) => ack(s, id.as_ref()).await,
        Err(e) => {
            s.error(ErrorCode::Unavailable, &e.to_string(), id.as_ref())
                .await
        }
    }
}
