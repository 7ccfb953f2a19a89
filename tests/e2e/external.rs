//! Certificates from CAs without ACME, the MESH runbook end to end: `csr
//! new` from the config repo's CN template, a CA made with openssl signing
//! the CSR (as the service desk would), `csr import` refusing what does not
//! belong and storing and publishing what does, the Java keystore checked
//! with keytool, the reminder with the command for the next one; then
//! `convert` and `fingerprint` against openssl.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{LocalEnv, PebbleOptions, cert_status};

const P12_PASSWORD: &str = "keystore-Pa55-never-logged";

fn tool(dir: &Path, program: &str, args: &[&str]) -> String {
    support::run_tool(
        Command::new(program)
            .current_dir(dir)
            .args(args)
            .env("P12_PASS", P12_PASSWORD),
    )
}

/// `tool` with the arguments as one line of words (none has a space).
fn sh(dir: &Path, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    tool(dir, words[0], &words[1..])
}

/// `keytool -list` of a PKCS#12 file (`-v` for the chain lengths).
fn keytool_list(dir: &Path, p12: &Path, verbose: bool) -> String {
    let v = if verbose { "-v " } else { "" };
    sh(
        dir,
        &format!(
            "keytool -list {v}-storetype PKCS12 -storepass {P12_PASSWORD} -keystore {}",
            p12.display()
        ),
    )
}

/// A root CA and a sub CA made with openssl, as a partner CA would have.
struct Ca {
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("sub.ext"),
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("leaf.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        sh(
            dir,
            &format!(
                "openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.pem -days 3650 -subj /CN={name}-Root-CA/O=Test -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        sh(
            dir,
            &format!(
                "openssl req -newkey rsa:2048 -nodes -keyout sub.key -out sub.csr -subj /CN={name}-Sub-CA/O=Test"
            ),
        );
        sh(
            dir,
            "openssl x509 -req -in sub.csr -CA root.pem -CAkey root.key -CAcreateserial -days 3650 -out sub.pem -extfile sub.ext",
        );
        Ca {
            dir: dir.to_path_buf(),
        }
    }

    fn root(&self) -> String {
        self.dir.join("root.pem").display().to_string()
    }

    fn sub(&self) -> String {
        self.dir.join("sub.pem").display().to_string()
    }

    /// Signs `csr` with the sub CA for `days`, as the service desk does.
    fn sign(&self, csr: &Path, out: &Path, days: u32) {
        sh(
            &self.dir,
            &format!(
                "openssl x509 -req -in {} -CA sub.pem -CAkey sub.key -CAcreateserial -days {days} -out {} -extfile leaf.ext",
                csr.display(),
                out.display()
            ),
        );
    }
}

fn settings(root: &Path) -> String {
    format!(
        r#"secrets:
  p12pass: {{file: {root}/p12.pass}}
targets:
  ssm-mesh:
    type: ssm
    environments: [dev, prod]
    parameters:
      cert: /registrations/{{env}}/user-input/mesh/{{mailbox}}-cert
      key: /registrations/{{env}}/user-input/mesh/{{mailbox}}-key
      chain: /registrations/{{env}}/user-input/mesh/{{mailbox}}-chain
"#,
        root = root.display()
    )
}

const CERTS: &str = r#"certificates:
  - name: mesh-prod
    issuer: external
    key_type: rsa-2048
    csr:
      cn: "{identifier}.{ods}.mesh-client.nhs.uk"
    vars: {identifier: RRR01HC, ods: RRR01, mailbox: rrr01hc}
    targets: [ssm-mesh]
    pkcs12: {password: p12pass, alias: meshclient, trusted_chain: true}
"#;

/// `certkeeper WORDS… --config <settings>`; no word has a space.
async fn ck_env(env: &LocalEnv, line: &str) -> support::RunOutput {
    env.certkeeper_line(line, &env.settings_path()).await
}

async fn ssm_value(env: &LocalEnv, name: &str) -> Option<String> {
    let ssm = aws_sdk_ssm::Client::new(&env.moto.sdk_config().await);
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?;
    out.parameter()?.value().map(str::to_string)
}

