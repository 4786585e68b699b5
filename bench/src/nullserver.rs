//! The do-nothing HTTP server: answers every request with `size` bytes made
//! of one preallocated 1 MiB chunk sent over and over (or 512 bytes for
//! `/small`, to measure the request rate the client and loopback allow). It runs on its own OS
//! thread with its own single-threaded runtime, like a separate process, so
//! that a GET from it measures what the machine's loopback and HTTP stack can
//! carry when the server does no work at all.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::http::{Result, FRAME};

/// Path answered with a small, manifest-sized body instead of `size` bytes.
pub const SMALL_PATH: &str = "/small";
pub const SMALL_LEN: u64 = 512;

struct Repeat {
    chunk: Bytes,
    left: u64,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let n = this.left.min(this.chunk.len() as u64) as usize;
        this.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Starts the server on 127.0.0.1:0 and returns its address. The thread lives
/// until the process exits.
pub fn start(size: u64, chunk: Bytes) -> Result<SocketAddr> {
    let chunk = chunk.slice(..chunk.len().min(FRAME));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("null-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let chunk = chunk.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let left = if req.uri().path() == SMALL_PATH {
                                SMALL_LEN
                            } else {
                                size
                            };
                            let body = Repeat {
                                chunk: chunk.clone(),
                                left,
                            };
                            async move { Ok::<_, Infallible>(Response::new(body)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        })?;
    Ok(addr)
}
