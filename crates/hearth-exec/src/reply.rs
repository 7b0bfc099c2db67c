//! The serving side's answers on the wire: an event in a control frame, or a refusal told to
//! the client and returned to the caller. Shared by the request handlers, which own nothing
//! else in common.

use hearth_proto::control::{Event, TAG_CONTROL};
use hearth_proto::frame::write_frame;

use crate::conn::Conn;
use crate::refusal::Refusal;

/// Sends one event; failing to is the connection's end (`closed`).
pub(crate) fn send<C: Conn>(conn: &mut C, ev: &Event) -> Result<(), Refusal> {
    write_frame(conn, TAG_CONTROL, &serde_json::to_vec(ev).expect("events serialize")).map_err(Refusal::from)
}

/// Tells the client `refusal` (as far as the connection still takes it) and returns it.
pub(crate) fn refuse<C: Conn, T>(conn: &mut C, refusal: Refusal) -> Result<T, Refusal> {
    let _ = send(conn, &refusal.event());
    Err(refusal)
}
