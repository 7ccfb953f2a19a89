//! `certkeeper run`: stays up and renews on the schedule.
//!
//! One loop: sleep until the next fire time (no timer ticks in between),
//! run, repeat. SIGHUP reloads the settings and runs at once. SIGTERM or
//! SIGINT: no new orders; orders in flight get `shutdown_grace` to finish,
//! then are cancelled (their TXT records are removed either way); the
//! status is written and the process exits 0. A second signal cancels at
//! once.

use crate::notify;
use crate::run::{self, Progress, RunOptions, Services};
use crate::settings::{Settings, SettingsError};
use crate::shutdown::{Asked, Signals, Stopping};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("{0}")]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error("{0}")]
    Services(#[from] run::ServiceError),
    #[error("HTTP listener on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// What woke the loop.
enum Wake {
    Scheduled,
    Reload,
    Shutdown,
}

pub async fn run(config: &Path, mut settings: Settings) -> Result<(), DaemonError> {
    let mut schedule = settings.schedule.build()?;
    // Built per run and dropped after it (with their connection pools), so
    // the idle daemon holds no clients; built once here to fail fast.
    drop(Services::from_settings(&settings).await?);
    release_memory();
    let http_stop = CancellationToken::new();
    let mut http_addr = None;
    start_http(&settings, &http_stop, &mut http_addr).await?;
    let mut signals = Signals::with_reload();
    let _watchdog = notify::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            loop {
                notify::notify("WATCHDOG=1");
                tokio::time::sleep(every).await;
            }
        })
    });
    tracing::info!(
        event = "daemon.started",
        schedule = %schedule.expression(),
        timezone = %schedule.timezone(),
        http = %http_addr.map_or("off".to_string(), |a| a.to_string()),
    );
    notify::notify("READY=1");
    loop {
        let now = chrono::Utc::now();
        let next = schedule.next_after(now);
        let Some(next) = next else {
            tracing::error!(event = "daemon.schedule.never", schedule = %schedule.expression());
            signals.shutdown().await;
            break;
        };
        tracing::info!(event = "daemon.next_run", at = %next.to_rfc3339());
        notify::status(&format!("idle; next run at {}", next.to_rfc3339()));
        let wait = (next - now).to_std().unwrap_or_default();
        let next_run = tokio::time::sleep(wait);
        tokio::pin!(next_run);
        // What a run leaves behind winds down after it returns (connection
        // pools closing, tokio's idle blocking threads exiting) and touches
        // code pages again: hand memory back once more when it has.
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        let mut settled = false;
        let wake = loop {
            tokio::select! {
                _ = &mut next_run => break Wake::Scheduled,
                asked = signals.next() => break match asked {
                    Asked::Reload => Wake::Reload,
                    Asked::Shutdown => Wake::Shutdown,
                },
                _ = &mut settle, if !settled => {
                    settled = true;
                    release_memory();
                }
            }
        };
        match wake {
            Wake::Shutdown => break,
            Wake::Reload => {
                notify::notify("RELOADING=1");
                match reload(config).await {
                    Ok((s, sched)) => {
                        tracing::info!(event = "daemon.reloaded", schedule = %sched.expression());
                        // A changed listener address needs a restart; say so.
                        if s.http.as_ref().map(|h| &h.listen)
                            != settings.http.as_ref().map(|h| &h.listen)
                        {
                            tracing::warn!(
                                event = "daemon.reload.http_unchanged",
                                reason = "the HTTP listener changes on restart only"
                            );
                        }
                        settings = s;
                        schedule = sched;
                    }
                    Err(e) => {
                        tracing::error!(event = "daemon.reload.failed", error = %e, keeping = "the previous settings");
                    }
                }
                notify::notify("READY=1");
            }
            Wake::Scheduled => {}
        }
        let services = match Services::from_settings(&settings).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(event = "run.failed", error = %e);
                record_failure(&settings, &e.to_string());
                continue;
            }
        };
        let stop = one_run(&settings, &services, &mut signals).await;
        drop(services);
        release_memory();
        if stop {
            break;
        }
    }
    notify::notify("STOPPING=1");
    http_stop.cancel();
    tracing::info!(event = "daemon.stopped");
    Ok(())
}

