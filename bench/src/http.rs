//! A lean HTTP/1.1 client: one keep-alive connection per worker, request
//! bodies that are zero-copy slices of a preallocated buffer, and response
//! bodies that are read and discarded (or collected when small).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

pub fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(msg.into().into())
}

/// Size of the frames a streamed request body is cut into.
pub const FRAME: usize = 1 << 20;

/// A request body. Cloning is cheap (reference-counted `Bytes`), which lets a
/// request be retried on a fresh connection.
#[derive(Clone, Debug)]
pub enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    /// `data` sent as frames of at most `FRAME` bytes, never copied.
    Stream(Bytes),
}

impl ReqBody {
    pub fn len(&self) -> u64 {
        match self {
            ReqBody::Empty | ReqBody::Full(None) => 0,
            ReqBody::Full(Some(b)) | ReqBody::Stream(b) => b.len() as u64,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let out = match this {
            ReqBody::Empty => None,
            ReqBody::Full(b) => b.take(),
            ReqBody::Stream(b) => {
                if b.is_empty() {
                    None
                } else {
                    let n = b.len().min(FRAME);
                    Some(b.split_to(n))
                }
            }
        };
        Poll::Ready(out.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// Where a registry (or the do-nothing server) listens.
#[derive(Clone, Debug)]
pub struct Target {
    /// host:port to connect to.
    pub addr: String,
    /// Value of the Host header.
    pub host: HeaderValue,
    /// Sent with every request (a registry token, after `registry::login`).
    pub authorization: Option<HeaderValue>,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(s) => return err(format!("only http:// URLs are supported, not {s}://")),
            None => return err(format!("URL {url:?} needs http://")),
        }
        if !matches!(uri.path(), "" | "/") {
            return err(format!("URL {url:?} must not have a path"));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("URL {url:?} has no host"))?;
        let addr = if auth.port().is_some() {
            auth.as_str().to_string()
        } else {
            format!("{}:80", auth.host())
        };
        Ok(Target {
            addr,
            host: HeaderValue::from_str(auth.as_str())?,
            authorization: None,
        })
    }
}

/// One keep-alive HTTP/1.1 connection, reconnected when the server closes it.
pub struct Conn {
    target: Target,
    send: Option<SendRequest<ReqBody>>,
}

impl Conn {
    pub fn new(target: &Target) -> Conn {
        Conn {
            target: target.clone(),
            send: None,
        }
    }

    /// A connection that is already established.
    pub async fn connect(target: &Target) -> Result<Conn> {
        let mut c = Conn::new(target);
        c.ensure().await?;
        Ok(c)
    }

    async fn ensure(&mut self) -> Result<bool> {
        if let Some(s) = &self.send {
            if !s.is_closed() {
                return Ok(false);
            }
        }
        let stream = TcpStream::connect(&self.target.addr)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.target.addr))?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.send = Some(send);
        Ok(true)
    }

    /// Sends one request. A request that fails on a reused connection (the
    /// server closed it while idle) is retried once on a new connection.
    pub async fn send(
        &mut self,
        method: &Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: ReqBody,
    ) -> Result<Response<Incoming>> {
        let mut retried = false;
        loop {
            let fresh = self.ensure().await?;
            let mut b = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.target.host.clone());
            if let Some(a) = &self.target.authorization {
                b = b.header(hyper::header::AUTHORIZATION, a.clone());
            }
            for (k, v) in headers {
                b = b.header(k, v);
            }
            if !(body.len() == 0 && matches!(*method, Method::GET | Method::HEAD)) {
                b = b.header(CONTENT_LENGTH, body.len());
            }
            let req = b.body(body.clone())?;
            let send = self.send.as_mut().expect("connected");
            let res = match send.ready().await {
                Ok(()) => send.send_request(req).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(r) => {
                    if connection_close(r.headers()) {
                        // Let the next request open a new connection.
                        self.send = None;
                    }
                    return Ok(r);
                }
                Err(e) => {
                    self.send = None;
                    // Only small requests are retried: a big upload that
                    // broke midway is a real failure.
                    if fresh || retried || body.len() > FRAME as u64 {
                        return err(format!("{method} {path}: {e}"));
                    }
                    retried = true;
                }
            }
        }
    }
}

fn connection_close(h: &HeaderMap) -> bool {
    h.get(hyper::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Reads a response body to the end, discarding it; returns its length.
pub async fn drain(body: &mut Incoming) -> Result<u64> {
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

/// Reads a (small) response body into memory.
pub async fn collect(body: Incoming) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    let mut body = body;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            buf.extend_from_slice(&d);
        }
    }
    Ok(buf.freeze())
}

/// Turns an unexpected status into an error carrying the status and body.
pub async fn expect(
    what: &str,
    res: Response<Incoming>,
    want: &[StatusCode],
) -> Result<Response<Incoming>> {
    if want.contains(&res.status()) {
        return Ok(res);
    }
    let status = res.status();
    let body = collect(res.into_body()).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned();
    err(format!(
        "{what}: got HTTP {status}, expected {}; body: {}",
        want.iter()
            .map(|s| s.as_u16().to_string())
            .collect::<Vec<_>>()
            .join(" or "),
        if text.is_empty() { "(empty)" } else { &text }
    ))
}

pub fn header_str<'a>(res: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The path and query of a Location header, which may be absolute or relative.
pub fn location_path(what: &str, res: &Response<Incoming>) -> Result<String> {
    let loc = header_str(res, "location")
        .ok_or_else(|| format!("{what}: response has no Location header"))?;
    if loc.starts_with('/') {
        return Ok(loc.to_string());
    }
    let uri: Uri = loc
        .parse()
        .map_err(|e| format!("{what}: bad Location {loc:?}: {e}"))?;
    match uri.path_and_query() {
        Some(pq) if uri.scheme().is_some() => Ok(pq.as_str().to_string()),
        _ => err(format!("{what}: unsupported relative Location {loc:?}")),
    }
}

/// Appends a query parameter to a path that may already have a query.
pub fn with_query(path: &str, kv: &str) -> String {
    if path.contains('?') {
        format!("{path}&{kv}")
    } else {
        format!("{path}?{kv}")
    }
}
