//! Client connections: the accept loop, the connection limit, the header and keep-alive
//! timeouts, and a shutdown that answers every request it has read.
//!
//! hyper runs each connection's HTTP/1; this module watches it from outside, through what it
//! reads ([`Io`] counts the bytes), what it answers (the service counts the requests in
//! progress, until the last frame of their answer) and what waits unread in the socket (a
//! peek). A connection is
//!
//! - *busy* while a request is being answered or its answer written: it is never closed,
//!   except when writing the answer stalls for longer than the request timeout;
//! - *half-open* when part of a request head has arrived: closed when the head takes longer than
//!   the header timeout, counted from its first byte;
//! - *idle* otherwise: closed after the keep-alive time, counted from its last answer or its
//!   opening (unless bytes have just arrived, which are read first).
//!
//! At the connection limit, the connection idle or half-open the longest (for at least
//! [`QUIET`]) is closed to make room; if none frees a slot within [`ADMIT_WAIT`], the new
//! connection is answered `503` and closed without being read.
//!
//! Shutdown, in this order: readiness turns `503` and every request read from then on is
//! answered `503` (with `Retry-After` and `Connection: close`); half-open connections and
//! connections idle for [`QUIET`] are closed at once, busy ones after their answer; the
//! listener keeps accepting (and answering `503`) until every connection of before has closed
//! and [`LINGER`] more, so that a client just answered meets a `503` rather than a reset. A
//! request is thus either answered or refused before it is read.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower_service::Service;

use crate::config::Limits;
use crate::metrics::Metrics;

/// How long a connection must have been idle to be closed at shutdown or to make room: a client
/// answered a moment ago may be sending its next request.
pub const QUIET: Duration = Duration::from_millis(100);
/// How long a connection past the limit waits for a slot before it is answered `503`.
pub const ADMIT_WAIT: Duration = Duration::from_millis(250);
/// How long the listener stays open at shutdown after the last connection of before closed.
pub const LINGER: Duration = Duration::from_millis(100);
/// Connections past the limit that may wait for a slot or be answered `503` at once; more are
/// closed unread.
const SPARE: usize = 32;
/// Files kept for everything but client connections (models, logs, the runtime).
const FILE_RESERVE: u64 = 64;
/// How soon to look again at a connection with bytes waiting unread.
const RECHECK: Duration = Duration::from_millis(5);

/// The most connections `wanted` allows within the limit of open files: the soft limit is
/// raised towards the hard one first when it is too low, and [`FILE_RESERVE`] files and the
/// spare connections are kept out of it.
pub fn within_file_limit(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        let reserve = FILE_RESERVE + SPARE as u64;
        let need = (wanted as u64).saturating_add(reserve);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return wanted;
        }
        if limit.rlim_cur < need && limit.rlim_max > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: need.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit(2) reads the struct it is given; raising the soft limit up to
            // the hard one needs no privilege.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        let room = usize::try_from(limit.rlim_cur.saturating_sub(reserve)).unwrap_or(usize::MAX);
        wanted.min(room).max(1)
    }
    #[cfg(not(unix))]
    wanted
}

/// Milliseconds since a base instant, as kept in atomics.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    fn at(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// What one connection is doing, as seen from outside hyper. Times are [`Clock`]
/// milliseconds; those that may be unset are stored plus one, with 0 for none.
struct Track {
    clock: Clock,
    /// Requests being answered: from their parsed head to the last frame of their answer.
    busy: AtomicUsize,
    /// Requests whose head was read.
    started: AtomicU64,
    /// Bytes read from the socket.
    read: AtomicU64,
    /// `read` when the connection last became idle.
    idle_read: AtomicU64,
    /// When it last became idle, or last wrote while not busy.
    idle_since: AtomicU64,
    /// When the first byte after becoming idle arrived (plus one).
    head_since: AtomicU64,
    /// When a write last found the socket full (plus one).
    blocked_since: AtomicU64,
    /// Chosen to be closed to make room.
    evict: AtomicBool,
    /// Woken on every change that can move a deadline.
    event: Notify,
}

