//! Reading the repo's files: parsing with positions, one entry's checks,
//! the checks across files.

use super::*;

/// Parses one file; pushes located errors, returns the certificates that
/// deserialized (even if they failed later checks, so cross-file checks see them).
pub(super) fn parse_file(path: &Path, text: &str, errors: &mut Vec<Located>) -> Vec<Certificate> {
    let value: yaml_serde::Value = match yaml::parse(path, text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let positions = yaml::locations(text);
    let at = |field: String, message: String| {
        // serde names no error kinds: its "unknown field" message is the
        // only sign that the key, not its value, is what to point at.
        let pos = if message.starts_with("unknown field") {
            yaml::locate_key(&positions, &field)
        } else {
            yaml::locate(&positions, &field)
        };
        Located {
            file: path.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            field,
            message,
        }
    };
    let items = match value {
        yaml_serde::Value::Null => return Vec::new(),
        yaml_serde::Value::Mapping(map) => {
            let mut items = Vec::new();
            for (key, v) in map {
                match key.as_str() {
                    Some("certificates") => match v {
                        yaml_serde::Value::Sequence(seq) => items = seq,
                        yaml_serde::Value::Null => {}
                        _ => errors.push(at(
                            "certificates".into(),
                            "must be a list of certificates".into(),
                        )),
                    },
                    other => errors.push(at(
                        other.unwrap_or("?").to_string(),
                        format!(
                            "unknown field `{}`, expected `certificates`",
                            other.unwrap_or("?")
                        ),
                    )),
                }
            }
            items
        }
        _ => {
            errors.push(at(
                String::new(),
                "expected a mapping with a `certificates` list".into(),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let base = format!("certificates[{index}]");
        let Some(mut spec) = deserialize_all(item, &base, &mut |field, message| {
            errors.push(at(field, message))
        }) else {
            continue;
        };
        validate_spec(&mut spec, index, &mut |field: String, message: String| {
            errors.push(at(field, message))
        });
        let (line, _) = yaml::locate(&positions, &base).unwrap_or((0, 0));
        let domain_positions = (0..spec.domains.len())
            .map(|d| yaml::locate(&positions, &format!("{base}.domains[{d}]")).unwrap_or((0, 0)))
            .collect();
        let provider_position =
            yaml::locate(&positions, &format!("{base}.dns.provider")).unwrap_or((line, 0));
        let name_position = yaml::locate(&positions, &format!("{base}.name")).unwrap_or((line, 0));
        let target_positions = (0..spec.targets.as_ref().map_or(0, Vec::len))
            .map(|t| yaml::locate(&positions, &format!("{base}.targets[{t}]")).unwrap_or((line, 0)))
            .collect();
        let secret_position =
            yaml::locate(&positions, &format!("{base}.pkcs12.password")).unwrap_or((line, 0));
        out.push(Certificate {
            provider_position,
            name_position,
            target_positions,
            secret_position,
            origin: format!("{}:{line}", path.display()),
            file: path.to_path_buf(),
            index,
            domain_positions,
            spec,
        });
    }
    out
}

/// Deserializes one certificate, reporting every field error, not only the
/// first: a field that fails is reported and dropped, and the rest is tried
/// again, so the certificate still reaches the checks across files (its
/// name, targets, issuer) in the same report. `None` when what is left is
/// no certificate (a required field missing or dropped).
fn deserialize_all(
    mut item: yaml_serde::Value,
    base: &str,
    err: &mut impl FnMut(String, String),
) -> Option<CertificateSpec> {
    // Keys dropped so far: the "missing field" they cause is no news.
    let mut dropped: Vec<String> = Vec::new();
    // Each round drops one key, so a certificate has at most this many.
    for _ in 0..64 {
        let e = match serde_path_to_error::deserialize::<_, CertificateSpec>(item.clone()) {
            Ok(spec) => return Some(spec),
            Err(e) => e,
        };
        let inner = e.path().to_string();
        let message = e.inner().to_string();
        let echo = dropped
            .iter()
            .any(|k| message == format!("missing field `{k}`"));
        if !echo {
            let field = if inner == "." || inner.is_empty() {
                base.to_string()
            } else {
                format!("{base}.{inner}")
            };
            err(field, message);
        }
        // Drop the innermost mapping key on the path (a bad list element
        // drops its list) and try again; at the top there is nothing left.
        let keys: Vec<String> = e
            .path()
            .iter()
            .map_while(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let (last, parents) = keys.split_last()?;
        let mut map = &mut item;
        for key in parents {
            match map.get_mut(key.as_str()) {
                Some(inner) => map = inner,
                None => return None,
            }
        }
        match map
            .as_mapping_mut()
            .and_then(|m| m.shift_remove(last.as_str()))
        {
            Some(_) => dropped.push(last.clone()),
            None => return None,
        }
    }
    None
}

/// Checks across all files: unique names (error), a domain in two
/// certificates (warning: legal, but usually a copy-paste mistake).
pub(super) fn cross_check(certificates: &[Certificate], report: &mut Report) {
    let mut names: BTreeMap<&str, &Certificate> = BTreeMap::new();
    let mut domains: BTreeMap<&str, &Certificate> = BTreeMap::new();
    for cert in certificates {
        if let Some(first) = names.get(cert.name()) {
            let (line, column) = cert.name_position;
            report.errors.push(Located {
                file: cert.file.clone(),
                line: (line > 0).then_some(line),
                column: (column > 0).then_some(column),
                field: format!("certificates[{}].name", cert.index),
                message: format!(
                    "duplicate certificate name {:?}, first defined at {}",
                    cert.name(),
                    first.origin
                ),
            });
        } else {
            names.insert(cert.name(), cert);
        }
        for (i, d) in cert.spec.domains.iter().enumerate() {
            match domains.get(d.as_str()) {
                Some(first) if first.name() != cert.name() => {
                    report.warnings.push(cert.domain_error(
                        i,
                        format!(
                            "{d:?} is also in certificate {:?} ({})",
                            first.name(),
                            first.origin
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    domains.insert(d, cert);
                }
            }
        }
    }
}

fn validate_spec(spec: &mut CertificateSpec, idx: usize, err: &mut impl FnMut(String, String)) {
    if !valid_name(&spec.name) {
        err(
            format!("certificates[{idx}].name"),
            format!(
                "{:?} is not a valid certificate name (letters, digits, '.', '-', '_'; it becomes a directory and S3 key)",
                spec.name
            ),
        );
    }
    match (&spec.csr, spec.is_external()) {
        (Some(_), false) => err(
            format!("certificates[{idx}].csr"),
            format!(
                "`csr` is only for certificates with `issuer: {}` (ACME certificates make their own)",
                EXTERNAL
            ),
        ),
        (Some(csr), true) => {
            if !spec.domains.is_empty() {
                err(
                    format!("certificates[{idx}].domains"),
                    "an external certificate with `csr` takes its names from `csr.cn` and `csr.sans`; remove `domains`".into(),
                );
            }
            match domain::render_names(&csr.cn, &csr.sans, &spec.vars) {
                Ok((cn, sans)) => {
                    let cn = cn.to_ascii_lowercase();
                    spec.domains = vec![cn.clone()];
                    spec.domains.extend(sans.into_iter().filter(|s| *s != cn));
                }
                Err(e) => {
                    let field = e.field.replace("san[", "sans[");
                    err(
                        format!("certificates[{idx}].csr.{field}"),
                        e.reason.to_string(),
                    );
                }
            }
        }
        (None, _) if spec.domains.is_empty() => err(
            format!("certificates[{idx}].domains"),
            if spec.is_external() {
                "an external certificate needs `csr.cn` (or `domains`)".into()
            } else {
                "at least one domain is required".into()
            },
        ),
        (None, _) => {}
    }
    if spec.is_external() && (!spec.fallback_issuers.is_empty() || spec.profile.is_some()) {
        err(
            format!("certificates[{idx}].issuer"),
            "an external certificate has no fallback_issuers or profile (no ACME is involved)"
                .into(),
        );
    }
    if let Some(verify) = &spec.verify {
        for (e, endpoint) in verify.endpoints.iter().enumerate() {
            let addr = endpoint.address();
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                err(
                    format!("certificates[{idx}].verify.endpoints[{e}]"),
                    format!("{addr:?} is not host:port"),
                );
            }
        }
        if verify.interval.is_zero() {
            err(
                format!("certificates[{idx}].verify.interval"),
                "must be more than 0s".into(),
            );
        }
    }
    for key in spec.vars.keys() {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            err(
                format!("certificates[{idx}].vars.{key}"),
                "variable names are letters, digits and '_'".into(),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (d, domain) in spec.domains.iter_mut().enumerate() {
        let field = format!("certificates[{idx}].domains[{d}]");
        match domain::normalize(domain) {
            Err(why) => err(field, why.to_string()),
            Ok(ascii) => {
                if !seen.insert(ascii.clone()) {
                    err(field, format!("{domain:?} is listed twice"));
                }
                *domain = ascii;
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

pub(super) fn certificate_files(root: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let root_file = root.join(ROOT_FILE);
    if root_file.is_file() {
        files.push(root_file);
    }
    let dir = root.join(TEAM_DIR);
    if dir.is_dir() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut team: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        team.sort();
        files.extend(team);
    }
    Ok(files)
}
