//! Credentials sealed to a client's RSA public key (`certkeeper seal`).
//!
//! The mTLS client runbook: the client makes its own key pair
//! (`openssl genrsa -out private-key.pem 3072`) and sends only the public
//! half; the team sends back the new credentials encrypted to it. The
//! bundle opens with stock tools (tar and openssl; its README says exactly
//! how) and is a tar archive of:
//!
//! - `README.txt`: what it holds, for whom, and the commands;
//! - `aes-key.enc`: a fresh AES-256 key, written as 64 hex digits (what
//!   `openssl enc -K` reads), encrypted to the client's key with RSA-OAEP
//!   (SHA-256, MGF1 with SHA-256);
//! - one `<file>.enc` per credential file: AES-256-CBC with PKCS#7 padding
//!   under that key, each with its own IV (printed in its command);
//! - `SHA256SUMS`: the SHA-256 of every decrypted file, to check them.
//!
//! Nothing here writes a plain private key anywhere: the key bytes go from
//! the caller's buffer straight into the cipher, and every buffer that held
//! them is wiped on drop.

use std::path::{Path, PathBuf};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

/// Smallest RSA key the bundle is sealed to.
pub const MIN_BITS: usize = 2048;

/// The name of the sealed bundle among a set's files (for targets).
pub const BUNDLE: &str = "sealed.tar";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {reason}")]
    Recipient { path: PathBuf, reason: String },
    #[error("sealing failed in the cipher ({0})")]
    Cipher(&'static str),
}

/// The client's public key, checked: RSA of at least `MIN_BITS`.
pub struct Recipient {
    key: aws_lc_rs::rsa::OaepPublicEncryptingKey,
    pub bits: usize,
    /// SHA-256 of the SubjectPublicKeyInfo DER, as
    /// `openssl pkey -pubin -in KEY -outform DER | openssl dgst -sha256` prints it.
    pub sha256: String,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Recipient(RSA {} bits, sha256 {})",
            self.bits, self.sha256
        )
    }
}

const GENRSA: &str = "the client makes one with `openssl genrsa -out private-key.pem 3072` and sends the output of `openssl rsa -in private-key.pem -pubout`";

/// Reads the client's public key: PEM (`PUBLIC KEY`, `RSA PUBLIC KEY`) or
/// DER (SubjectPublicKeyInfo or PKCS#1). Anything else, a key that is not
/// RSA, or one under `MIN_BITS` is refused with what to do instead.
pub fn recipient(path: &Path, bytes: &[u8]) -> Result<Recipient, SealError> {
    let refuse = |reason: String| SealError::Recipient {
        path: path.to_path_buf(),
        reason,
    };
    let text = String::from_utf8_lossy(bytes);
    let spki = if text.contains("-----BEGIN ") {
        let pems: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(bytes)
            .filter_map(Result::ok)
            .collect();
        let Some(pem) = pems.first() else {
            return Err(refuse("no readable PEM block".into()));
        };
        match pem.label.as_str() {
            "PUBLIC KEY" => pem.contents.clone(),
            "RSA PUBLIC KEY" => spki_of_pkcs1(&pem.contents),
            l if l.contains("PRIVATE KEY") => {
                return Err(refuse(format!(
                    "holds a private key ({l}); never take the client's private key: ask for the public key only ({GENRSA})"
                )));
            }
            "CERTIFICATE" => {
                return Err(refuse(format!(
                    "holds a certificate, not a public key; {GENRSA}"
                )));
            }
            other => return Err(refuse(format!("a PEM {other:?} block, not a public key"))),
        }
    } else if x509_parser::x509::SubjectPublicKeyInfo::from_der(bytes).is_ok() {
        bytes.to_vec()
    } else {
        spki_of_pkcs1(bytes)
    };
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
        .map_err(|_| refuse(format!("not a readable public key (PEM or DER); {GENRSA}")))?;
    let oid = info.algorithm.algorithm.to_id_string();
    if oid != "1.2.840.113549.1.1.1" {
        let kind = match oid.as_str() {
            "1.2.840.10045.2.1" => "an EC key",
            "1.3.101.112" | "1.3.101.113" => "an EdDSA key",
            "1.2.840.10040.4.1" => "a DSA key",
            "1.2.840.113549.1.1.10" => "an RSA-PSS key (signing only)",
            _ => "not an RSA key",
        };
        return Err(refuse(format!(
            "{kind} (algorithm {oid}); the bundle is sealed with RSA-OAEP, so it needs an RSA key: {GENRSA}"
        )));
    }
    let bits = match info.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
        _ => return Err(refuse(format!("not a readable RSA public key; {GENRSA}"))),
    };
    if bits < MIN_BITS {
        return Err(refuse(format!(
            "an RSA key of {bits} bits; at least {MIN_BITS} are needed: {GENRSA}"
        )));
    }
    let key = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki)
        .ok()
        .and_then(|k| aws_lc_rs::rsa::OaepPublicEncryptingKey::new(k).ok())
        .ok_or_else(|| refuse(format!("an RSA key the cipher refuses; {GENRSA}")))?;
    Ok(Recipient {
        key,
        bits,
        sha256: crate::x509::sha256_hex(&spki),
    })
}

