//! Command line: parse arguments, set up logging, run, map errors to exit codes.

use certkeeper::settings::{LogFormat, Settings};
use certkeeper::{exit, logging, run};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

mod cli;

#[derive(Parser)]
#[command(
    name = "certkeeper",
    version,
    about = "Keeps TLS certificates alive with nobody watching"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Preflight a DNS provider: write a probe TXT value for DOMAIN, check
    /// the nameservers serve it, remove it. Exit 0 when all of that works.
    Dns {
        #[command(subcommand)]
        command: DnsCommand,
    },
    /// Managed and watched certificates: source, not after, days left, last
    /// alert.
    Inventory {
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print least-privilege IAM policy JSON for the current settings and
    /// config, one per AWS credential identity.
    IamPolicy(IamPolicyArgs),
    /// Work with the config repo: `config check` validates a working tree.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Renew every certificate of the config repo that is due, store and publish.
    Run {
        /// Run once and exit (for cron and Jenkins).
        #[arg(long)]
        once: bool,
        /// Settings file.
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
        /// Override the settings' log format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Renew one certificate now if it is due (always with --force), then
    /// store and publish it like a run.
    Renew {
        name: String,
        #[arg(long)]
        force: bool,
        /// Run the whole order against the issuer's staging directory;
        /// store and publish nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Revoke the live certificate NAME at its CA; the next run replaces it.
    Revoke {
        name: String,
        /// unspecified, keyCompromise, affiliationChanged, superseded,
        /// cessationOfOperation, privilegeWithdrawn.
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
    },
    /// Health of the last run: a table (or --json), optionally a JUnit
    /// file; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios).
    Status {
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also write a JUnit report (one testcase per certificate); `-`:
        /// only the report, on stdout.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// WARNING below this many days left (default: the settings'
        /// `health.warning_days`, 14).
        #[arg(long)]
        warning_days: Option<i64>,
        /// CRITICAL below this many days left (default: `health.critical_days`, 7).
        #[arg(long)]
        critical_days: Option<i64>,
        /// CRITICAL when the last run finished longer ago than this
        /// (default: `health.max_run_age`, 36h).
        #[arg(long)]
        max_run_age: Option<String>,
    },
    /// Certificates from CAs without ACME: make the key and CSR, import
    /// the signed certificate (checked, stored, published, watched).
    Csr {
        #[command(subcommand)]
        command: CsrCommand,
    },
    /// PKCS#12/PFX to PEM files, PEM to PKCS#12, or a Java-ready keystore
    /// (key entry plus `rootca` and `subca` trusted entries). Writes all
    /// output files or none.
    Convert(cli::ConvertArgs),
    /// Fingerprints of certificate files as openssl prints them, or
    /// `--format monit` for monit's `certmd5`.
    Fingerprint(cli::FingerprintArgs),
    /// ACME account operations.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Print the man page (roff) or a shell completion script, for
    /// packaging: `certkeeper generate man > certkeeper.1`.
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// Writes the man page or a completion script for the whole command line.
fn generate(what: Generated) -> i32 {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    let result = match what {
        Generated::Man => clap_mangen::Man::new(command).render(&mut out),
        Generated::Bash => {
            clap_complete::generate(
                clap_complete::Shell::Bash,
                &mut command,
                "certkeeper",
                &mut out,
            );
            Ok(())
        }
        Generated::Zsh => {
            clap_complete::generate(
                clap_complete::Shell::Zsh,
                &mut command,
                "certkeeper",
                &mut out,
            );
            Ok(())
        }
        Generated::Fish => {
            clap_complete::generate(
                clap_complete::Shell::Fish,
                &mut command,
                "certkeeper",
                &mut out,
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("certkeeper generate: {e}");
            1
        }
    }
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Replace the account key of an issuer (RFC 8555 key change).
    Rollover {
        /// Issuer name from the settings (default: the default issuer).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CsrCommand {
    /// Generate the key (kept in the state dir, 0600) and print the CSR.
    /// Run again with the same subject: prints the same CSR.
    New(cli::CsrNewArgs),
    /// Check a signed certificate against the pending CSR (key, subject,
    /// chain to the root), store it as live, publish it to its targets.
    Import(cli::CsrImportArgs),
}

#[derive(clap::Args)]
struct IamPolicyArgs {
    #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
    config: PathBuf,
    /// Only the policy of this identity: a profile name, a role ARN, or
    /// `default`; printed as a bare policy document.
    #[arg(long)]
    profile: Option<String>,
    /// A working tree of the config repo instead of fetching it.
    #[arg(long)]
    repo: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DnsCommand {
    /// Write, check and remove a probe TXT value at _acme-challenge.DOMAIN.
    Test {
        domain: String,
        #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
        config: PathBuf,
        /// DNS provider name from the settings (default: route53, or the only one).
        #[arg(long)]
        provider: Option<String>,
        /// Route53 hosted zone id, when not found by suffix.
        #[arg(long)]
        zone_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a working tree of the config repo exactly as a run would
    /// (for the repo's own CI). Exit 0 when valid, 2 otherwise.
    Check {
        /// Working tree of the config repo.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Settings file, for its zone allowlist.
        #[arg(long)]
        settings: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::IamPolicy(args) => iam_policy(&args),
        Command::Inventory { config, json } => inventory(&config, json),
        Command::Config {
            command:
                ConfigCommand::Check {
                    repo,
                    settings,
                    format,
                },
        } => config_check(&repo, settings.as_deref(), format),
        Command::Dns {
            command:
                DnsCommand::Test {
                    domain,
                    config,
                    provider,
                    zone_id,
                },
        } => dns_test(&domain, &config, provider, zone_id),
        Command::Run {
            once,
            config,
            log_format,
        } => run_command(once, &config, log_format, run::RunOptions::default()),
        Command::Renew {
            name,
            dry_run: true,
            config,
            ..
        } => with_settings(&config, |settings| async move {
            let services = run::Services::from_settings(&settings)
                .await
                .map_err(|e| e.to_string())?;
            let cancel = CancellationToken::new();
            let result = run::dry_run(&settings, &services, &name, &cancel).await?;
            println!(
                "dry run: {} would get serial {} (SANs {:?}, not after {}) from {}; nothing was stored or published",
                name, result.serial, result.sans, result.not_after, result.directory_url
            );
            Ok(())
        }),
        Command::Renew {
            name,
            force,
            config,
            log_format,
            ..
        } => {
            let options = run::RunOptions {
                force: if force {
                    vec![name.clone()]
                } else {
                    Vec::new()
                },
                only: Some(name),
                ..Default::default()
            };
            run_command(true, &config, log_format, options)
        }
        Command::Status {
            config,
            json,
            junit,
            warning_days,
            critical_days,
            max_run_age,
        } => status_command(
            &config,
            json,
            junit.as_deref(),
            warning_days,
            critical_days,
            max_run_age.as_deref(),
        ),
        Command::Revoke {
            name,
            reason,
            config,
        } => with_settings(&config, |settings| async move {
            let store =
                certkeeper::store::Store::open(&settings.state_dir).map_err(|e| e.to_string())?;
            let meta =
                certkeeper::acme::revocation::revoke(&settings, &store, &name, reason.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
            println!(
                "revoked {name} (serial {}); the next run issues a new certificate",
                meta.serial
            );
            Ok(())
        }),
        Command::Csr {
            command: CsrCommand::New(args),
        } => {
            let config = args.config.clone();
            with_settings_logging(&config, logging::init_stderr, |settings| {
                cli::csr_new(settings, args)
            })
        }
        Command::Csr {
            command: CsrCommand::Import(args),
        } => {
            let config = args.config.clone();
            let mut unpublished = false;
            let code = with_settings(&config, |settings| async {
                unpublished = cli::csr_import(settings, args).await?;
                Ok(())
            });
            if code == exit::OK && unpublished {
                exit::RENEWAL_FAILED
            } else {
                code
            }
        }
        Command::Generate { what } => generate(what),
        Command::Convert(args) => plain(cli::convert(args)),
        Command::Fingerprint(args) => plain(cli::fingerprint(args)),
        Command::Account {
            command: AccountCommand::Rollover { issuer, config },
        } => with_settings(&config, |settings| async move {
            let name = issuer
                .or_else(|| settings.default_issuer().map(str::to_string))
                .ok_or("several issuers: name one with --issuer")?;
            let acme = settings
                .issuers
                .get(&name)
                .ok_or(format!("no issuer {name:?} in the settings"))?;
            let store =
                certkeeper::store::Store::open(&settings.state_dir).map_err(|e| e.to_string())?;
            let mut issuer = certkeeper::acme::Issuer::load_or_create(&name, acme, &store)
                .await
                .map_err(|e| e.to_string())?;
            issuer.rollover(&store).await.map_err(|e| e.to_string())?;
            println!(
                "rolled over the account key of issuer {name} ({})",
                acme.directory_url
            );
            Ok(())
        }),
    };
    std::process::exit(code);
}

/// A command that needs no settings: its error on stderr, exit 1.
fn plain(result: Result<(), String>) -> i32 {
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
fn runtime() -> Option<tokio::runtime::Runtime> {
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
fn with_settings<F, Fut>(config: &std::path::Path, f: F) -> i32
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    with_settings_logging(config, logging::init, f)
}

/// `with_settings`, logging with `init` (stderr for commands whose stdout
/// is their product).
fn with_settings_logging<F, Fut>(config: &std::path::Path, init: fn(LogFormat), f: F) -> i32
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
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

fn run_command(
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
        // First signal: no new orders, `shutdown_grace` for those in
        // flight; second signal or the end of the grace: cancel them.
        let cancel = CancellationToken::new();
        let (abort, stop, grace) = (cancel.clone(), options.stop.clone(), settings.shutdown_grace);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::warn!(event = "run.stopping", grace = %certkeeper::duration::format(grace), reason = "signal");
            stop.cancel();
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = shutdown_signal() => {}
            }
            tracing::warn!(event = "run.cancelling", reason = "signal");
            abort.cancel();
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

fn status_command(
    config: &std::path::Path,
    json: bool,
    junit: Option<&std::path::Path>,
    warning_days: Option<i64>,
    critical_days: Option<i64>,
    max_run_age: Option<&str>,
) -> i32 {
    use certkeeper::report::health::{self, Level, Thresholds};
    const UNKNOWN: i32 = Level::Unknown as i32;
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            println!("certkeeper UNKNOWN - {e}");
            return UNKNOWN;
        }
    };
    let max_run_age = match max_run_age.map(certkeeper::duration::parse).transpose() {
        Ok(d) => d,
        Err(e) => {
            println!("certkeeper UNKNOWN - --max-run-age: {e}");
            return UNKNOWN;
        }
    };
    let configured = settings.health.thresholds();
    let thresholds = Thresholds {
        warning_days: warning_days.unwrap_or(configured.warning_days),
        critical_days: critical_days.unwrap_or(configured.critical_days),
        max_run_age: max_run_age.unwrap_or(configured.max_run_age),
    };
    let path = settings.state_dir.join(certkeeper::report::STATUS_FILE);
    let status = match certkeeper::report::Status::load(&path) {
        Ok(s) => s,
        // A corrupt status file is not "no run yet": say which it is. The
        // next run writes a new one.
        Err(e) if path.exists() => {
            println!("certkeeper UNKNOWN - {e}; the next run writes a new one");
            return UNKNOWN;
        }
        Err(e) => {
            println!("certkeeper UNKNOWN - no status yet ({e})");
            return UNKNOWN;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let (level, reasons) = health::overall(&status, &thresholds, now);
    if junit.is_some_and(|f| f.as_os_str() == "-") {
        // Only the report on stdout: for `ssh vm > report.xml` from Jenkins.
        print!("{}", certkeeper::report::junit(&status, &thresholds, now));
        eprintln!("certkeeper {} - {}", level.label(), reasons.join("; "));
        return level as i32;
    }
    if let Some(file) = junit
        && let Err(e) = std::fs::write(file, certkeeper::report::junit(&status, &thresholds, now))
    {
        println!("certkeeper UNKNOWN - cannot write {}: {e}", file.display());
        return UNKNOWN;
    }
    if json {
        let out =
            serde_json::json!({ "level": level.label(), "reasons": reasons, "status": status });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return level as i32;
    }
    println!(
        "{:<20} {:<32} {:<20} {:>9} {:<8} {:<9} {:<8} HEALTH",
        "NAME", "DOMAINS", "NOT AFTER", "DAYS LEFT", "LAST", "PUBLISHED", "VERIFIED"
    );
    for c in &status.certificates {
        let h = health::certificate(c, &thresholds, now);
        let not_after = c
            .not_after
            .map(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<32} {:<20} {:>9} {:<8} {:<9} {:<8} {} {}",
            c.name,
            c.domains.join(","),
            not_after,
            c.days_left
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{:?}", c.state).to_lowercase(),
            if c.published { "yes" } else { "no" },
            match c.verified {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            h.level.label(),
            if h.level == Level::Ok {
                String::new()
            } else {
                h.reason
            },
        );
    }
    let summary = if reasons.is_empty() {
        format!(
            "{} certificates, last run {}",
            status.certificates.len(),
            certkeeper::report::days_ago(status.finished_at, now)
        )
    } else {
        reasons.join("; ")
    };
    println!("certkeeper {} - {summary}", level.label());
    level as i32
}

fn dns_test(
    domain: &str,
    config: &std::path::Path,
    provider: Option<String>,
    zone_id: Option<String>,
) -> i32 {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    let domain = match certkeeper::config::domain::normalize(domain) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    let Some(runtime) = runtime() else {
        return exit::RENEWAL_FAILED;
    };
    runtime.block_on(async {
        let services = match run::Services::from_settings(&settings).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("certkeeper: {e}");
                return exit::CONFIG_ERROR;
            }
        };
        let name = provider.unwrap_or_else(|| match services.dns.len() {
            1 => services.dns.keys().next().cloned().unwrap_or_default(),
            _ => certkeeper::settings::DEFAULT_DNS_PROVIDER.to_string(),
        });
        let Some(dns) = services.dns.get(&name) else {
            let known: Vec<&String> = services.dns.keys().collect();
            eprintln!("certkeeper: no DNS provider {name:?} in the settings (known: {known:?})");
            return exit::CONFIG_ERROR;
        };
        let report = certkeeper::dns::preflight(dns.clone(), &settings.dns, &domain, zone_id).await;
        for step in &report.steps {
            println!("{step}");
        }
        if report.ok {
            exit::OK
        } else {
            exit::RENEWAL_FAILED
        }
    })
}

fn inventory(config: &std::path::Path, json: bool) -> i32 {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    let Some(runtime) = runtime() else {
        return exit::RENEWAL_FAILED;
    };
    let now = time::OffsetDateTime::now_utc();
    let status =
        certkeeper::report::Status::load(&settings.state_dir.join(certkeeper::report::STATUS_FILE))
            .ok();
    let store = certkeeper::store::Store::open(&settings.state_dir).ok();
    let (watched, errors) = match &settings.watch {
        Some(w) => runtime.block_on(async {
            let secrets = certkeeper::secrets::Secrets::from_settings(&settings).await;
            let ctx = certkeeper::watch::sources::Context {
                secrets: &secrets,
                store: store.as_ref(),
            };
            certkeeper::watch::scan(&settings, w, &ctx).await
        }),
        None => (Vec::new(), Vec::new()),
    };
    let sent = store
        .as_ref()
        .map(certkeeper::alert::load_sent)
        .unwrap_or_default();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    for c in status.iter().flat_map(|s| &s.certificates) {
        rows.push(serde_json::json!({
            "name": c.name, "kind": "managed", "source": "managed",
            "not_after": c.not_after.map(fmt), "days_left": c.days_left,
            "last_alert": sent.get(&c.name).map(|s| format!("{} {}", s.day, s.level)),
        }));
    }
    for w in &watched {
        rows.push(serde_json::json!({
            "name": w.name, "kind": "watched", "source": w.source, "labels": w.labels,
            "not_after": fmt(w.not_after), "days_left": (w.not_after - now).whole_days(),
            "last_alert": sent.get(&w.name).map(|s| format!("{} {}", s.day, s.level)),
        }));
    }
    if json {
        let out = serde_json::json!({ "certificates": rows, "errors": errors });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        println!(
            "{:<24} {:<8} {:<44} {:<20} {:>9} LAST ALERT",
            "NAME", "KIND", "SOURCE", "NOT AFTER", "DAYS LEFT"
        );
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            println!(
                "{:<24} {:<8} {:<44} {:<20} {:>9} {}",
                s("name"),
                s("kind"),
                s("source"),
                s("not_after"),
                r["days_left"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or("-".into()),
                s("last_alert"),
            );
        }
        for e in &errors {
            eprintln!("certkeeper: watch source: {e}");
        }
    }
    if errors.is_empty() {
        exit::OK
    } else {
        exit::RENEWAL_FAILED
    }
}

fn iam_policy(args: &IamPolicyArgs) -> i32 {
    let settings = match Settings::load(&args.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    let config = match &args.repo {
        Some(repo) => match certkeeper::config::Config::load(repo) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("certkeeper: {}: {e}", repo.display());
                return exit::CONFIG_ERROR;
            }
        },
        None => {
            // No log lines: stdout is the policy, for piping into a file.
            let store = match certkeeper::store::Store::open(&settings.state_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("certkeeper: {e}");
                    return exit::CONFIG_ERROR;
                }
            };
            match certkeeper::config::gate::accept(&settings, &store, None) {
                Ok(a) => a.config,
                Err(e) => {
                    eprintln!("certkeeper: {e}");
                    return exit::CONFIG_ERROR;
                }
            }
        }
    };
    let policies = certkeeper::iam::policies(&settings, &config);
    let out = match &args.profile {
        None => serde_json::to_value(&policies).expect("policies serialize"),
        Some(want) => {
            let found = policies.iter().find(|(label, _)| {
                *label == want
                    || label.as_str() == format!("profile:{want}")
                    || label.ends_with(&format!("(from profile:{want})"))
            });
            match found {
                Some((_, policy)) => policy.clone(),
                None => {
                    eprintln!(
                        "certkeeper: no identity {want:?} in this config (identities: {})",
                        policies.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                    return exit::CONFIG_ERROR;
                }
            }
        }
    };
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    exit::OK
}

fn config_check(
    repo: &std::path::Path,
    settings: Option<&std::path::Path>,
    format: OutputFormat,
) -> i32 {
    let settings = match settings.map(Settings::load).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    let (config, mut report) = match certkeeper::config::Config::check_tree(repo) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certkeeper: {}: {e}", repo.display());
            return exit::CONFIG_ERROR;
        }
    };
    if let Some(settings) = &settings {
        let providers: Vec<String> = settings.dns_providers.keys().cloned().collect();
        report.errors.extend(config.check_providers(&providers));
        report.errors.extend(config.check_issuers(settings));
        report.errors.extend(config.check_targets(settings));
        if let Some(zones) = &settings.allowed_zones {
            report.errors.extend(config.check_allowed_zones(zones));
        }
    }
    match format {
        OutputFormat::Text => {
            for e in &report.errors {
                println!("{e}");
            }
            for w in &report.warnings {
                println!("warning: {w}");
            }
            println!(
                "{} certificates, {} errors, {} warnings",
                config.certificates.len(),
                report.errors.len(),
                report.warnings.len()
            );
        }
        OutputFormat::Json => {
            let json = serde_json::json!({
                "valid": report.errors.is_empty(),
                "certificates": config.certificates.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "errors": report.errors.iter().map(located_json).collect::<Vec<_>>(),
                "warnings": report.warnings.iter().map(located_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&json).expect("json"));
        }
    }
    if report.errors.is_empty() {
        exit::OK
    } else {
        exit::CONFIG_ERROR
    }
}

fn located_json(l: &certkeeper::yaml::Located) -> serde_json::Value {
    serde_json::json!({
        "file": l.file.display().to_string(),
        "line": l.line,
        "column": l.column,
        "field": l.field,
        "message": l.message,
    })
}

/// A live progress line on stderr: only for people (a terminal on stderr
/// and text logs), never in JSON log mode.
fn progress_display(
    settings_format: LogFormat,
    flag: Option<LogFormat>,
) -> Option<std::sync::Arc<run::Progress>> {
    use std::io::IsTerminal;
    let format = flag.unwrap_or(settings_format);
    (format == LogFormat::Text && std::io::stderr().is_terminal())
        .then(|| std::sync::Arc::new(run::Progress::default()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
