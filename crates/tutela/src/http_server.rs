//! The HTTP server loop: Tutela's router on hyper's HTTP/1 server, with the connection limits
//! that `axum::serve` does not offer (it gives no access to hyper's builder and sets no timer,
//! so a client could hold a connection forever by sending a request head one byte at a time,
//! or by sending nothing at all):
//!
//! - **Request head** (`header_read_timeout`, default 10 s): once the first byte of a request
//!   head has arrived, the whole head must arrive within this time, or the connection is closed.
//!   More bytes do not restart the clock, so a "slowloris" client cannot keep a connection open.
//! - **Idle keep-alive** (`keep_alive_timeout`, default 60 s): a connection that has no request
//!   in flight and receives no complete request head within this time is closed (hyper's own
//!   header-read timer, which starts when the connection is opened or its previous response was
//!   sent). A connection that keeps sending requests is never cut, however long it lives.
//! - **Request body** (`body_read_timeout`, default 60 s): a handler reading the request body
//!   gets an error once this time has passed since the request head arrived; the body's size is
//!   bounded separately (`DefaultBodyLimit`, see `tutela-http`).
//! - **Connections** (`max_connections`, default 4096): beyond this many open connections, new
//!   ones wait in the listen backlog until one closes.
//!
//! Graceful shutdown is as with `axum::serve`: stop accepting, let each connection finish its
//! request in flight, close idle ones at once.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The server's connection limits (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the connections to
/// finish their requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropping `stop_tx` tells every connection to shut down gracefully; each holds a clone of
    // `done_rx`, so `done_tx.closed()` resolves once they are all gone.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, app, limits, stop).await;
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(stop_rx);
    drop(done_rx);
    done_tx.closed().await;
}

/// Errors of `accept`: those about one connection are skipped; others (e.g. too many open
/// files) are logged and retried after a pause, as `axum::serve` does.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What a connection's timers need to know, shared by its I/O and its service.
struct ConnState {
    start: Instant,
    /// Requests whose response is not produced yet.
    in_flight: AtomicUsize,
    /// When the first byte of a request head arrived (ms since `start`, + 1), or 0: no head
    /// is being read.
    head_started: AtomicU64,
    /// Wakes the connection's loop when a head starts, so that it arms the head timer.
    head_notify: Notify,
}

impl ConnState {
    fn on_bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
        {
            let ms = self.start.elapsed().as_millis() as u64 + 1;
            self.head_started.store(ms, Ordering::Release);
            self.head_notify.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
    }

    fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the head being read must be complete, if one is being read.
    fn head_deadline(&self, limit: Duration) -> Option<Instant> {
        match self.head_started.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.start + Duration::from_millis(ms - 1) + limit),
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState {
        start: Instant::now(),
        in_flight: AtomicUsize::new(0),
        head_started: AtomicU64::new(0),
        head_notify: Notify::new(),
    });
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        state: state.clone(),
    });
    let service_state = state.clone();
    let body_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        service_state.request_started();
        req.extensions_mut().insert(ConnectInfo(remote));
        let req = req.map(|body| DeadlineBody {
            inner: body,
            deadline: Instant::now() + body_timeout,
            sleep: None,
        });
        let app = app.clone();
        let state = service_state.clone();
        async move {
            let response = app.oneshot(req).await;
            state.request_done();
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's timer runs while the connection waits for a request head, from the moment it
        // is ready for one: it bounds idle keep-alive connections.
        .header_read_timeout(limits.keep_alive_timeout);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    loop {
        let deadline = state.head_deadline(limits.header_read_timeout);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = state.head_notify.notified() => {}
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if state
                    .head_deadline(limits.header_read_timeout)
                    .is_some_and(|d| d <= Instant::now())
                {
                    tracing::debug!("closing a connection: request head not received in time");
                    return;
                }
            }
        }
    }
}

/// The connection's socket, noting when bytes of a new request head arrive.
struct WatchedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_bytes_read();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails once its deadline has passed (the timer is only armed if the
/// handler actually waits for body bytes).
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

#[derive(Debug)]
struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body was not received in time")
    }
}

impl std::error::Error for BodyTimeout {}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