fn assert_no_key_material(what: &str, text: &str, key_pem: &str) {
    assert!(!text.contains("PRIVATE KEY"), "{what} shows a private key");
    assert!(
        !text.contains(P12_PASSWORD),
        "{what} shows the PKCS#12 password"
    );
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!text.contains(&body[..40]), "{what} shows key material");
}

/// An import that must be refused with `reason`, storing nothing.
async fn refused(env: &LocalEnv, line: &str, reason: &str) {
    let out = ck_env(env, line).await;
    assert_ne!(out.code, 0, "{line}");
    assert!(out.stderr.contains(reason), "{line}: {}", out.stderr);
    assert!(!env.state_dir().join("live/mesh-prod").exists(), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_new_import_publish_remind_and_renew() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let root = env.root.clone();
    std::fs::write(root.join("p12.pass"), format!("{P12_PASSWORD}\n")).unwrap();
    env.write_settings(&settings(&root));
    env.repo.commit_certificates(CERTS, "mesh-prod: external");
    let ca = Ca::new(&root.join("ca"), "Partner");
    let other = Ca::new(&root.join("other-ca"), "Other");
    let at = |f: &str| root.join(f).display().to_string();

    // 1. csr new: the CN comes from the config's template and vars, the
    //    key stays in the state dir, 0600, and is never printed.
    let out = ck_env(&env, "csr new --name mesh-prod").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{}",
        out.stdout
    );
    std::fs::write(root.join("mesh.csr"), &out.stdout).unwrap();
    let text = sh(
        &root,
        "openssl req -in mesh.csr -noout -subject -text -verify",
    );
    assert!(
        text.contains("CN = RRR01HC.RRR01.mesh-client.nhs.uk"),
        "{text}"
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    let pending_key = env.state_dir().join("csr/mesh-prod/privkey.pem");
    let mode = std::fs::metadata(&pending_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_pem = std::fs::read_to_string(&pending_key).unwrap();
    assert_no_key_material(
        "csr new",
        &format!("{}{}", out.stdout, out.stderr),
        &key_pem,
    );

    // Asked again: the same CSR, not a new key.
    let again = ck_env(&env, "csr new --name mesh-prod").await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, out.stdout);
    assert!(again.stderr.contains("already pending"), "{}", again.stderr);
    // Another subject while one is pending: refused, the key kept.
    let differs = ck_env(
        &env,
        "csr new --name mesh-prod --cn OTHER.RRR01.mesh-client.nhs.uk",
    )
    .await;
    assert_ne!(differs.code, 0);
    assert!(
        differs
            .stderr
            .contains("a different CSR for mesh-prod is pending"),
        "{}",
        differs.stderr
    );
    assert_eq!(std::fs::read_to_string(&pending_key).unwrap(), key_pem);

    // A run before the CA answered: nothing to publish, and the status
    // says what is awaited.
    let run = env.run().await;
    let c = cert_status(&env.status(), "mesh-prod");
    assert_eq!(c["state"], "failed", "{c}");
    let todo = c["last_error"].as_str().unwrap();
    assert!(
        todo.contains("waiting for the CA") && todo.contains("csr import --name mesh-prod"),
        "{todo}"
    );
    assert_eq!(
        run.events_named("cert.external.due").len(),
        1,
        "{}",
        run.stdout
    );

    // 2. What import refuses; nothing is stored by a refused import.
    let chain = format!("--chain {} --chain {}", ca.sub(), ca.root());
    sh(
        &root,
        "openssl req -newkey rsa:2048 -nodes -keyout stray.key -out stray.csr -subj /CN=RRR01HC.RRR01.mesh-client.nhs.uk",
    );
    ca.sign(&root.join("stray.csr"), &root.join("stray.pem"), 365);
    let import = |cert: &str, chain: &str| {
        format!("csr import --name mesh-prod --cert {} {chain}", at(cert))
    };
    refused(
        &env,
        &import("stray.pem", &chain),
        "does not match the key of the pending CSR",
    )
    .await;
    // Our key, another subject.
    sh(
        &root,
        &format!(
            "openssl req -new -key {} -out wrong.csr -subj /CN=SOMEONE.ELSE.mesh-client.nhs.uk",
            pending_key.display()
        ),
    );
    ca.sign(&root.join("wrong.csr"), &root.join("wrong.pem"), 365);
    refused(&env, &import("wrong.pem", &chain), "differs from the CSR").await;
    // The right certificate, with a chain that ends at another root, or none.
    ca.sign(&root.join("mesh.csr"), &root.join("signed.pem"), 365);
    let other_root = format!("--chain {} --chain {}", ca.sub(), other.root());
    refused(
        &env,
        &import("signed.pem", &other_root),
        "does not reach a root",
    )
    .await;
    refused(&env, &import("signed.pem", ""), "no chain given").await;

    // 3. The right certificate and chain: stored, published, keystore made.
    let imported = ck_env(
        &env,
        &import(
            "signed.pem",
            &format!("--chain {} --chain {}", ca.root(), ca.sub()),
        ),
    )
    .await;
    assert_eq!(imported.code, 0, "{}{}", imported.stdout, imported.stderr);
    assert!(
        imported.stderr.contains("Published to ssm-mesh"),
        "{}",
        imported.stderr
    );
    assert_no_key_material(
        "csr import",
        &format!("{}{}", imported.stdout, imported.stderr),
        &key_pem,
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("mesh-prod", "meta.json")).unwrap();
    assert_eq!(meta["issuer"], "external");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["domains"][0], "rrr01hc.rrr01.mesh-client.nhs.uk");
    assert!(
        !pending_key.exists(),
        "the pending key copy is removed after import"
    );
    assert_eq!(
        String::from_utf8(env.live_file("mesh-prod", "privkey.pem")).unwrap(),
        key_pem
    );
    let cert_pem = String::from_utf8(env.live_file("mesh-prod", "cert.pem")).unwrap();
    let chain_pem = String::from_utf8(env.live_file("mesh-prod", "chain.pem")).unwrap();
    assert_eq!(
        chain_pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "sub CA and root"
    );
    for stage in ["dev", "prod"] {
        let path = |what: &str| format!("/registrations/{stage}/user-input/mesh/rrr01hc-{what}");
        let cert = ssm_value(&env, &path("cert")).await;
        assert_eq!(
            cert.as_deref().map(str::trim),
            Some(cert_pem.trim()),
            "{stage}"
        );
        let key = ssm_value(&env, &path("key")).await;
        assert_eq!(
            key.as_deref().map(str::trim),
            Some(key_pem.trim()),
            "{stage}"
        );
    }
    sh(
        &root,
        &format!(
            "openssl verify -CAfile {} -untrusted {} {}",
            ca.root(),
            ca.sub(),
            at("signed.pem")
        ),
    );
    // The Java keystore: three entries, as the runbook's `keytool -list` check wants.
    let list = keytool_list(
        &root,
        &env.state_dir().join("live/mesh-prod/cert.p12"),
        false,
    );
    assert!(list.contains("3 entries"), "{list}");
    assert!(
        list.contains("meshclient") && list.contains("PrivateKeyEntry"),
        "{list}"
    );
    assert!(list.contains("rootca") && list.contains("subca"), "{list}");
    assert_eq!(list.matches("trustedCertEntry").count(), 2, "{list}");
    let c = cert_status(&env.status(), "mesh-prod");
    assert_eq!(c["state"], "ok", "{c}");
    assert_eq!(c["published"], true, "{c}");
    let status_text = std::fs::read_to_string(env.state_dir().join("status.json")).unwrap();
    assert_no_key_material("status.json", &status_text, &key_pem);

    // Revocation is the CA's business; certkeeper says so.
    let revoke = ck_env(&env, "revoke mesh-prod").await;
    assert_ne!(revoke.code, 0);
    assert!(
        revoke.stderr.contains("ask that CA to revoke"),
        "{}",
        revoke.stderr
    );
    // Names on the command line follow the config's hostname rules.
    let bad = ck_env(
        &env,
        "csr new --name adhoc --cn bad_name!.example.test --key rsa-2048",
    )
    .await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("cn: \"bad_name!.example.test\""),
        "{}",
        bad.stderr
    );
    assert!(!env.state_dir().join("csr/adhoc").exists());

    // A run now: nothing due, published already.
    let run = env.run().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(cert_status(&env.status(), "mesh-prod")["state"], "ok");

    // 4. The next one: a new key and CSR, then a certificate that expires
    //    inside the 30-day reminder window.
    let out = ck_env(&env, "csr new --name mesh-prod").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("New CSR"), "{}", out.stderr);
    assert_ne!(
        std::fs::read_to_string(&pending_key).unwrap(),
        key_pem,
        "a new request gets a new key"
    );
    std::fs::write(root.join("mesh2.csr"), &out.stdout).unwrap();
    ca.sign(&root.join("mesh2.csr"), &root.join("short.pem"), 20);
    // This time the CA's answer carries the sub CA in the same file.
    let bundle = std::fs::read_to_string(root.join("short.pem")).unwrap()
        + &std::fs::read_to_string(ca.sub()).unwrap();
    std::fs::write(root.join("short.pem"), bundle).unwrap();
    let imported = ck_env(
        &env,
        &import("short.pem", &format!("--chain {}", ca.root())),
    )
    .await;
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    // Imported and published, but due again within 30 days: the status
    // and the import say so, with the command for the next one.
    assert!(
        imported.stderr.contains("due for renewal by hand"),
        "{}",
        imported.stderr
    );
    let c = cert_status(&env.status(), "mesh-prod");
    assert_eq!(c["published"], true, "{c}");
    assert_eq!(c["state"], "failed", "{c}");
    let todo = c["last_error"].as_str().unwrap();
    assert!(todo.contains("due for renewal by hand"), "{todo}");
    assert!(
        todo.contains("certkeeper csr new --name mesh-prod --config"),
        "{todo}"
    );
    assert!(
        c["renew_command"]
            .as_str()
            .unwrap()
            .contains("csr new --name mesh-prod"),
        "{c}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("mesh-prod", "meta.json")).unwrap();
    assert_eq!(meta["version"], 2);
    assert!(
        env.state_dir()
            .join("archive/mesh-prod/0001/cert.pem")
            .exists()
    );
    let cert = ssm_value(&env, "/registrations/prod/user-input/mesh/rrr01hc-cert").await;
    let live = String::from_utf8(env.live_file("mesh-prod", "cert.pem")).unwrap();
    assert_eq!(cert.as_deref().map(str::trim), Some(live.trim()));
}

