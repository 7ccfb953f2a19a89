//! Log output: JSON lines for machines (default), plain text for people.
//!
//! Every event carries a stable `event` field (`order.created`,
//! `cert.issued`, …); the other field names (`cert`, `domains`,
//! `duration_ms`, `error`) are part of the interface, so log pipelines and
//! alerts can rely on them.

use crate::settings::LogFormat;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Installs the global subscriber. `CERTKEEPER_LOG` overrides the level
/// filter (`debug`, `certkeeper=debug,aws=warn`, …).
pub fn init(format: LogFormat) {
    install(format, BoxMakeWriter::new(std::io::stdout));
}

/// The same, on stderr: for commands whose stdout is their product (the
/// CSR of `csr new`), so logs never end up in a file sent to a CA.
pub fn init_stderr(format: LogFormat) {
    install(format, BoxMakeWriter::new(std::io::stderr));
}

fn install(format: LogFormat, writer: BoxMakeWriter) {
    let filter = EnvFilter::try_from_env("CERTKEEPER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
