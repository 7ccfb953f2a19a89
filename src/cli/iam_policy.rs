//! `certkeeper iam-policy`: least-privilege policies for the current
//! settings and config.

use super::*;

pub(crate) fn iam_policy(args: &IamPolicyArgs) -> i32 {
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
