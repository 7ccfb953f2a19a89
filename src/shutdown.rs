//! The one shutdown path, for `run --once` and the daemon alike.
//!
//! The first SIGTERM or SIGINT stops new work (`stop`: no new orders);
//! orders in flight get `shutdown_grace` to finish, then are cancelled
//! (`abort`); a second signal cancels them at once. Their TXT records are
//! removed either way, the status is written, the process exits 0. The
//! daemon also listens for SIGHUP here (reload); `run --once` does not.

use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The signals certkeeper acts on, installed once.
pub struct Signals {
    term: Signal,
    int: Signal,
    /// The daemon's reload; `run --once` leaves SIGHUP alone.
    hup: Option<Signal>,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Shutdown,
    Reload,
}

impl Signals {
    /// SIGTERM and SIGINT.
    pub fn new() -> Signals {
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            hup: None,
        }
    }

    /// SIGTERM and SIGINT, and SIGHUP for reloading (the daemon).
    pub fn with_reload() -> Signals {
        Signals {
            hup: Some(signal(SignalKind::hangup()).expect("SIGHUP handler")),
            ..Signals::new()
        }
    }

    /// The next SIGTERM or SIGINT.
    pub async fn shutdown(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// The next signal of any kind this listens for.
    pub async fn next(&mut self) -> Asked {
        let hup = async {
            match &mut self.hup {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => Asked::Shutdown,
            _ = self.int.recv() => Asked::Shutdown,
            _ = hup => Asked::Reload,
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// The two steps of stopping a run: `stop` (no new orders) on the first
/// signal, `abort` (cancel what is in flight) when the grace is over or on
/// a second signal.
#[derive(Clone, Default)]
pub struct Stopping {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
}

impl Stopping {
    /// Waits for signals and drives `stop` and `abort`; returns once
    /// `abort` is cancelled (drop the future to stop watching).
    pub async fn watch(&self, signals: &mut Signals, grace: Duration) {
        signals.shutdown().await;
        self.first_signal(grace);
        tokio::select! {
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(event = "run.cancelling", reason = "grace period over");
            }
            _ = signals.shutdown() => {
                tracing::warn!(event = "run.cancelling", reason = "second signal");
            }
        }
        self.abort.cancel();
    }

    fn first_signal(&self, grace: Duration) {
        tracing::warn!(event = "run.stopping", grace = %crate::duration::format(grace), reason = "signal");
        crate::notify::status(&format!(
            "stopping: no new orders, {} grace for those in flight",
            crate::duration::format(grace)
        ));
        self.stop.cancel();
    }

    /// Whether a shutdown signal came.
    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}