impl Track {
    fn new(clock: Clock) -> Track {
        Track {
            clock,
            busy: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            read: AtomicU64::new(0),
            idle_read: AtomicU64::new(0),
            idle_since: AtomicU64::new(clock.now()),
            head_since: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
            evict: AtomicBool::new(false),
            event: Notify::new(),
        }
    }

    /// A request's head was read; the guard ends it with the last frame of its answer.
    fn begin(self: &Arc<Self>) -> Busy {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(0, Ordering::SeqCst);
        self.event.notify_one();
        Busy(Arc::clone(self))
    }

    fn received(&self, n: usize) {
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        if self.busy.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::SeqCst) == 0 {
            self.head_since
                .store(self.clock.now() + 1, Ordering::SeqCst);
            self.event.notify_one();
        }
    }

    fn wrote(&self) {
        if self.blocked_since.swap(0, Ordering::SeqCst) != 0 {
            self.event.notify_one();
        }
        if self.busy.load(Ordering::SeqCst) == 0 {
            self.idle_since.store(self.clock.now(), Ordering::SeqCst);
        }
    }

    fn write_blocked(&self) {
        if self.blocked_since.load(Ordering::SeqCst) == 0 {
            self.blocked_since
                .store(self.clock.now() + 1, Ordering::SeqCst);
            self.event.notify_one();
        }
    }

    /// Whether nothing is being answered or written, and it has been so for [`QUIET`].
    fn evictable(&self, now: u64) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
            && self.blocked_since.load(Ordering::SeqCst) == 0
            && !self.evict.load(Ordering::SeqCst)
            && now >= self.idle_since.load(Ordering::SeqCst) + ms(QUIET)
    }

    /// What to do next in `phase`; `unread` says whether bytes wait in the socket.
    fn step(&self, phase: Phase, limits: &Limits, unread: impl Fn() -> bool) -> Step {
        let now = self.clock.now();
        // Keep-alive goes off only on a connection that answers: hyper closes one that has read
        // nothing yet at once, and a request may be on its way.
        let wait = |due: u64| Step::Wait {
            until: Some(self.clock.at(due)),
            finish: false,
        };
        let blocked = self.blocked_since.load(Ordering::SeqCst);
        if blocked != 0 {
            let due = blocked - 1 + ms(limits.request_timeout);
            return if now >= due {
                Step::Close("stalled")
            } else {
                Step::Wait {
                    until: Some(self.clock.at(due)),
                    finish: phase != Phase::Serving,
                }
            };
        }
        if self.busy.load(Ordering::SeqCst) > 0 {
            return Step::Wait {
                until: None,
                finish: phase != Phase::Serving,
            };
        }
        let partial = self.read.load(Ordering::SeqCst) > self.idle_read.load(Ordering::SeqCst);
        let idle_since = self.idle_since.load(Ordering::SeqCst);
        match phase {
            Phase::Serving if partial => {
                let due = self.head_since.load(Ordering::SeqCst).saturating_sub(1)
                    + ms(limits.header_timeout);
                if now >= due {
                    Step::Close("header_timeout")
                } else {
                    wait(due)
                }
            }
            Phase::Serving => {
                let due = idle_since + ms(limits.keep_alive);
                if now < due {
                    wait(due)
                } else if unread() {
                    wait(now + ms(RECHECK))
                } else {
                    Step::Close("keep_alive")
                }
            }
            Phase::Stopping | Phase::Evicting => {
                let reason = if phase == Phase::Stopping {
                    "shutdown"
                } else {
                    "evicted"
                };
                if partial {
                    Step::Close(reason)
                } else if unread() {
                    wait(now + ms(RECHECK))
                } else if phase == Phase::Stopping && now < idle_since + ms(QUIET) {
                    wait(idle_since + ms(QUIET))
                } else {
                    Step::Close(reason)
                }
            }
        }
    }
}

/// A request being answered; dropped with the last frame of its answer (or with the request).
struct Busy(Arc<Track>);

