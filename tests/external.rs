//! Certificates from CAs without ACME, the MESH runbook end to end: `csr
//! new` from the config repo's CN template, a CA made with openssl signing
//! the CSR (as the service desk would), `csr import` refusing what does not
//! belong and storing and publishing what does, the Java keystore checked
//! with keytool, the reminder with the command for the next one; then
//! `convert` and `fingerprint` against openssl.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{LocalEnv, PebbleOptions, cert_status};

const P12_PASSWORD: &str = "keystore-Pa55-never-logged";

fn tool(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .env("P12_PASS", P12_PASSWORD)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A root CA and a sub CA made with openssl, as a partner CA would have.
struct Ca {
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        let o = |args: &[&str]| tool(dir, "openssl", args);
        let root_subj = format!("/CN={name} Root CA/O=Test");
        o(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
            "-subj",
            &root_subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        let sub_subj = format!("/CN={name} Sub CA/O=Test");
        o(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "sub.key", "-out", "sub.csr",
            "-subj", &sub_subj,
        ]);
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
        o(&[
            "x509",
            "-req",
            "-in",
            "sub.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-out",
            "sub.pem",
            "-extfile",
            "sub.ext",
        ]);
        Ca {
            dir: dir.to_path_buf(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    fn sub(&self) -> PathBuf {
        self.dir.join("sub.pem")
    }

    /// Signs `csr` with the sub CA for `days`, as the service desk does.
    fn sign(&self, csr: &Path, out: &Path, days: u32) {
        tool(
            &self.dir,
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr.display().to_string(),
                "-CA",
                "sub.pem",
                "-CAkey",
                "sub.key",
                "-CAcreateserial",
                "-days",
                &days.to_string(),
                "-out",
                &out.display().to_string(),
                "-extfile",
                "leaf.ext",
            ],
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

fn args(env: &LocalEnv, words: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
    v.push("--config".into());
    v.push(env.settings_path().display().to_string());
    v
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

#[tokio::test(flavor = "multi_thread")]
async fn csr_new_import_publish_remind_and_renew() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let root = env.root.clone();
    std::fs::write(root.join("p12.pass"), format!("{P12_PASSWORD}\n")).unwrap();
    env.write_settings(&settings(&root));
    env.repo.commit_certificates(CERTS, "mesh-prod: external");
    let ca = Ca::new(&root.join("ca"), "Test Partner");
    let other = Ca::new(&root.join("other-ca"), "Other Partner");

    // 1. csr new: the CN comes from the config's template and vars, the
    //    key stays in the state dir, 0600, and is never printed.
    let out = env
        .certkeeper(args(&env, &["csr", "new", "--name", "mesh-prod"]))
        .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{}",
        out.stdout
    );
    let csr = root.join("mesh.csr");
    std::fs::write(&csr, &out.stdout).unwrap();
    let text = tool(
        &root,
        "openssl",
        &[
            "req", "-in", "mesh.csr", "-noout", "-subject", "-text", "-verify",
        ],
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
    let again = env
        .certkeeper(args(&env, &["csr", "new", "--name", "mesh-prod"]))
        .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, out.stdout);
    assert!(again.stderr.contains("already pending"), "{}", again.stderr);
    // Another subject while one is pending: refused, the key kept.
    let differs = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "new",
                "--name",
                "mesh-prod",
                "--cn",
                "OTHER.RRR01.mesh-client.nhs.uk",
            ],
        ))
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
    let status = env.status();
    let c = cert_status(&status, "mesh-prod");
    assert_eq!(c["state"], "failed", "{c}");
    let todo = c["last_error"].as_str().unwrap();
    assert!(
        todo.contains("waiting for the CA") && todo.contains("csr import --name mesh-prod"),
        "{todo}"
    );
    assert!(
        run.events_named("cert.external.due").len() == 1,
        "{}",
        run.stdout
    );

    // 2. What import refuses; nothing is stored by a refused import.
    // A certificate for another key.
    tool(
        &root,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "stray.key",
            "-out",
            "stray.csr",
            "-subj",
            "/CN=RRR01HC.RRR01.mesh-client.nhs.uk",
        ],
    );
    ca.sign(&root.join("stray.csr"), &root.join("stray.pem"), 365);
    let sub = ca.sub().display().to_string();
    let ca_root = ca.root().display().to_string();
    let refused = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "import",
                "--name",
                "mesh-prod",
                "--cert",
                &root.join("stray.pem").display().to_string(),
                "--chain",
                &sub,
                "--chain",
                &ca_root,
            ],
        ))
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("does not match the key of the pending CSR"),
        "{}",
        refused.stderr
    );
    // Our key, another subject.
    tool(
        &root,
        "openssl",
        &[
            "req",
            "-new",
            "-key",
            &pending_key.display().to_string(),
            "-out",
            "wrong-subject.csr",
            "-subj",
            "/CN=SOMEONE.ELSE.mesh-client.nhs.uk",
        ],
    );
    ca.sign(
        &root.join("wrong-subject.csr"),
        &root.join("wrong-subject.pem"),
        365,
    );
    let refused = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "import",
                "--name",
                "mesh-prod",
                "--cert",
                &root.join("wrong-subject.pem").display().to_string(),
                "--chain",
                &sub,
                "--chain",
                &ca_root,
            ],
        ))
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("differs from the CSR"),
        "{}",
        refused.stderr
    );
    // The right certificate with a chain that ends at another root.
    let signed = root.join("signed.pem");
    ca.sign(&csr, &signed, 365);
    let signed_arg = signed.display().to_string();
    let refused = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "import",
                "--name",
                "mesh-prod",
                "--cert",
                &signed_arg,
                "--chain",
                &sub,
                "--chain",
                &other.root().display().to_string(),
            ],
        ))
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("does not reach a root"),
        "{}",
        refused.stderr
    );
    // No chain at all.
    let refused = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "import",
                "--name",
                "mesh-prod",
                "--cert",
                &signed_arg,
            ],
        ))
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("no chain given"),
        "{}",
        refused.stderr
    );
    assert!(!env.state_dir().join("live/mesh-prod").exists());

    // 3. The right certificate and chain: stored, published, keystore made.
    let imported = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "import",
                "--name",
                "mesh-prod",
                "--cert",
                &signed_arg,
                "--chain",
                &ca_root,
                "--chain",
                &sub,
            ],
        ))
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
    let live_key = String::from_utf8(env.live_file("mesh-prod", "privkey.pem")).unwrap();
    assert_eq!(live_key, key_pem);
    let cert_pem = String::from_utf8(env.live_file("mesh-prod", "cert.pem")).unwrap();
    let chain_pem = String::from_utf8(env.live_file("mesh-prod", "chain.pem")).unwrap();
    assert_eq!(
        chain_pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "sub CA and root"
    );
    for env_name in ["dev", "prod"] {
        let cert = ssm_value(
            &env,
            &format!("/registrations/{env_name}/user-input/mesh/rrr01hc-cert"),
        )
        .await;
        assert_eq!(
            cert.as_deref().map(str::trim),
            Some(cert_pem.trim()),
            "{env_name}"
        );
        let key = ssm_value(
            &env,
            &format!("/registrations/{env_name}/user-input/mesh/rrr01hc-key"),
        )
        .await;
        assert_eq!(
            key.as_deref().map(str::trim),
            Some(key_pem.trim()),
            "{env_name}"
        );
    }
    // The chain verifies with openssl too.
    tool(
        &root,
        "openssl",
        &[
            "verify",
            "-CAfile",
            &ca_root,
            "-untrusted",
            &sub,
            &signed_arg,
        ],
    );
    // The Java keystore: three entries, as the runbook's `keytool -list` check wants.
    let p12 = env.state_dir().join("live/mesh-prod/cert.p12");
    let list = tool(
        &root,
        "keytool",
        &[
            "-list",
            "-storetype",
            "PKCS12",
            "-storepass",
            P12_PASSWORD,
            "-keystore",
            &p12.display().to_string(),
        ],
    );
    assert!(list.contains("3 entries"), "{list}");
    assert!(
        list.contains("meshclient") && list.contains("PrivateKeyEntry"),
        "{list}"
    );
    assert!(list.contains("rootca") && list.contains("subca"), "{list}");
    assert_eq!(list.matches("trustedCertEntry").count(), 2, "{list}");
    let status = env.status();
    let c = cert_status(&status, "mesh-prod");
    assert_eq!(c["state"], "ok", "{c}");
    assert_eq!(c["published"], true, "{c}");
    let status_text = std::fs::read_to_string(env.state_dir().join("status.json")).unwrap();
    assert_no_key_material("status.json", &status_text, &key_pem);

    // Revocation is the CA's business; certkeeper says so.
    let revoke = env.certkeeper(args(&env, &["revoke", "mesh-prod"])).await;
    assert_ne!(revoke.code, 0);
    assert!(
        revoke.stderr.contains("ask that CA to revoke"),
        "{}",
        revoke.stderr
    );
    // Names on the command line follow the config's hostname rules.
    let bad = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "new",
                "--name",
                "adhoc",
                "--cn",
                "bad name!.example.test",
                "--key",
                "rsa-2048",
            ],
        ))
        .await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("cn: \"bad name!.example.test\""),
        "{}",
        bad.stderr
    );
    assert!(!env.state_dir().join("csr/adhoc").exists());

    // A run now: nothing due, published already.
    let run = env.run().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(cert_status(&env.status(), "mesh-prod")["state"], "ok");

    // 4. The next one: a new key and CSR, then a certificate that expires
    //    inside the 30-day reminder window — the status carries the command.
    let out = env
        .certkeeper(args(&env, &["csr", "new", "--name", "mesh-prod"]))
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("New CSR"), "{}", out.stderr);
    let new_key = std::fs::read_to_string(&pending_key).unwrap();
    assert_ne!(new_key, key_pem, "a new request gets a new key");
    let csr2 = root.join("mesh2.csr");
    std::fs::write(&csr2, &out.stdout).unwrap();
    let short = root.join("short.pem");
    ca.sign(&csr2, &short, 20);
    // This time the CA's bundle carries the chain in the same file.
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&short).unwrap(),
        std::fs::read_to_string(ca.sub()).unwrap()
    );
    std::fs::write(&short, bundle).unwrap();
    let imported = env
        .certkeeper(args(
            &env,
            &[
                "csr",
                "import",
                "--name",
                "mesh-prod",
                "--cert",
                &short.display().to_string(),
                "--chain",
                &ca_root,
            ],
        ))
        .await;
    // Imported and published, but due again within 30 days: the status
    // says so, with the command for the next one.
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
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    assert!(
        imported.stderr.contains("due for renewal by hand"),
        "{}",
        imported.stderr
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

fn ck(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::certkeeper_bin())
        .current_dir(dir)
        .args(args)
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
    tool(
        root,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=client.example.test",
        ],
    );
    ca.sign(&root.join("leaf.csr"), &root.join("leaf.pem"), 365);
    let (sub, ca_root) = (
        ca.sub().display().to_string(),
        ca.root().display().to_string(),
    );

    // PEM -> Java keystore: keytool and openssl both read it.
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "keystore",
            "--cert",
            "leaf.pem",
            "--key",
            "leaf.key",
            "--chain",
            &ca_root,
            "--chain",
            &sub,
            "--out",
            "mesh.p12",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("3 entries: meshclient, subca, rootca"),
        "{err}"
    );
    let list = tool(
        root,
        "keytool",
        &[
            "-list",
            "-storetype",
            "PKCS12",
            "-storepass",
            P12_PASSWORD,
            "-keystore",
            "mesh.p12",
        ],
    );
    assert!(list.contains("3 entries"), "{list}");
    let verbose = tool(
        root,
        "keytool",
        &[
            "-list",
            "-v",
            "-storetype",
            "PKCS12",
            "-storepass",
            P12_PASSWORD,
            "-keystore",
            "mesh.p12",
        ],
    );
    assert!(verbose.contains("Certificate chain length: 3"), "{verbose}");
    assert_eq!(list.matches("trustedCertEntry").count(), 2, "{list}");
    let certs = tool(
        root,
        "openssl",
        &[
            "pkcs12",
            "-in",
            "mesh.p12",
            "-nokeys",
            "-passin",
            "env:P12_PASS",
        ],
    );
    assert_eq!(
        certs.matches("BEGIN CERTIFICATE").count(),
        5,
        "the key entry's leaf, sub CA and root, and the two trusted entries: {certs}"
    );
    assert_eq!(
        std::fs::metadata(root.join("mesh.p12"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Existing output: refused without --force.
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "p12",
            "--cert",
            "leaf.pem",
            "--key",
            "leaf.key",
            "--out",
            "mesh.p12",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");

    // PKCS#12 -> PEM, on a file openssl made (AES) and a legacy 3DES one.
    std::fs::write(
        root.join("chain-in.pem"),
        format!(
            "{}{}",
            std::fs::read_to_string(ca.sub()).unwrap(),
            std::fs::read_to_string(ca.root()).unwrap()
        ),
    )
    .unwrap();
    tool(
        root,
        "openssl",
        &[
            "pkcs12",
            "-export",
            "-in",
            "leaf.pem",
            "-inkey",
            "leaf.key",
            "-certfile",
            "chain-in.pem",
            "-out",
            "openssl.pfx",
            "-passout",
            "env:P12_PASS",
        ],
    );
    tool(
        root,
        "openssl",
        &[
            "pkcs12",
            "-export",
            "-in",
            "leaf.pem",
            "-inkey",
            "leaf.key",
            "-certfile",
            "chain-in.pem",
            "-out",
            "legacy.pfx",
            "-passout",
            "env:P12_PASS",
            "-certpbe",
            "PBE-SHA1-3DES",
            "-keypbe",
            "PBE-SHA1-3DES",
            "-macalg",
            "sha1",
        ],
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
            &[
                "convert",
                "--to",
                "pem",
                "--p12",
                pfx,
                "--out-dir",
                out,
                "--password-env",
                "P12_PASS",
            ],
        );
        assert_eq!(code, 0, "{pfx}: {err}");
        assert_eq!(
            files_in(&dir),
            ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        );
        // What `openssl pkcs12 -clcerts -nokeys` gives: the leaf.
        let leaf_fp = tool(
            root,
            "openssl",
            &[
                "x509",
                "-in",
                "leaf.pem",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        let got_fp = tool(
            &dir,
            "openssl",
            &[
                "x509",
                "-in",
                "cert.pem",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        assert_eq!(got_fp, leaf_fp, "{pfx}");
        // The key matches the certificate.
        let key_pub = tool(&dir, "openssl", &["pkey", "-in", "privkey.pem", "-pubout"]);
        let cert_pub = tool(
            &dir,
            "openssl",
            &["x509", "-in", "cert.pem", "-noout", "-pubkey"],
        );
        assert_eq!(key_pub, cert_pub, "{pfx}");
        assert_eq!(
            std::fs::metadata(dir.join("privkey.pem"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // Chain: sub CA first, then root, once each.
        let chain = std::fs::read_to_string(dir.join("chain.pem")).unwrap();
        assert_eq!(
            chain.matches("BEGIN CERTIFICATE").count(),
            2,
            "{pfx}: {chain}"
        );
        tool(
            &dir,
            "openssl",
            &[
                "verify",
                "-CAfile",
                &ca_root,
                "-untrusted",
                "chain.pem",
                "cert.pem",
            ],
        );
    }

    // Bad inputs: clear errors and no output files at all.
    let bad = root.join("bad");
    std::fs::create_dir(&bad).unwrap();
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "pem",
            "--p12",
            "openssl.pfx",
            "--out-dir",
            "bad",
            "--password-env",
            "WRONG_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("openssl.pfx: wrong password"), "{err}");
    let pfx = std::fs::read(root.join("openssl.pfx")).unwrap();
    std::fs::write(root.join("truncated.pfx"), &pfx[..pfx.len() / 2]).unwrap();
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "pem",
            "--p12",
            "truncated.pfx",
            "--out-dir",
            "bad",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("truncated.pfx: not a PKCS#12/PFX file"),
        "{err}"
    );
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "pem",
            "--p12",
            "leaf.pem",
            "--out-dir",
            "bad",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("leaf.pem: is PEM, not PKCS#12"), "{err}");
    tool(
        root,
        "openssl",
        &[
            "x509", "-in", "leaf.pem", "-outform", "DER", "-out", "leaf.der",
        ],
    );
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "pem",
            "--p12",
            "leaf.der",
            "--out-dir",
            "bad",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("leaf.der: is a DER certificate"), "{err}");
    // A key that does not belong to the certificate.
    tool(
        root,
        "openssl",
        &["genpkey", "-algorithm", "RSA", "-out", "other.key"],
    );
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "p12",
            "--cert",
            "leaf.pem",
            "--key",
            "other.key",
            "--out",
            "bad/x.p12",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("other.key: the private key does not match the certificate"),
        "{err}"
    );
    // Certificate and key swapped.
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "p12",
            "--cert",
            "leaf.key",
            "--key",
            "leaf.pem",
            "--out",
            "bad/x.p12",
            "--password-env",
            "P12_PASS",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("leaf.key: holds a private key, not a certificate"),
        "{err}"
    );
    // DER certificate input is fine for --to p12 (and PKCS#1 keys too).
    tool(
        root,
        "openssl",
        &[
            "pkey",
            "-in",
            "leaf.key",
            "-traditional",
            "-out",
            "leaf-pkcs1.key",
        ],
    );
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "p12",
            "--cert",
            "leaf.der",
            "--key",
            "leaf-pkcs1.key",
            "--out",
            "from-der.p12",
            "--password-env",
            "P12_PASS",
            "--legacy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let info = tool(
        root,
        "openssl",
        &[
            "pkcs12",
            "-in",
            "from-der.p12",
            "-info",
            "-noout",
            "-passin",
            "env:P12_PASS",
            "-legacy",
        ],
    );
    assert!(
        info.contains("3DES") || info.contains("TripleDES"),
        "{info}"
    );
    // No password given: refused before anything is read.
    let (code, _, err) = ck(
        root,
        &[
            "convert",
            "--to",
            "pem",
            "--p12",
            "openssl.pfx",
            "--out-dir",
            "bad",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("never on the command line"), "{err}");
    assert!(files_in(&bad).is_empty(), "{:?}", files_in(&bad));

    // Fingerprints: what openssl prints, for PEM and DER alike; monit's MD5.
    let (code, out, err) = ck(root, &["fingerprint", "leaf.pem"]);
    assert_eq!(code, 0, "{err}");
    let expected = ["-sha256", "-sha1", "-md5"]
        .iter()
        .map(|d| {
            tool(
                root,
                "openssl",
                &["x509", "-in", "leaf.pem", "-noout", "-fingerprint", d],
            )
        })
        .collect::<String>();
    assert_eq!(out, expected);
    let (_, der_out, _) = ck(root, &["fingerprint", "leaf.der"]);
    assert_eq!(der_out, expected);
    let (code, monit, _) = ck(root, &["fingerprint", "--format", "monit", "leaf.pem"]);
    assert_eq!(code, 0);
    let md5 = tool(
        root,
        "openssl",
        &["x509", "-in", "leaf.pem", "-noout", "-fingerprint", "-md5"],
    );
    let bare = md5.trim().split_once('=').unwrap().1.replace(':', "");
    assert_eq!(monit.trim(), bare);
    let (_, both, _) = ck(
        root,
        &["fingerprint", "--format", "monit", "leaf.pem", "leaf.der"],
    );
    assert_eq!(both, format!("{bare}  leaf.pem\n{bare}  leaf.der\n"));
    let (code, _, err) = ck(root, &["fingerprint", "openssl.pfx"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("openssl.pfx: is a PKCS#12/PFX bundle"),
        "{err}"
    );
}