async fn start_http(
    settings: &Settings,
    stop: &CancellationToken,
    addr: &mut Option<String>,
) -> Result<(), DaemonError> {
    let Some(http) = &settings.http else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(&http.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: http.listen.clone(),
            source,
        })?;
    *addr = listener.local_addr().ok().map(|a| a.to_string());
    tokio::spawn(crate::serve::serve(
        listener,
        PathBuf::from(&settings.state_dir),
        crate::report::health::Thresholds::from_settings(&settings.health),
        stop.clone(),
    ));
    Ok(())
}

async fn reload(config: &Path) -> Result<(Settings, crate::schedule::Schedule), DaemonError> {
    let settings = Settings::load(config)?;
    let schedule = settings.schedule.build()?;
    // Checked now, so a bad reload keeps the previous settings.
    drop(Services::from_settings(&settings).await?);
    Ok((settings, schedule))
}

/// One renewal run; `true` when a shutdown signal came during it.
async fn one_run(settings: &Settings, services: &Services, signals: &mut Signals) -> bool {
    let progress = Arc::new(Progress::default());
    let stopping = Stopping::default();
    let options = RunOptions {
        stop: stopping.stop.clone(),
        progress: Some(progress.clone()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let run = run::run_once(settings, services, &options, &stopping.abort);
    tokio::pin!(run);
    let watch = stopping.watch(signals, settings.shutdown_grace);
    tokio::pin!(watch);
    let mut watching = true;
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(2));
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = ticker.tick() => {
                notify::status(&format!("renewing: {}", progress.line()));
            }
            // Done once the run is aborted; the run itself ends soon after.
            _ = &mut watch, if watching => watching = false,
        }
    };
    match result {
        Ok(status) => {
            let failed = status
                .certificates
                .iter()
                .filter(|c| c.state == crate::report::CertState::Failed)
                .count();
            if failed == 0 && status.error.is_none() {
                crate::metrics::set(
                    "certkeeper_run_last_success_timestamp_seconds",
                    status.finished_at.unix_timestamp() as f64,
                );
            }
            notify::status(&format!(
                "last run: {} in {}s",
                progress.line(),
                started.elapsed().as_secs()
            ));
        }
        Err(e) => {
            tracing::error!(event = "run.failed", error = %e);
            if !matches!(e, run::RunError::Locked(_)) {
                record_failure(settings, &e.to_string());
            }
        }
    }
    stopping.stopping()
}

/// How long after a run (or the start) the daemon hands memory back a
/// second time; tokio keeps an idle blocking thread 10 s.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(15);

/// Hands the run's freed heap back to the OS: between runs the daemon
/// should hold only what it needs to wait.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    page_out_code();
}

/// Asks the kernel to reclaim the file-backed pages (the binary's and the
/// libraries' code and read-only data) that a run faulted in. The daemon
/// then sleeps for most of a day; without this, the ACME, x509 and AWS SDK
/// code a run touched stays resident (about 10 MiB, BENCHMARKS.md) until
/// memory pressure evicts it. `MADV_PAGEOUT` never discards data: clean
/// pages are re-read from the file on the next touch, and dirty private
/// pages (relocations) are kept, as there is no swap to write them to, or
/// swapped like any other page. Kernels before 5.4 answer EINVAL; ignored.
#[cfg(target_os = "linux")]
fn page_out_code() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(_perms), Some(_offset), Some(_dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        // Only mappings of a file (inode != 0): the heap, stacks and
        // anonymous memory are left alone.
        if inode == "0" {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process, as listed by
        // the kernel; MADV_PAGEOUT is advisory and never changes contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}

/// A run that could not start still leaves a status saying why.
pub fn record_failure(settings: &Settings, error: &str) {
    let Ok(store) = crate::store::Store::open(&settings.state_dir) else {
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    let status = crate::report::Status {
        started_at: now,
        finished_at: now,
        config_commit: None,
        config: "unusable".into(),
        config_rejected: None,
        error: Some(error.to_string()),
        certificates: Vec::new(),
    };
    run::write_status(&store, &status);
}
