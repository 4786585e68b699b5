//! Blob bytes in flight, to or from a client.

use std::io;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

/// Blob bytes in flight, to or from a client.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Read size for blob GETs: large enough that per-chunk overhead vanishes.
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks read ahead of the socket.
const READ_AHEAD: usize = 4;

/// A body already read whole, as a stream (for the paths that take one).
pub(super) fn once(bytes: Bytes) -> ByteStream {
    futures_util::stream::once(async move { Ok(bytes) }).boxed()
}

/// Streams `len` bytes of `file` from `start`, read by a blocking thread that
/// stays up to READ_AHEAD chunks ahead. Dropping the stream stops the thread.
pub(super) fn read_ahead(mut file: std::fs::File, start: u64, len: u64) -> ByteStream {
    use std::io::{Read, Seek};
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(io::SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut file = file.take(len);
        loop {
            let mut buf = bytes::BytesMut::zeroed(READ_CHUNK);
            let n = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(n);
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return; // the client went away
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}
