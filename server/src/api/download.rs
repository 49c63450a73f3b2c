//! File downloads streamed as they are written: the producer runs on a blocking thread
//! and hands the response 64 KiB chunks through a small bounded channel, so a file of any
//! length costs a few chunks of memory and a slow client slows the producer, not the
//! server.

use std::io::{self, Write};

use actix_web::{HttpResponse, http::header, web::Bytes};
use tokio::sync::mpsc;

use crate::{error::ApiError, tabular::Format};

const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the producer and the connection.
const IN_FLIGHT: usize = 4;

/// The producer's end: buffers writes and sends full chunks; a closed connection makes
/// every later write fail, which stops the producer.
#[derive(Debug)]
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the download was closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// A `200` whose body `produce` writes, as an attachment named `name.<extension>`.
/// An error after the first bytes went out can only cut the body short: it is logged
/// and the connection is closed, so the client sees an incomplete download, never a
/// complete-looking wrong file.
pub fn stream<F>(name: &str, format: Format, produce: F) -> HttpResponse
where
    F: FnOnce(ChannelWriter) -> Result<(), ApiError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(IN_FLIGHT);
    let writer = ChannelWriter {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
    };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(writer) {
            tracing::error!(error = %e, "a download failed part way");
            let _ = tx.blocking_send(Err(io::Error::other("the download failed")));
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.{}\"", format.extension()),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body)
}
