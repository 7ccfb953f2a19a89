//! Command line: parses the arguments and dispatches to the commands in
//! `cli/`, one file each.

use certkeeper::settings::LogFormat;
use certkeeper::{exit, logging, run};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

mod cli;

use cli::config::config_check;
use cli::dns::dns_test;
use cli::generate::{Generated, generate};
use cli::iam_policy::iam_policy;
use cli::inventory::inventory;
use cli::run_cmd::run_command;
use cli::status::status_command;
use cli::{plain, with_settings, with_settings_logging};

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
    Convert(cli::external::ConvertArgs),
    /// Seal a certificate's private key, certificate and chain to a
    /// client's RSA public key: one bundle the client opens with tar and
    /// openssl (its README.txt has the commands).
    Seal(cli::seal::SealArgs),
    /// Fingerprints of certificate files as openssl prints them, or
    /// `--format monit` for monit's `certmd5`.
    Fingerprint(cli::external::FingerprintArgs),
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
    New(cli::external::CsrNewArgs),
    /// Check a signed certificate against the pending CSR (key, subject,
    /// chain to the root), store it as live, publish it to its targets.
    Import(cli::external::CsrImportArgs),
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
                cli::external::csr_new(settings, args)
            })
        }
        Command::Csr {
            command: CsrCommand::Import(args),
        } => {
            let config = args.config.clone();
            let mut unpublished = false;
            let code = with_settings(&config, |settings| async {
                unpublished = cli::external::csr_import(settings, args).await?;
                Ok(())
            });
            if code == exit::OK && unpublished {
                exit::RENEWAL_FAILED
            } else {
                code
            }
        }
        Command::Generate { what } => generate(what),
        Command::Convert(args) => plain(cli::external::convert(args)),
        Command::Seal(args) => {
            let config = args.config.clone();
            with_settings_logging(&config, logging::init_stderr, |settings| {
                cli::seal::seal(settings, args)
            })
        }
        Command::Fingerprint(args) => plain(cli::external::fingerprint(args)),
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
