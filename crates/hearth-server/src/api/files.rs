//! Files in a workstation: upload (`PUT`, the body is the file) and download (`GET`), streamed
//! both ways through the agent, never held whole in memory. Uploads replace files atomically
//! (the agent writes a temporary and renames it) and belong to the image's user.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hearth_exec::{ErrorKind, ExecError, WriteFile};
use hearth_proto::api::ErrorBody;
use hearth_proto::control::validate_path;
use serde::Deserialize;

use super::error::ApiError;
use crate::app::{blocking, SharedApp};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FileQuery {
    /// Absolute path in the workstation.
    pub path: String,
    /// Octal permission bits for an upload (default 644).
    pub mode: Option<String>,
}

fn agent_error(e: ExecError) -> ApiError {
    match e {
        ExecError::Refused { kind: ErrorKind::NotFound, message } => ApiError::not_found(message),
        ExecError::Refused { kind: ErrorKind::TooLarge, message } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message),
        ExecError::Refused { message, .. } => ApiError::bad_request(message),
        e => ApiError::internal(format!("the workstation's agent: {e}")),
    }
}

/// A blocking reader over the chunks of an async body (the agent client is blocking).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Uploads a file: the request body, `Content-Length` bytes, becomes the file at `path`.
#[utoipa::path(put, path = "/api/v1/workstations/{id}/files", params(("id" = String, Path), FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 411, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload(State(app): State<SharedApp>, Path(id): Path<String>, Query(q): Query<FileQuery>, headers: HeaderMap, body: Body) -> Result<StatusCode, ApiError> {
    validate_path(&q.path).map_err(|m| ApiError::invalid("path", m))?;
    let mode = match &q.mode {
        Some(m) => Some(u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| ApiError::invalid("mode", "octal permission bits, e.g. 644"))?),
        None => None,
    };
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| ApiError::new(StatusCode::LENGTH_REQUIRED, "bad_request", "an upload needs a Content-Length"))?;
    if size > app.config.limits.max_file_bytes {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("files are limited to {} bytes", app.config.limits.max_file_bytes)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut stream = body.into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(|e| e.to_string());
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    let user = app.config.defaults.user.clone();
    blocking(move || {
        let agent = app.agent(&id)?;
        let spec = WriteFile { path: &q.path, size, mode, user: Some(&user), create_dirs: true };
        agent.write_file(spec, &mut ChannelReader { rx, cur: Bytes::new() }).map_err(agent_error)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads a file.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/files", params(("id" = String, Path), FileQuery),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn download(State(app): State<SharedApp>, Path(id): Path<String>, Query(q): Query<FileQuery>) -> Result<Response, ApiError> {
    validate_path(&q.path).map_err(|m| ApiError::invalid("path", m))?;
    let max = app.config.limits.max_file_bytes;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    tokio::task::spawn_blocking(move || {
        let agent = match app.agent(&id) {
            Ok(a) => a,
            Err(e) => {
                let _ = first_tx.send(Err(e));
                return;
            }
        };
        // The response starts once the agent accepted the request (or said why not).
        let mut sink = ChunkSink { tx, first: Some(first_tx) };
        let r = agent.read_file(&q.path, Some(max), &mut sink);
        match (r, sink.first.take()) {
            (Err(e), Some(first)) => {
                let _ = first.send(Err(agent_error(e)));
            }
            (Err(e), None) => {
                let _ = sink.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            (Ok(_), Some(first)) => {
                let _ = first.send(Ok(())); // an empty file
            }
            (Ok(_), None) => {}
        }
    });
    first_rx.await.map_err(|_| ApiError::internal("the download worker went away"))??;
    let body = Body::from_stream(tokio_stream(rx));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// Turns the channel into a stream for the response body.
fn tokio_stream(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Where the agent's file bytes go: the first write also says "the download started".
struct ChunkSink {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    first: Option<tokio::sync::oneshot::Sender<Result<(), ApiError>>>,
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
        self.tx.blocking_send(Ok(Bytes::copy_from_slice(buf))).map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
