//! The example server's accept loop: what `axum::serve` does (one task
//! per connection, HTTP/1 and HTTP/2 through hyper-util's automatic
//! builder, upgrades, the peer address as `ConnectInfo`, graceful
//! shutdown that lets open connections finish), with one difference: a
//! connection that wakes its own task while being polled is polled again
//! on the spot instead of being sent back to the scheduler.
//!
//! That self-wake happens on every request with a body: hyper's
//! connection hands the body to the handler through a channel, and the
//! handler, polled by the same connection task, is what waits on it. A
//! task that wakes itself is rescheduled by tokio's multi-threaded
//! runtime as a yield: it goes to the back of the run queue and an idle
//! worker thread is woken to help, which costs a futex wake, a second
//! thread's wake-up and often a move of the connection to that thread
//! (BENCHMARKS.md, "Per-request cost over HTTP": about 2.4 futex calls per
//! POST before, 0.1 after).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::FutureExt as _;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and waits for the open connections to finish (each is told
/// to close after its current request).
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()> + Send + 'static) {
    // Dropping `signal_rx` tells the connections to shut down; every
    // connection holds a `close_rx`, so `close_tx.closed()` waits for all.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // As axum does: errors of one accept (e.g. too many
                    // open files) are not fatal; wait a little.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = signal_tx.closed() => break,
        };
        let hyper_service = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            hyper_service.call(req)
        });
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            let mut conn = Repoll::new(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service));
            let mut signal = pin!(signal_tx.closed().fuse());
            loop {
                tokio::select! {
                    result = &mut conn => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "connection failed");
                        }
                        break;
                    }
                    () = &mut signal => conn.inner.as_mut().graceful_shutdown(),
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// How many times in a row a self-woken connection is polled again before
/// it goes back to the scheduler like any woken task (a connection that
/// yields on purpose, as hyper does after a long run of work, still
/// yields).
const MAX_REPOLLS: usize = 4;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const POLLING_WOKEN: u8 = 2;

/// A future polled with its own waker: a wake that arrives while the
/// future is being polled only marks it, and the future is polled again
/// before [`Repoll::poll`] returns; a wake at any other time wakes the
/// task as usual.
struct Repoll<F> {
    inner: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    waker: Waker,
}

struct WakeFlag {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, POLLING_WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // Being polled (or already marked): `Repoll::poll` polls again.
            Ok(_) | Err(POLLING_WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

impl<F: Future> Repoll<F> {
    fn new(inner: F) -> Self {
        let flag = Arc::new(WakeFlag {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_REPOLLS {
            this.flag.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(out) = this.inner.as_mut().poll(&mut inner_cx) {
                this.flag.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .flag
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Not woken while polled: a later wake wakes the task.
                return Poll::Pending;
            }
        }
        // Woken on every poll: let other tasks run first.
        this.flag.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