/// `certkeeper WORDS…` in `dir`; (exit code, stdout, stderr).
fn ck(dir: &Path, line: &str) -> (i32, String, String) {
    let out = Command::new(support::certkeeper_bin())
        .current_dir(dir)
        .args(line.split_whitespace())
        .env("P12_PASS", P12_PASSWORD)
        .env("WRONG_PASS", "not-the-password")
        .output()
        .expect("run certkeeper");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A command that must fail with `reason` on stderr.
fn fails(dir: &Path, line: &str, reason: &str) {
    let (code, _, err) = ck(dir, line);
    assert_ne!(code, 0, "{line}");
    assert!(err.contains(reason), "{line}: {err}");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn convert_keystores_pem_sets_and_fingerprints() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ca = Ca::new(&root.join("ca"), "Convert");
    sh(
        root,
        "openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=client.example.test",
    );
    ca.sign(&root.join("leaf.csr"), &root.join("leaf.pem"), 365);
    let mode = |f: &str| {
        std::fs::metadata(root.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };

    // PEM -> Java keystore: keytool and openssl both read it.
    let (code, _, err) = ck(
        root,
        &format!(
            "convert --to keystore --cert leaf.pem --key leaf.key --chain {} --chain {} --out mesh.p12 --password-env P12_PASS",
            ca.root(),
            ca.sub()
        ),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("3 entries: meshclient, subca, rootca"),
        "{err}"
    );
    let list = keytool_list(root, &root.join("mesh.p12"), true);
    assert!(list.contains("Your keystore contains 3 entries"), "{list}");
    assert_eq!(list.matches("trustedCertEntry").count(), 2, "{list}");
    assert!(list.contains("Certificate chain length: 3"), "{list}");
    let certs = sh(
        root,
        "openssl pkcs12 -in mesh.p12 -nokeys -passin env:P12_PASS",
    );
    assert_eq!(
        certs.matches("BEGIN CERTIFICATE").count(),
        5,
        "the key entry's leaf, sub CA and root, and the two trusted entries: {certs}"
    );
    assert_eq!(mode("mesh.p12"), 0o600);
    // Existing output: refused without --force.
    fails(
        root,
        "convert --to p12 --cert leaf.pem --key leaf.key --out mesh.p12 --password-env P12_PASS",
        "already exists",
    );

    // PKCS#12 -> PEM, on a file openssl made (AES), a 3DES one, and ours.
    let chain_in =
        std::fs::read_to_string(ca.sub()).unwrap() + &std::fs::read_to_string(ca.root()).unwrap();
    std::fs::write(root.join("chain-in.pem"), chain_in).unwrap();
    let export = "openssl pkcs12 -export -in leaf.pem -inkey leaf.key -certfile chain-in.pem -passout env:P12_PASS";
    sh(root, &format!("{export} -out openssl.pfx"));
    sh(
        root,
        &format!(
            "{export} -out legacy.pfx -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1"
        ),
    );
    let leaf_fp = sh(
        root,
        "openssl x509 -in leaf.pem -noout -fingerprint -sha256",
    );
    for (pfx, out) in [
        ("openssl.pfx", "pem-a"),
        ("legacy.pfx", "pem-b"),
        ("mesh.p12", "pem-c"),
    ] {
        let dir = root.join(out);
        std::fs::create_dir(&dir).unwrap();
        let (code, _, err) = ck(
            root,
            &format!("convert --to pem --p12 {pfx} --out-dir {out} --password-env P12_PASS"),
        );
        assert_eq!(code, 0, "{pfx}: {err}");
        assert_eq!(
            files_in(&dir),
            ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        );
        // What `openssl pkcs12 -clcerts -nokeys` gives: the leaf.
        assert_eq!(
            sh(
                &dir,
                "openssl x509 -in cert.pem -noout -fingerprint -sha256"
            ),
            leaf_fp,
            "{pfx}"
        );
        // The key matches the certificate.
        let key_pub = sh(&dir, "openssl pkey -in privkey.pem -pubout");
        assert_eq!(
            key_pub,
            sh(&dir, "openssl x509 -in cert.pem -noout -pubkey"),
            "{pfx}"
        );
        assert_eq!(mode(&format!("{out}/privkey.pem")), 0o600);
        // Chain: sub CA then root, once each.
        let chain = std::fs::read_to_string(dir.join("chain.pem")).unwrap();
        assert_eq!(
            chain.matches("BEGIN CERTIFICATE").count(),
            2,
            "{pfx}: {chain}"
        );
        sh(
            &dir,
            &format!(
                "openssl verify -CAfile {} -untrusted chain.pem cert.pem",
                ca.root()
            ),
        );
    }

    // Bad inputs: clear errors, and no output file at all.
    std::fs::create_dir(root.join("bad")).unwrap();
    let to_pem = "convert --to pem --out-dir bad --password-env";
    fails(
        root,
        &format!("{to_pem} WRONG_PASS --p12 openssl.pfx"),
        "openssl.pfx: wrong password",
    );
    let pfx = std::fs::read(root.join("openssl.pfx")).unwrap();
    std::fs::write(root.join("truncated.pfx"), &pfx[..pfx.len() / 2]).unwrap();
    fails(
        root,
        &format!("{to_pem} P12_PASS --p12 truncated.pfx"),
        "truncated.pfx: not a PKCS#12/PFX file",
    );
    fails(
        root,
        &format!("{to_pem} P12_PASS --p12 leaf.pem"),
        "leaf.pem: is PEM, not PKCS#12",
    );
    sh(root, "openssl x509 -in leaf.pem -outform DER -out leaf.der");
    fails(
        root,
        &format!("{to_pem} P12_PASS --p12 leaf.der"),
        "leaf.der: is a DER certificate",
    );
    sh(root, "openssl genpkey -algorithm RSA -out other.key");
    let to_p12 = "convert --to p12 --out bad/x.p12 --password-env P12_PASS";
    fails(
        root,
        &format!("{to_p12} --cert leaf.pem --key other.key"),
        "other.key: the private key does not match the certificate",
    );
    fails(
        root,
        &format!("{to_p12} --cert leaf.key --key leaf.pem"),
        "leaf.key: holds a private key, not a certificate",
    );
    fails(
        root,
        "convert --to pem --p12 openssl.pfx --out-dir bad",
        "never on the command line",
    );
    fails(
        root,
        "convert --to pem --p12 openssl.pfx --out-dir missing --password-env P12_PASS",
        "--out-dir missing: does not exist",
    );
    assert!(
        files_in(&root.join("bad")).is_empty(),
        "{:?}",
        files_in(&root.join("bad"))
    );
    // DER certificates and PKCS#1 keys are fine as input.
    sh(
        root,
        "openssl pkey -in leaf.key -traditional -out leaf-pkcs1.key",
    );
    let (code, _, err) = ck(
        root,
        "convert --to p12 --cert leaf.der --key leaf-pkcs1.key --out from-der.p12 --password-env P12_PASS --legacy",
    );
    assert_eq!(code, 0, "{err}");
    let info = sh(
        root,
        "openssl pkcs12 -in from-der.p12 -info -noout -passin env:P12_PASS -legacy",
    );
    assert!(
        info.contains("3DES") || info.contains("TripleDES"),
        "{info}"
    );

    // Fingerprints: what openssl prints, for PEM and DER alike; monit's MD5.
    let (code, out, err) = ck(root, "fingerprint leaf.pem");
    assert_eq!(code, 0, "{err}");
    let expected: String = ["-sha256", "-sha1", "-md5"]
        .iter()
        .map(|d| {
            sh(
                root,
                &format!("openssl x509 -in leaf.pem -noout -fingerprint {d}"),
            )
        })
        .collect();
    assert_eq!(out, expected);
    assert_eq!(ck(root, "fingerprint leaf.der").1, expected);
    let md5 = sh(root, "openssl x509 -in leaf.pem -noout -fingerprint -md5");
    let bare = md5.trim().split_once('=').unwrap().1.replace(':', "");
    assert_eq!(
        ck(root, "fingerprint --format monit leaf.pem").1.trim(),
        bare
    );
    let both = ck(root, "fingerprint --format monit leaf.pem leaf.der").1;
    assert_eq!(both, format!("{bare}  leaf.pem\n{bare}  leaf.der\n"));
    fails(
        root,
        "fingerprint openssl.pfx",
        "openssl.pfx: is a PKCS#12/PFX bundle",
    );
}

/// Keys 0600 and directories 0700 whatever the umask certkeeper runs with.
#[test]
fn state_modes_are_exact_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    for umask in [0o000, 0o022, 0o077, 0o777] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let settings = root.join("certkeeper.yaml");
        std::fs::write(
            &settings,
            format!(
                "config_repo: {{url: /nonexistent}}\nstate_dir: {}/state\nacme: {{directory_url: https://ca.test/dir}}\n",
                root.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(support::certkeeper_bin());
        cmd.args([
            "csr",
            "new",
            "--name",
            "u",
            "--cn",
            "u.example.test",
            "--key",
            "ecdsa-p256",
            "--config",
        ])
        .arg(&settings);
        // SAFETY: umask(2) in the child between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "umask {umask:o}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        for dir in [
            "state",
            "state/live",
            "state/archive",
            "state/csr",
            "state/csr/u",
        ] {
            assert_eq!(mode(dir), 0o700, "umask {umask:o}: {dir}");
        }
        assert_eq!(mode("state/csr/u/privkey.pem"), 0o600, "umask {umask:o}");
    }
    // A state dir others can read is refused, naming the fix.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let settings = tmp.path().join("certkeeper.yaml");
    std::fs::write(
        &settings,
        format!(
            "config_repo: {{url: /nonexistent}}\nstate_dir: {}\nacme: {{directory_url: https://ca.test/dir}}\n",
            state.display()
        ),
    )
    .unwrap();
    let (code, _, err) = ck(
        tmp.path(),
        &format!(
            "csr new --name u --cn u.example.test --key ecdsa-p256 --config {}",
            settings.display()
        ),
    );
    assert_ne!(code, 0);
    assert!(err.contains("is open to other users (mode 0755)"), "{err}");
    assert!(!state.join("csr").exists());
}
