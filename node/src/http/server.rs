//! The HTTP API's listener: accepts connections up to a cap and serves each with HTTP/1.1 under
//! timeouts, so that slow or idle clients cannot hold the node's sockets, memory or tasks.
//!
//! - **Connections.** At most `connections_max` at once. One more is answered at once with a
//!   503 (`too_many_connections`) and closed, without reading its request: a full node says so
//!   instead of leaving clients in the listen backlog.
//! - **Idle and header timeouts.** A connection waiting for a request (new, or between
//!   requests) is closed after `idle`; once the first byte of a request has arrived, its
//!   headers must be complete within `header`. Both are enforced by [`TimedStream`], which sees
//!   from [`RequestState`] whether a request is being served.
//! - **Body timeout.** A request's body must arrive within the body timeout, enforced where the
//!   body is read (`request_body`); the answer is a 408 and the connection closes.
//! - **Write timeout.** A response that the client does not read within `write` closes the
//!   connection.
//!
//! Shutdown: the listener closes, idle connections close, and requests being served finish (the
//! caller bounds how long that may take).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::{router, Api};
use crate::log_limit::LogLimiter;

/// How the HTTP listener limits its clients (`Config`'s `http_*` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once.
    pub connections_max: usize,
    /// How long a connection may wait between requests (or before its first).
    pub idle_timeout: Duration,
    /// How long a request's headers may take once its first byte arrived.
    pub header_timeout: Duration,
    /// How long a request's body may take once its headers arrived.
    pub body_timeout: Duration,
    /// How long a response may wait for the client to read it.
    pub write_timeout: Duration,
}

impl HttpLimits {
    /// The limits `config` sets.
    pub fn from_config(config: &crate::config::Config) -> HttpLimits {
        HttpLimits {
            connections_max: config.http_connections_max,
            idle_timeout: Duration::from_millis(config.http_idle_timeout_ms),
            header_timeout: Duration::from_millis(config.http_header_timeout_ms),
            body_timeout: Duration::from_millis(config.http_body_timeout_ms),
            write_timeout: Duration::from_millis(config.http_write_timeout_ms),
        }
    }
}

/// Largest buffer hyper keeps for one connection's headers and pipelined bytes.
const READ_BUFFER_MAX: usize = 64 * 1024;
/// How long the listener pauses after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(10);
/// What a connection over the cap is told before it is closed.
const TOO_MANY_CONNECTIONS: &str =
    r#"{"error":"too_many_connections","message":"the node serves its maximum of connections"}"#;

