//! The commands: one file each; `main.rs` parses the arguments and
//! dispatches here. The helpers below are what every command shares:
//! a runtime, loading the settings, logging. Shutdown is
//! `certkeeper::shutdown`, shared with the daemon.

use certkeeper::settings::{LogFormat, Settings};
use certkeeper::{exit, logging, run};
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod dns;
pub mod external;
pub mod generate;
pub mod iam_policy;
pub mod inventory;
pub mod run_cmd;
pub mod seal;
pub mod status;

pub(crate) use crate::{IamPolicyArgs, OutputFormat};

/// What a command prints when it fails: any error, its causes kept (the
/// binary's `anyhow`; the library's errors are typed).
pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A command that needs no settings: its error on stderr, exit 1.
pub(crate) fn plain(result: Result<(), Failure>) -> i32 {
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            exit::RENEWAL_FAILED
        }
    }
}

/// The async runtime every command runs on; `None` (after saying why) if
/// the system refuses threads.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("certkeeper: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Loads the settings, sets up text logging and runs one async command;
/// errors print to stderr with exit code 1 (2 for bad settings).
pub(crate) fn with_settings<F, Fut>(config: &std::path::Path, f: F) -> i32
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    with_settings_logging(config, logging::init, f)
}

/// `with_settings`, logging with `init` (stderr for commands whose stdout
/// is their product).
pub(crate) fn with_settings_logging<F, Fut>(
    config: &std::path::Path,
    init: fn(LogFormat),
    f: F,
) -> i32
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    init(settings.log_format);
    let Some(runtime) = runtime() else {
        return exit::RENEWAL_FAILED;
    };
    match runtime.block_on(f(settings)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            exit::RENEWAL_FAILED
        }
    }
}
