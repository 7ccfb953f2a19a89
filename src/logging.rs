//! Log output: JSON lines for machines (default), plain text for people.
//!
//! Every event carries a stable `event` field (`order.created`,
//! `cert.issued`, …); the other field names (`cert`, `domains`,
//! `duration_ms`, `error`) are part of the interface, so log pipelines and
//! alerts can rely on them.

use std::io::Write;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written (`log_format:` in the settings, `--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Installs the global subscriber. `CERTKEEPER_LOG` overrides the level
/// filter (`debug`, `certkeeper=debug,aws=warn`, …). When stdout is the
/// journal (systemd's `JOURNAL_STREAM` names it), every line starts with
/// its syslog priority (`<3>` error … `<7>` debug), which journald strips
/// and keeps as the entry's PRIORITY: `journalctl -p warning` works.
pub fn init(format: LogFormat) {
    if stdout_is_journal() {
        install(format, BoxMakeWriter::new(JournalStdout));
    } else {
        install(format, BoxMakeWriter::new(std::io::stdout));
    }
}

/// Whether stdout is the stream systemd connected to journald: the
/// `device:inode` in `JOURNAL_STREAM` is stdout's own.
fn stdout_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => stream == format!("{}:{}", meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// stdout, each event's line prefixed with its level's syslog priority.
struct JournalStdout;

/// One event's writer: the prefix goes out with the first bytes.
struct PrefixedLine {
    prefix: Option<u8>,
}

impl Write for PrefixedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        if let Some(priority) = self.prefix.take() {
            let mut line = format!("<{priority}>").into_bytes();
            line.extend_from_slice(buf);
            out.write_all(&line)?;
        } else {
            out.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl<'a> MakeWriter<'a> for JournalStdout {
    type Writer = PrefixedLine;

    fn make_writer(&'a self) -> PrefixedLine {
        PrefixedLine { prefix: Some(6) }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> PrefixedLine {
        PrefixedLine {
            prefix: Some(syslog_priority(meta.level())),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_the_level() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
