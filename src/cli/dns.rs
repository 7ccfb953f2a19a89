//! `certkeeper dns test`: write, see served, remove one TXT record.

use super::*;

pub(crate) fn dns_test(
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
