//! `certkeeper inventory`: every certificate the config repo declares, with
//! where it is published.

use super::*;

pub(crate) fn inventory(config: &std::path::Path, json: bool) -> i32 {
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
