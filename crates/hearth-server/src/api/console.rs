//! A workstation's serial console (the guest kernel and the agent): the end of its log, and a
//! live follow over Server-Sent Events.
//!
//! The log is a file Firecracker appends to (rotated when a VM starts, see hearth-vmm); a
//! follower polls its length, so it costs nothing between lines and needs no notification
//! from the VM. Followers are counted: each holds a connection and a poll timer.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use hearth_proto::api::{ConsoleOutput, ErrorBody};
use serde::Deserialize;

use super::error::ApiError;
use crate::app::{blocking, SharedApp};

const MAX_TAIL: u64 = 1 << 20;
const DEFAULT_TAIL: u64 = 64 << 10;
/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(200);
/// Most bytes in one event.
const MAX_EVENT_BYTES: u64 = 16 << 10;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConsoleQuery {
    /// Bytes from the end of the log (default 65536, at most 1 MiB).
    pub tail_bytes: Option<u64>,
}

fn tail_bytes(q: &ConsoleQuery) -> Result<u64, ApiError> {
    let n = q.tail_bytes.unwrap_or(DEFAULT_TAIL);
    if n > MAX_TAIL {
        return Err(ApiError::invalid("tail_bytes", format!("at most {MAX_TAIL}")));
    }
    Ok(n)
}

/// The console log of a workstation that exists.
fn log_path(app: &crate::app::App, id: &str) -> Result<PathBuf, ApiError> {
    app.row(id)?;
    Ok(app.runtime.get(id)?.console_log())
}

/// The end of the serial console log.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/console", params(("id" = String, Path), ConsoleQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn console(State(app): State<SharedApp>, Path(id): Path<String>, Query(q): Query<ConsoleQuery>) -> Result<impl IntoResponse, ApiError> {
    let n = tail_bytes(&q)?;
    let text = blocking(move || {
        let mut f = Follow::from_end(log_path(&app, &id)?, n);
        // One read: a guest printing meanwhile cannot make this answer grow past `n`.
        Ok(f.read_more(n).unwrap_or_default())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// Follows the serial console: the last `tail_bytes` first, then what the guest prints, as
/// Server-Sent Events: `output` events carry `{"text": …}`; an `end` event
/// (`{"reason": "deleted"}` or `{"reason": "server_stopping"}`) closes the stream.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/console/stream", params(("id" = String, Path), ConsoleQuery),
    responses((status = 200, content_type = "text/event-stream", body = ConsoleOutput), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream(State(app): State<SharedApp>, Path(id): Path<String>, Query(q): Query<ConsoleQuery>) -> Result<impl IntoResponse, ApiError> {
    let n = tail_bytes(&q)?;
    let permit = app.console_followers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_followers", format!("at most {} console followers at once", app.config.limits.max_console_followers))
    })?;
    let stopping = app.stopping.subscribe();
    let path = {
        let app = app.clone();
        blocking(move || log_path(&app, &id)).await?
    };
    let follow = Follow::from_end(path, n);
    let events = futures_util::stream::unfold(Some((follow, stopping, permit)), |state| async move {
        let (mut f, mut stopping, permit) = state?;
        loop {
            // A missing log means the workstation (its directory) is gone. The end carries data:
            // an event without any is never dispatched by browsers' EventSource.
            let reason = if !f.path.exists() {
                Some("deleted")
            } else if *stopping.borrow_and_update() {
                Some("server_stopping")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Some((Ok::<_, Infallible>(Event::default().event("end").data(format!("{{\"reason\":\"{reason}\"}}"))), None));
            }
            let (chunk, back) = tokio::task::spawn_blocking(move || (f.read_more(MAX_EVENT_BYTES), f)).await.ok()?;
            f = back;
            if let Some(text) = chunk {
                let data = serde_json::to_string(&ConsoleOutput { text }).expect("console output serializes");
                return Some((Ok(Event::default().event("output").data(data)), Some((f, stopping, permit))));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stopping.changed() => {}
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Reading a growing log from an offset, as text.
struct Follow {
    path: PathBuf,
    offset: u64,
    /// The start of a UTF-8 sequence cut by the end of the last read.
    pending: Vec<u8>,
}

impl Follow {
    /// Positioned `n` bytes before the log's end (its start, if it is shorter).
    fn from_end(path: PathBuf, n: u64) -> Follow {
        let mut f = Follow { path, offset: 0, pending: Vec::new() };
        f.offset = f.len().saturating_sub(n);
        f
    }

    fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Up to `max` new bytes as text; none when there is nothing new. A log that shrank was
    /// rotated: it is read again from its start.
    fn read_more(&mut self, max: u64) -> Option<String> {
        let len = self.len();
        if len < self.offset {
            self.offset = 0;
            self.pending.clear();
        }
        if len == self.offset {
            return None;
        }
        let mut f = std::fs::File::open(&self.path).ok()?;
        f.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut buf = std::mem::take(&mut self.pending);
        let n = f.take(max.min(len - self.offset)).read_to_end(&mut buf).ok()?;
        self.offset += n as u64;
        let text = take_text(&mut buf);
        self.pending = buf;
        (!text.is_empty()).then_some(text)
    }
}

/// Decodes `buf` (invalid bytes replaced), leaving in it only a UTF-8 sequence cut at its end.
fn take_text(buf: &mut Vec<u8>) -> String {
    let rest = buf.split_off(buf.len() - cut_tail(buf));
    let text = String::from_utf8_lossy(buf).into_owned();
    *buf = rest;
    text
}

/// How many bytes at the end of `b` start a UTF-8 sequence that is not complete yet.
fn cut_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let need = match c {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cut_mid_character_is_completed_by_the_next_read() {
        let bytes = "héllo ✓ done".as_bytes();
        for cut in 0..bytes.len() {
            let mut buf = bytes[..cut].to_vec();
            let mut text = take_text(&mut buf);
            buf.extend_from_slice(&bytes[cut..]);
            text.push_str(&take_text(&mut buf));
            assert_eq!((text.as_str(), buf.len()), ("héllo ✓ done", 0), "cut at {cut}");
        }
        let mut bad = vec![b'a', 0xff, b'b', 0xe2, 0x9c];
        assert_eq!(take_text(&mut bad), "a\u{fffd}b");
        assert_eq!(bad, [0xe2, 0x9c]);
    }

    #[test]
    fn a_follower_sees_appends_and_rotations() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.log");
        std::fs::write(&path, "boot\n").unwrap();
        let mut f = Follow { path: path.clone(), offset: 0, pending: Vec::new() };
        assert_eq!(f.read_more(2).as_deref(), Some("bo"));
        assert_eq!(f.read_more(100).as_deref(), Some("ot\n"));
        assert_eq!(f.read_more(100), None);
        std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut w| std::io::Write::write_all(&mut w, b"ready\n")).unwrap();
        assert_eq!(f.read_more(100).as_deref(), Some("ready\n"));
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(f.read_more(100).as_deref(), Some("new\n"));
    }
}