/// SubjectPublicKeyInfo around a PKCS#1 RSAPublicKey.
fn spki_of_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    use crate::convert::{RSA_ALGORITHM, der_tlv};
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(der_tlv(0x03, &bits));
    der_tlv(0x30, &body)
}

/// One file to seal: its name in the bundle (without `.enc`) and bytes.
pub struct Plain<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// What the README says the bundle is.
pub struct About<'a> {
    /// The certificate's name.
    pub name: &'a str,
    /// Its subject names, not after, serial: one line each.
    pub details: &'a [String],
    pub sealed_at: time::OffsetDateTime,
}

/// The bundle (a tar archive) of `files` sealed to `to`.
pub fn seal(to: &Recipient, about: &About<'_>, files: &[Plain<'_>]) -> Result<Vec<u8>, SealError> {
    use aws_lc_rs::cipher::{AES_256, PaddedBlockEncryptingKey, UnboundCipherKey};
    use aws_lc_rs::rand::SecureRandom;
    let mut key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(key.as_mut())
        .map_err(|_| SealError::Cipher("no random bytes"))?;
    let key_hex = Zeroizing::new(hex(key.as_ref()));
    let mut wrapped = vec![0u8; to.key.ciphertext_size()];
    let wrapped_len = to
        .key
        .encrypt(
            &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
            key_hex.as_bytes(),
            &mut wrapped,
            None,
        )
        .map_err(|_| SealError::Cipher("RSA-OAEP"))?
        .len();
    wrapped.truncate(wrapped_len);

    let mut entries: Vec<(String, Vec<u8>)> = vec![("aes-key.enc".into(), wrapped)];
    let mut commands = Vec::new();
    let mut sums = String::new();
    for file in files {
        let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(
            UnboundCipherKey::new(&AES_256, key.as_ref())
                .map_err(|_| SealError::Cipher("AES key"))?,
        )
        .map_err(|_| SealError::Cipher("AES-256-CBC"))?;
        // Room for the padding up front: no reallocation leaves a plain copy.
        let mut data = Zeroizing::new(Vec::with_capacity(file.bytes.len() + 16));
        data.extend_from_slice(file.bytes);
        let context = cipher
            .encrypt(&mut *data)
            .map_err(|_| SealError::Cipher("AES-256-CBC"))?;
        let iv: &[u8] = (&context)
            .try_into()
            .map_err(|_| SealError::Cipher("no IV"))?;
        commands.push(format!(
            "openssl enc -d -aes-256-cbc -K \"$(cat aes-key.hex)\" -iv {} -in {name}.enc -out {name}",
            hex(iv),
            name = file.name
        ));
        sums.push_str(&format!(
            "{}  {}\n",
            crate::x509::sha256_hex(file.bytes),
            file.name
        ));
        entries.push((format!("{}.enc", file.name), data.to_vec()));
    }
    let readme = readme(to, about, files, &commands);
    let mut all = vec![("README.txt".to_string(), readme.into_bytes())];
    all.extend(entries);
    all.push(("SHA256SUMS".into(), sums.into_bytes()));
    Ok(tar(&all, about.sealed_at))
}

