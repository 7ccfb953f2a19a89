//! `certkeeper run` (the daemon, or `--once`) and `renew`: one run, its
//! exit code, the live progress line.

use super::*;

pub(crate) fn run_command(
    once: bool,
    config: &std::path::Path,
    log_format: Option<LogFormat>,
    options: run::RunOptions,
) -> i32 {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            logging::init(log_format.unwrap_or_default());
            tracing::error!(event = "settings.invalid", error = %e);
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    logging::init(log_format.unwrap_or(settings.log_format));
    let Some(runtime) = runtime() else {
        return exit::RENEWAL_FAILED;
    };
    if !once {
        return runtime.block_on(async {
            match certkeeper::daemon::run(config, settings).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    tracing::error!(event = "daemon.failed", error = %e);
                    eprintln!("certkeeper: {e}");
                    exit::CONFIG_ERROR
                }
            }
        });
    }
    let mut options = options;
    runtime.block_on(async {
        // The one shutdown path (certkeeper::shutdown): first signal, no
        // new orders and `shutdown_grace` for those in flight; second
        // signal or the end of the grace, cancel them.
        let stopping = certkeeper::shutdown::Stopping {
            stop: options.stop.clone(),
            abort: CancellationToken::new(),
        };
        let cancel = stopping.abort.clone();
        let grace = settings.shutdown_grace;
        tokio::spawn(async move {
            let mut signals = certkeeper::shutdown::Signals::new();
            stopping.watch(&mut signals, grace).await;
        });
        let progress_done = CancellationToken::new();
        let mut progress_task = None;
        if let Some(progress) = progress_display(settings.log_format, log_format) {
            options.progress = Some(progress.clone());
            let done = progress_done.clone();
            progress_task = Some(tokio::spawn(async move {
                use std::io::Write;
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            eprint!("\r\x1b[2K{}", progress.line());
                            let _ = std::io::stderr().flush();
                        }
                        _ = done.cancelled() => {
                            eprintln!("\r\x1b[2K{}", progress.line());
                            break;
                        }
                    }
                }
            }));
        }
        let _progress_guard = progress_done.clone().drop_guard();
        let services = match run::Services::from_settings(&settings).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(event = "run.failed", error = %e);
                eprintln!("certkeeper: {e}");
                certkeeper::daemon::record_failure(&settings, &e.to_string());
                return exit::CONFIG_ERROR;
            }
        };
        let result = run::run_once(&settings, &services, &options, &cancel).await;
        // The final progress line is printed before any other output.
        progress_done.cancel();
        if let Some(task) = progress_task {
            let _ = task.await;
        }
        match result {
            Ok(status) => {
                if let Some(r) = status.config_rejected.as_ref().filter(|r| r.unreachable) {
                    eprintln!(
                        "certkeeper: {}\ncertkeeper: used the last good commit {} from the local clone",
                        r.reason, r.commit
                    );
                } else if let Some(r) = &status.config_rejected {
                    eprintln!(
                        "certkeeper: config repo commit {} rejected, used last good commit {}:\n{}",
                        r.commit,
                        status.config_commit.as_deref().unwrap_or("?"),
                        r.reason
                    );
                }
                status.exit_code(time::OffsetDateTime::now_utc())
            }
            Err(e @ run::RunError::Locked(_)) => {
                // The run in progress owns the status file; leave it alone.
                tracing::error!(event = "run.locked", error = %e);
                eprintln!("certkeeper: {e}");
                exit::RENEWAL_FAILED
            }
            Err(e) => {
                tracing::error!(event = "run.failed", error = %e);
                eprintln!("certkeeper: {e}");
                certkeeper::daemon::record_failure(&settings, &e.to_string());
                exit::CONFIG_ERROR
            }
        }
    })
}

/// A live progress line on stderr: only for people (a terminal on stderr
/// and text logs), never in JSON log mode.
pub(crate) fn progress_display(
    settings_format: LogFormat,
    flag: Option<LogFormat>,
) -> Option<std::sync::Arc<run::Progress>> {
    use std::io::IsTerminal;
    let format = flag.unwrap_or(settings_format);
    (format == LogFormat::Text && std::io::stderr().is_terminal())
        .then(|| std::sync::Arc::new(run::Progress::default()))
}
