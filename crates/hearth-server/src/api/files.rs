//! Files in a workstation: upload (`PUT`, the body is the file) and download (`GET`), streamed
//! both ways through the agent, never held whole in memory. Uploads replace files atomically
//! (the agent writes a temporary and renames it) and belong to the image's user.
//!
//! What is HTTP's stays here: the body's chunks become a blocking reader for the service, the
//! service's writes become the response body's chunks.

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hearth_proto::api::ErrorBody;
use hearth_service::files::{parse_mode, Upload};
use serde::Deserialize;

use super::error::HttpError;
use super::extract::{ApiPath, ApiQuery};
use super::{Caller, SharedService};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// Absolute path in the workstation.
    pub path: String,
    /// Octal permission bits for an upload (default 644).
    pub mode: Option<String>,
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
pub async fn upload(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, HttpError> {
    let mode = q.mode.as_deref().map(parse_mode).transpose()?;
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| HttpError::new(StatusCode::LENGTH_REQUIRED, "bad_request", "an upload needs a Content-Length"))?;
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
    svc.upload(&who, &id, Upload { path: q.path, mode, size }, Box::new(ChannelReader { rx, cur: Bytes::new() })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads a file.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/files", params(("id" = String, Path), FileQuery),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn download(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>, ApiQuery(q): ApiQuery<FileQuery>) -> Result<Response, HttpError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), HttpError>>();
    // The response starts once the agent accepted the request (the first write), or says why not.
    let first = Arc::new(Mutex::new(Some(first_tx)));
    let sink = ChunkSink { tx: tx.clone(), first: first.clone() };
    tokio::spawn(async move {
        let done = svc.download(&who, &id, &q.path, Box::new(sink)).await;
        let first = first.lock().ok().and_then(|mut f| f.take());
        match (done, first) {
            (Err(e), Some(first)) => drop(first.send(Err(e.into()))),
            // Cut short mid-body: the client sees the body fail.
            (Err(e), None) => drop(tx.send(Err(std::io::Error::other(e.to_string()))).await),
            // An empty file: no write ever said it started.
            (Ok(_), Some(first)) => drop(first.send(Ok(()))),
            (Ok(_), None) => {}
        }
    });
    first_rx.await.map_err(|_| hearth_service::Error::internal("the download worker went away"))??;
    let mut rx = rx;
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// Told once, by the first write or by the transfer's end: whether the download started.
type Started = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Result<(), HttpError>>>>>;

/// Where the agent's file bytes go: the first write also says "the download started".
struct ChunkSink {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    first: Started,
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(first) = self.first.lock().ok().and_then(|mut f| f.take()) {
            let _ = first.send(Ok(()));
        }
        self.tx.blocking_send(Ok(Bytes::copy_from_slice(buf))).map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