/// The whole 503 response for a connection over the cap.
fn too_many_connections() -> Vec<u8> {
    let body = TOO_MANY_CONNECTIONS;
    let head = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n";
    format!(
        "{head}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves the API on `listener` until `shutdown` resolves, then lets the requests being served
/// finish; idle connections are closed at once.
pub async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    assert!(limits.connections_max > 0);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    let router = router(api);
    let mut refusals = LogLimiter::new();
    let refusal: Arc<[u8]> = too_many_connections().into();
    let refusing = Arc::new(tokio::sync::Semaphore::new(REFUSALS_LINGERING_MAX));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let now = std::time::Instant::now();
                    if let Some(suppressed) = refusals.admit(None, now) {
                        tracing::warn!(%error, suppressed, "http: accept failed");
                    }
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if let Some(suppressed) = refusals.admit(Some(peer.ip()), std::time::Instant::now()) {
                let max = limits.connections_max;
                tracing::warn!(%peer, suppressed, "http: refusing a connection: {max} open");
            }
            refuse(stream, &refusal, &refusing);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::new(RequestState::default());
        let io = TokioIo::new(TimedStream::new(stream, state.clone(), limits));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request| {
            let mut router = router.clone();
            let state = state.clone();
            state.serving.fetch_add(1, Ordering::Relaxed);
            async move {
                let response = router.call(request).await;
                state.serving.fetch_sub(1, Ordering::Relaxed);
                state.finished.fetch_add(1, Ordering::Relaxed);
                response
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(READ_BUFFER_MAX)
            .serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "http: connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over the cap with `refusal` and closes it. Closing a socket with the
/// client's request unread would reset it and could destroy the answer before the client read
/// it, so the refusal lingers: it stops sending and reads what the client sends, for at most
/// `REFUSAL_LINGER`. At most `REFUSALS_LINGERING_MAX` linger at once; past that, a connection
/// is just closed.
fn refuse(stream: TcpStream, refusal: &Arc<[u8]>, refusing: &Arc<tokio::sync::Semaphore>) {
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    let refusal = refusal.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let linger = async {
            stream.write_all(&refusal).await?;
            stream.shutdown().await?;
            let mut discard = [0u8; 4096];
            while stream.read(&mut discard).await? > 0 {}
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, linger).await;
        drop(permit);
    });
}

/// How long a refused connection is read from before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections lingering at once.
const REFUSALS_LINGERING_MAX: usize = 64;

/// Binds the API's address, reporting the address in the error.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, crate::NodeError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| crate::NodeError::Start(format!("HTTP listen on {address}: {error}")))
}

/// What a connection's stream learns from its service: whether a request is being served, and
/// how many have finished (each finish starts a new idle wait).
#[derive(Default)]
struct RequestState {
    serving: AtomicU64,
    finished: AtomicU64,
}

/// A TCP stream that fails a read with `TimedOut` when the client idles or sends its headers
/// too slowly, and a write when the client does not read. Reads while a request is being
/// served (its body) are bounded where the body is read.
struct TimedStream {
    stream: TcpStream,
    state: Arc<RequestState>,
    limits: HttpLimits,
    /// Requests finished when this stream last looked.
    finished_seen: u64,
    /// When the connection became idle: accepted, or its last request finished.
    idle_since: Instant,
    /// When the first byte of the next request arrived.
    head_since: Option<Instant>,
    read_deadline: Pin<Box<Sleep>>,
    /// When the current write started to wait for the client.
    write_since: Option<Instant>,
    write_deadline: Pin<Box<Sleep>>,
}

impl TimedStream {
    fn new(stream: TcpStream, state: Arc<RequestState>, limits: HttpLimits) -> TimedStream {
        let now = Instant::now();
        TimedStream {
            stream,
            state,
            limits,
            finished_seen: 0,
            idle_since: now,
            head_since: None,
            read_deadline: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            write_since: None,
            write_deadline: Box::pin(tokio::time::sleep_until(now + limits.write_timeout)),
        }
    }

    /// The time by which the next read must complete, or `None` while a request is served.
    fn read_deadline(&mut self, now: Instant) -> Option<Instant> {
        let finished = self.state.finished.load(Ordering::Relaxed);
        if finished != self.finished_seen {
            self.finished_seen = finished;
            self.idle_since = now;
            self.head_since = None;
        }
        if self.state.serving.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(match self.head_since {
            Some(since) => since + self.limits.header_timeout,
            None => self.idle_since + self.limits.idle_timeout,
        })
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("http: {what} timed out"))
}

/// Polls `timer` set to `deadline`: ready once it has passed.
fn expired(timer: &mut Pin<Box<Sleep>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx).is_ready()
}

impl AsyncRead for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let filled = buf.filled().len();
        let now = Instant::now();
        let deadline = this.read_deadline(now);
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let arrived = buf.filled().len() > filled;
                if arrived && deadline.is_some() && this.head_since.is_none() {
                    this.head_since = Some(now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match deadline {
                Some(deadline) if expired(&mut this.read_deadline, deadline, cx) => {
                    let what = if this.head_since.is_some() {
                        "request headers"
                    } else {
                        "idle connection"
                    };
                    Poll::Ready(Err(timed_out(what)))
                }
                _ => Poll::Pending,
            },
        }
    }
}

impl TimedStream {
    /// Passes a write's outcome on; a write that has waited for the client longer than the
    /// write timeout fails.
    fn timed_write<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_since = None;
            return polled;
        }
        let since = *self.write_since.get_or_insert_with(Instant::now);
        let deadline = since + self.limits.write_timeout;
        if expired(&mut self.write_deadline, deadline, cx) {
            return Poll::Ready(Err(timed_out("response write")));
        }
        Poll::Pending
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, data);
        this.timed_write(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, data);
        this.timed_write(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