impl Drop for Busy {
    fn drop(&mut self) {
        let t = &self.0;
        if t.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            t.idle_read
                .store(t.read.load(Ordering::SeqCst), Ordering::SeqCst);
            t.idle_since.store(t.clock.now(), Ordering::SeqCst);
            t.head_since.store(0, Ordering::SeqCst);
        }
        t.event.notify_one();
    }
}

/// Where a connection's life is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving requests.
    Serving,
    /// The server is shutting down.
    Stopping,
    /// Chosen to make room at the connection limit.
    Evicting,
}

/// The next thing to do with a connection.
enum Step {
    /// Wait for a change, or until `until`; with `finish`, keep-alive is off: the answer in
    /// progress is the last.
    Wait {
        until: Option<Instant>,
        finish: bool,
    },
    /// Close it now, for this reason.
    Close(&'static str),
}

/// Whether bytes wait unread in the socket.
fn unread(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

/// The socket as hyper sees it, counting what it reads and noting writes that block.
struct Io {
    stream: Arc<TcpStream>,
    track: Arc<Track>,
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read_buf(buf) {
                Ok(n) => {
                    if n > 0 {
                        self.track.received(n);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Io {
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.stream.poll_write_ready(cx)?.is_pending() {
                self.track.write_blocked();
                return Poll::Pending;
            }
            match write(&self.stream) {
                Ok(n) => {
                    self.track.wrote();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |s| s.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// The open connections, their limit, and the signals that stop them.
pub(crate) struct Connections {
    limits: Limits,
    metrics: Arc<Metrics>,
    router: Router,
    clock: Clock,
    slots: Arc<Semaphore>,
    spare: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Track>>>,
    next: AtomicU64,
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
}

impl Connections {
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>, router: Router) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            metrics,
            router,
            clock: Clock(Instant::now()),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            spare: Arc::new(Semaphore::new(SPARE)),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stop: watch::channel(false).0,
            abort: watch::channel(false).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Track>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts connections until `shutdown` completes, calls `stopping`, and shuts down in the
    /// order of the module's documentation; returns when every connection has closed.
    ///
    /// A connection is accepted only when there is room for it (a slot, or a spare place to
    /// wait for one): past that, new connections wait in the kernel's queue.
    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        stopping: impl FnOnce(),
    ) {
        tokio::pin!(shutdown);
        loop {
            let room = tokio::select! {
                biased;
                () = &mut shutdown => break,
                room = self.room() => room,
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => self.admit(accepted, room).await,
            }
        }
        stopping();
        self.stop.send_replace(true);
        let before = self.next.load(Ordering::SeqCst);
        let give_up = Instant::now() + self.limits.request_timeout + Duration::from_secs(5);
        let mut linger: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if linger.is_none() && !self.lock().keys().any(|&id| id < before) {
                linger = Some(now + LINGER);
            }
            let until = linger
                .unwrap_or(now + Duration::from_millis(10))
                .min(give_up);
            if now >= until && (linger.is_some() || now >= give_up) {
                break;
            }
            let room = tokio::select! {
                room = self.room() => room,
                () = tokio::time::sleep_until(until) => continue,
            };
            tokio::select! {
                accepted = listener.accept() => self.admit(accepted, room).await,
                () = tokio::time::sleep_until(until) => {}
            }
        }
        drop(listener);
        // Connections accepted while draining end with their `503`s.
        while !self.lock().is_empty() && Instant::now() < give_up + Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.abort.send_replace(true);
        while !self.lock().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Room for one more connection: a slot, or else a spare place to wait for one.
    async fn room(&self) -> Room {
        let slot = Arc::clone(&self.slots).acquire_owned();
        let spare = Arc::clone(&self.spare).acquire_owned();
        // Neither semaphore is ever closed, so neither acquisition fails.
        tokio::select! {
            biased;
            Ok(slot) = slot => Room::Slot(slot),
            Ok(spare) = spare => Room::Spare(spare),
            else => Room::None,
        }
    }

    /// Takes an accepted connection: serves it in its slot, or, past the limit, makes room and
    /// waits for a slot for [`ADMIT_WAIT`] before it refuses it.
    async fn admit(
        self: &Arc<Self>,
        accepted: io::Result<(TcpStream, std::net::SocketAddr)>,
        room: Room,
    ) {
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of files or memory: let connections close before accepting more.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let spare = match room {
            Room::Slot(slot) => {
                tokio::spawn(Arc::clone(self).serve(stream, slot));
                return;
            }
            Room::Spare(spare) => spare,
            Room::None => return,
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let give_up = Instant::now() + ADMIT_WAIT;
            while Instant::now() < give_up {
                me.evict_one();
                let slot = Arc::clone(&me.slots).acquire_owned();
                let tick = (Instant::now() + Duration::from_millis(20)).min(give_up);
                if let Ok(Ok(slot)) = tokio::time::timeout_at(tick, slot).await {
                    drop(spare);
                    me.serve(stream, slot).await;
                    return;
                }
            }
            me.metrics.connections_refused.inc();
            refuse(stream).await;
            drop(spare);
        });
    }

    /// Asks the connection idle or half-open the longest to close.
    fn evict_one(&self) {
        let now = self.clock.now();
        let open = self.lock();
        let victim = open
            .values()
            .filter(|t| t.evictable(now))
            .min_by_key(|t| t.idle_since.load(Ordering::SeqCst));
        if let Some(t) = victim {
            t.evict.store(true, Ordering::SeqCst);
            t.event.notify_one();
        }
    }

    /// Serves one connection until it closes.
    async fn serve(self: Arc<Self>, stream: TcpStream, _slot: OwnedSemaphorePermit) {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let track = Arc::new(Track::new(self.clock));
        self.lock().insert(id, Arc::clone(&track));
        self.metrics.connections.inc();
        let _open = Registered(&self, id);

        let stream = Arc::new(stream);
        let service = {
            let (track, router) = (Arc::clone(&track), self.router.clone());
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let busy = track.begin();
                // A Router is always ready: no need to poll it first.
                let answer = router.clone().call(request);
                async move {
                    let response = answer.await?;
                    // The request stays busy until hyper has taken its answer's last frame.
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _ = &busy;
                            frame
                        }))
                    }))
                }
            })
        };
        let io = TokioIo::new(Io {
            stream: Arc::clone(&stream),
            track: Arc::clone(&track),
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut stop = self.stop.subscribe();
        let mut abort = self.abort.subscribe();
        let mut finishing = false;
        loop {
            let phase = if *stop.borrow() {
                Phase::Stopping
            } else if track.evict.load(Ordering::SeqCst) {
                Phase::Evicting
            } else {
                Phase::Serving
            };
            let until = match track.step(phase, &self.limits, || unread(&stream)) {
                Step::Close(reason) => {
                    self.metrics.closed(reason);
                    // An answer may still be in hyper's buffer: let it flush and close.
                    if reason != "stalled" && track.started.load(Ordering::SeqCst) > 0 {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                    }
                    return;
                }
                Step::Wait { until, finish } => {
                    if finish && !finishing {
                        conn.as_mut().graceful_shutdown();
                        finishing = true;
                    }
                    until
                }
            };
            let sleep = tokio::time::sleep_until(until.unwrap_or_else(Instant::now));
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed(), if phase == Phase::Serving => {}
                () = track.event.notified() => {}
                () = sleep, if until.is_some() => {}
                _ = abort.changed() => return,
            }
        }
    }
}

/// Room for a new connection.
enum Room {
    /// A slot to serve it in.
    Slot(OwnedSemaphorePermit),
    /// A place to wait for a slot.
    Spare(OwnedSemaphorePermit),
    /// None (the semaphores are closed, which does not happen).
    None,
}

/// Removes a connection from the open ones when its task ends.
struct Registered<'a>(&'a Connections, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
        self.0.metrics.connections.dec();
    }
}

/// Answers `503` without reading the request, then closes: the write side first, reading
/// (and dropping) what the client sends until it closes too, so that closing with its request
/// unread does not reset the answer away.
async fn refuse(mut stream: TcpStream) {
    let body = br#"{"error":"too many connections; retry later"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 1 << 20 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}