fn readme(to: &Recipient, about: &About<'_>, files: &[Plain<'_>], commands: &[String]) -> String {
    let sealed_at = about
        .sealed_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut out = format!(
        "Credentials for {name}, sealed to your public key\n\
         ================================================\n\n\
         Sealed at {sealed_at} by certkeeper to the RSA public key ({bits} bits) whose\n\
         SHA-256 (of its DER SubjectPublicKeyInfo) is\n  {fp}\n\
         Only the matching private key (private-key.pem, which never left you) opens it.\n\n",
        name = about.name,
        bits = to.bits,
        fp = to.sha256,
    );
    for line in about.details {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("\nFiles, once decrypted:\n");
    for f in files {
        out.push_str(&format!("  {}\n", f.name));
    }
    out.push_str(
        "\nTo open it, in the folder where you unpacked this archive (tar -xf BUNDLE.tar),\n\
         with your private key at private-key.pem, run exactly:\n\n",
    );
    out.push_str(
        "openssl pkeyutl -decrypt -inkey private-key.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in aes-key.enc -out aes-key.hex\n",
    );
    for c in commands {
        out.push_str(c);
        out.push('\n');
    }
    out.push_str("rm aes-key.hex\n");
    out.push_str(
        "\nThen check the files (each line must match SHA256SUMS):\n\n\
         openssl dgst -sha256 -r",
    );
    for f in files {
        out.push(' ');
        out.push_str(f.name);
    }
    out.push_str(
        "\n\nHow it is made: a fresh AES-256 key (the 64 hex digits in aes-key.hex) encrypts\n\
         each file with AES-256-CBC and PKCS#7 padding, each with its own IV (in its\n\
         command above); that key is encrypted to your public key with RSA-OAEP using\n\
         SHA-256 and MGF1 with SHA-256. Keep privkey.pem readable by its service only\n\
         (chmod 600 privkey.pem).\n",
    );
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A POSIX ustar archive of regular files (mode 0600, owner 0), as tar
/// reads it everywhere.
fn tar(files: &[(String, Vec<u8>)], at: time::OffsetDateTime) -> Vec<u8> {
    let mut out = Vec::new();
    let mtime = at.unix_timestamp().max(0) as u64;
    for (name, bytes) in files {
        let mut header = [0u8; 512];
        header[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}", width = field.len() - 1);
            field[..text.len()].copy_from_slice(text.as_bytes());
        };
        octal(&mut header[100..108], 0o600);
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], bytes.len() as u64);
        octal(&mut header[136..148], mtime);
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| *b as u32).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_spki(bits: aws_lc_rs::rsa::KeySize) -> (aws_lc_rs::rsa::PrivateDecryptingKey, Vec<u8>) {
        let private = aws_lc_rs::rsa::PrivateDecryptingKey::generate(bits).unwrap();
        let public = private.public_key();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&public)
                .unwrap()
                .as_ref()
                .to_vec();
        (private, der)
    }

    #[test]
    fn refuses_what_is_not_an_rsa_public_key_of_2048_bits() {
        let path = Path::new("client.pub");
        let ec = rcgen::KeyPair::generate().unwrap();
        let e = recipient(path, ec.public_key_pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("client.pub: an EC key"), "{e}");
        let e = recipient(path, ec.serialize_pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds a private key"), "{e}");
        assert!(!e.contains(&ec.serialize_pem()[40..80]), "{e}");
        let e = recipient(path, b"hello").unwrap_err().to_string();
        assert!(e.contains("not a readable"), "{e}");
    }

    #[test]
    fn pkcs1_and_spki_give_the_same_recipient() {
        let (_, spki) = rsa_spki(aws_lc_rs::rsa::KeySize::Rsa2048);
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let pkcs1 = info.subject_public_key.data.to_vec();
        let a = recipient(Path::new("a"), &spki).unwrap();
        let b = recipient(Path::new("b"), &pkcs1).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.bits, 2048);
        let pem = crate::convert::pem("RSA PUBLIC KEY", &pkcs1);
        assert_eq!(
            recipient(Path::new("c"), pem.as_bytes()).unwrap().sha256,
            a.sha256
        );
    }

    #[test]
    fn sealed_files_open_with_the_private_key() {
        use aws_lc_rs::cipher::{
            AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey,
        };
        let (private, spki) = rsa_spki(aws_lc_rs::rsa::KeySize::Rsa2048);
        let to = recipient(Path::new("k"), &spki).unwrap();
        let about = About {
            name: "mtls-client",
            details: &["names: client.example.test".to_string()],
            sealed_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let secret = b"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";
        let bundle = seal(
            &to,
            &about,
            &[Plain {
                name: "privkey.pem",
                bytes: secret,
            }],
        )
        .unwrap();
        // Unpack the ustar archive by hand.
        let mut files = std::collections::BTreeMap::new();
        let mut at = 0;
        while bundle[at] != 0 {
            let name = String::from_utf8_lossy(&bundle[at..at + 100])
                .trim_end_matches('\0')
                .to_string();
            let size =
                usize::from_str_radix(std::str::from_utf8(&bundle[at + 124..at + 135]).unwrap(), 8)
                    .unwrap();
            files.insert(name, bundle[at + 512..at + 512 + size].to_vec());
            at += 512 + size.div_ceil(512) * 512;
        }
        let names: Vec<&String> = files.keys().collect();
        assert_eq!(
            names,
            ["README.txt", "SHA256SUMS", "aes-key.enc", "privkey.pem.enc"]
        );
        assert!(!bundle.windows(6).any(|w| w == b"secret"));
        let oaep = aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(private).unwrap();
        let mut out = vec![0u8; oaep.min_output_size()];
        let key_hex = oaep
            .decrypt(
                &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                &files["aes-key.enc"],
                &mut out,
                None,
            )
            .unwrap()
            .to_vec();
        let key: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(std::str::from_utf8(&key_hex[2 * i..2 * i + 2]).unwrap(), 16)
                    .unwrap()
            })
            .collect();
        let readme = String::from_utf8(files["README.txt"].clone()).unwrap();
        let iv_hex = readme
            .split("-iv ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let iv: [u8; 16] = (0..16)
            .map(|i| u8::from_str_radix(&iv_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let cipher =
            PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key).unwrap())
                .unwrap();
        let mut data = files["privkey.pem.enc"].clone();
        let plain = cipher
            .decrypt(&mut data, DecryptionContext::Iv128(iv.into()))
            .unwrap();
        assert_eq!(plain, secret);
        assert!(String::from_utf8_lossy(&files["SHA256SUMS"]).ends_with("  privkey.pem\n"));
    }
}
