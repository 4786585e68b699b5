//! Signing, cosign-compatible: key pairs, cosign's encrypted private-key
//! file, the simple-signing payload, the signature and the signature
//! manifest (cosign's `.sig` tag layout, appended to as cosign does, or an
//! OCI 1.1 referrer).
//!
//! Pure like the rest of the crate: randomness comes from the caller's
//! [`CryptoRngCore`], files and registries are the caller's business.
//!
//! # The encrypted private key
//!
//! cosign writes a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY` (before 2.0:
//! `ENCRYPTED COSIGN PRIVATE KEY`, still read) whose body is the JSON of
//! go-securesystemslib's `encrypted` package:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<base64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},
//!  "ciphertext":"<base64>"}
//! ```
//!
//! scrypt of the password with a 32-byte salt gives a 32-byte key; NaCl
//! secretbox (XSalsa20-Poly1305, 24-byte nonce, the 16-byte tag before the
//! ciphertext) seals the PKCS#8 DER of the private key. Base64 is the
//! standard alphabet with padding (Go's `[]byte` in JSON). The parameter
//! sets accepted are go-securesystemslib's: N = 2^15 (its "legacy" set, the
//! only one before it moved the package out of go-tuf), 2^16 ("standard",
//! what `Encrypt` writes now) and 2^17 ("OWASP"), r = 8, p = 1; others are
//! refused before any work is done, as there (a file could otherwise make
//! the reader spend unbounded memory). Keys are written with N = 2^16.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::Signer as _;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spki::EncodePublicKey;
use zeroize::Zeroizing;

use crate::artifact::{Descriptor, COSIGN_SIG_ARTIFACT_TYPE};
use crate::cosign::{ANNOTATION_SIGNATURE, COSIGN_SIGNATURE_TYPE, SIMPLE_SIGNING_MEDIA_TYPE};
use crate::keys::sha256_digest;

/// PEM type cosign ≥ 2.0 writes.
pub const SIGSTORE_PRIVATE_KEY_PEM: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM type older cosign wrote (read, never written).
pub const COSIGN_PRIVATE_KEY_PEM: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// Media type of a signature manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of a signature manifest's config.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// (log2 N, r, p) sets go-securesystemslib accepts; the second is written.
const SCRYPT_PARAMS: [(u8, u32, u32); 3] = [(15, 8, 1), (16, 8, 1), (17, 8, 1)];
const WRITTEN_LOG_N: u8 = 16;

/// Why a private key could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Authentication of the sealed key failed: the password is wrong (or
    /// the ciphertext, nonce or salt was altered; secretbox cannot tell
    /// which).
    #[error("wrong password (or the key file was altered)")]
    WrongPassword,
    /// `kdf.name` is not `scrypt`.
    #[error("unknown key derivation function {0:?} (cosign's is scrypt)")]
    UnknownKdf(String),
    /// `cipher.name` is not `nacl/secretbox`.
    #[error("unknown cipher {0:?} (cosign's is nacl/secretbox)")]
    UnknownCipher(String),
    /// scrypt parameters outside the sets cosign writes.
    #[error("unsupported scrypt parameters N={n} r={r} p={p}")]
    UnsupportedParams { n: u64, r: u64, p: u64 },
    /// Not a PEM block of an encrypted cosign key, bad JSON or base64,
    /// wrong salt or nonce length.
    #[error("malformed private key: {0}")]
    Malformed(String),
    /// Decrypted, but not an ECDSA P-256 PKCS#8 key.
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
}

/// An ECDSA P-256 signing key. Its `Debug` shows the public key only.
#[derive(Clone)]
pub struct SigningKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_key_pem())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn scrypt_key(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    // The parameters are one of SCRYPT_PARAMS, all valid for scrypt.
    let params = scrypt::Params::new(log_n, r, p, KEY_LEN).expect("valid scrypt parameters");
    scrypt::scrypt(password, salt, &params, key.as_mut()).expect("32-byte output");
    key
}

/// Seals `plaintext` under `password` as go-securesystemslib's
/// `encrypted.Encrypt` does: the JSON document (not yet PEM).
pub fn encrypt(plaintext: &[u8], password: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut nonce);
    let (log_n, r, p) = (WRITTEN_LOG_N, 8, 1);
    let key = scrypt_key(password, &salt, log_n, r, p);
    let sealed = XSalsa20Poly1305::new(key.as_ref().into())
        .encrypt(&nonce.into(), plaintext)
        .expect("secretbox encryption of an in-memory buffer");
    let doc = Sealed {
        kdf: Kdf {
            name: KDF_SCRYPT.into(),
            params: ScryptParams {
                n: 1 << log_n,
                r: r.into(),
                p: p.into(),
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_SECRETBOX.into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(sealed),
    };
    serde_json::to_vec(&doc).expect("serializable")
}

/// Opens a document written by [`encrypt`] (or by cosign).
pub fn decrypt(document: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let doc: Sealed = serde_json::from_slice(document)
        .map_err(|e| KeyError::Malformed(format!("encrypted key JSON: {e}")))?;
    if doc.kdf.name != KDF_SCRYPT {
        return Err(KeyError::UnknownKdf(doc.kdf.name));
    }
    if doc.cipher.name != CIPHER_SECRETBOX {
        return Err(KeyError::UnknownCipher(doc.cipher.name));
    }
    let ScryptParams { n, r, p } = doc.kdf.params;
    let (log_n, r, p) = SCRYPT_PARAMS
        .into_iter()
        .find(|&(log_n, pr, pp)| n == 1 << log_n && r == u64::from(pr) && p == u64::from(pp))
        .ok_or(KeyError::UnsupportedParams { n, r, p })?;
    let b64 = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|e| KeyError::Malformed(format!("{what} base64: {e}")))
    };
    let salt = b64("salt", &doc.kdf.salt)?;
    let nonce: [u8; NONCE_LEN] = b64("nonce", &doc.cipher.nonce)?
        .try_into()
        .map_err(|v: Vec<u8>| KeyError::Malformed(format!("nonce of {} bytes, not 24", v.len())))?;
    let ciphertext = b64("ciphertext", &doc.ciphertext)?;
    let key = scrypt_key(password, &salt, log_n, r, p);
    XSalsa20Poly1305::new(key.as_ref().into())
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::WrongPassword)
}

impl SigningKey {
    /// A new random key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> SigningKey {
        SigningKey(p256::ecdsa::SigningKey::random(rng))
    }

    /// The public key as PEM SubjectPublicKeyInfo (`PUBLIC KEY`), as
    /// cosign writes `cosign.pub`.
    pub fn public_key_pem(&self) -> String {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("P-256 public keys encode")
    }

    /// cosign's `cosign.key`: the PKCS#8 key sealed under `password`, in a
    /// PEM block `ENCRYPTED SIGSTORE PRIVATE KEY`.
    pub fn to_encrypted_pem(
        &self,
        password: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Zeroizing<String> {
        let der = self.0.to_pkcs8_der().expect("P-256 private keys encode");
        let document = encrypt(der.as_bytes(), password, rng);
        Zeroizing::new(
            der::pem::encode_string(SIGSTORE_PRIVATE_KEY_PEM, LineEnding::LF, &document)
                .expect("PEM encoding"),
        )
    }

    /// Reads an encrypted cosign key (`ENCRYPTED SIGSTORE PRIVATE KEY` or
    /// `ENCRYPTED COSIGN PRIVATE KEY`).
    pub fn from_encrypted_pem(pem: &str, password: &[u8]) -> Result<SigningKey, KeyError> {
        let (label, document) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::Malformed(format!("PEM: {e}")))?;
        if label != SIGSTORE_PRIVATE_KEY_PEM && label != COSIGN_PRIVATE_KEY_PEM {
            return Err(KeyError::Malformed(format!(
                "PEM block {label:?}, not {SIGSTORE_PRIVATE_KEY_PEM:?}"
            )));
        }
        let der = decrypt(&document, password)?;
        p256::ecdsa::SigningKey::from_pkcs8_der(&der)
            .map(SigningKey)
            .map_err(|e| KeyError::UnsupportedKey(format!("not an ECDSA P-256 PKCS#8 key ({e})")))
    }

    /// ECDSA P-256 with SHA-256 over the exact bytes of `message`, the
    /// signature ASN.1 DER (cosign's encoding). Deterministic (RFC 6979):
    /// the same key and message give the same signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.0.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    critical: Critical<'a>,
    optional: Option<()>,
}

#[derive(Serialize)]
struct Critical<'a> {
    identity: Identity<'a>,
    image: Image<'a>,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Identity<'a> {
    #[serde(rename = "docker-reference")]
    docker_reference: &'a str,
}

#[derive(Serialize)]
struct Image<'a> {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: &'a str,
}

/// cosign's simple-signing payload naming `manifest_digest`, with
/// `docker_reference` the repository as `<registry host>/<repository>`:
/// `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},"type":"cosign container image signature"},"optional":null}`.
pub fn simple_signing_payload(docker_reference: &str, manifest_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity { docker_reference },
            image: Image {
                docker_manifest_digest: manifest_digest,
            },
            kind: COSIGN_SIGNATURE_TYPE,
        },
        optional: None,
    })
    .expect("serializable")
}

/// One signature: the payload (the layer blob) and the DER signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignatureLayer {
    /// Signs `payload` with `key`.
    pub fn new(key: &SigningKey, payload: Vec<u8>) -> SignatureLayer {
        let signature = key.sign(&payload);
        SignatureLayer { payload, signature }
    }

    /// `sha256:…` of the payload.
    pub fn digest(&self) -> String {
        sha256_digest(&self.payload)
    }

    /// The layer descriptor, the base64 signature in its annotation.
    fn descriptor(&self) -> Value {
        serde_json::json!({
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "size": self.payload.len(),
            "digest": self.digest(),
            "annotations": { ANNOTATION_SIGNATURE: B64.encode(&self.signature) },
        })
    }
}

/// Why a signature manifest could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The existing `.sig` manifest is not one to append to (its signatures
    /// would be lost): not JSON, no layer list, a layer without a digest.
    #[error("the existing signature manifest cannot be appended to: {0}")]
    Existing(String),
    /// Not a `sha256:` digest of 64 lowercase hex digits.
    #[error("{0:?} is not a sha256 digest")]
    BadDigest(String),
}

/// Where a signature goes.
#[derive(Debug, Clone, Copy)]
pub enum Layout<'a> {
    /// cosign's tag scheme: the manifest tagged [`signature_tag`] of the
    /// image digest, in the image's repository. `existing` is the manifest
    /// now under that tag, if any: the new layer is appended to its layers.
    Tag { existing: Option<&'a [u8]> },
    /// An OCI 1.1 referrer of `subject` (the signed image's descriptor),
    /// `artifactType` `application/vnd.dev.cosign.artifact.sig.v1+json`,
    /// pushed by digest. One signature per referrer.
    Referrer { subject: &'a Descriptor },
}

/// A signature manifest to push: the blobs first, then the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureManifest {
    /// The manifest bytes (media type [`OCI_MANIFEST_MEDIA_TYPE`]).
    pub manifest: Vec<u8>,
    /// `sha256:…` of `manifest`.
    pub digest: String,
    /// Blobs the manifest names that this signature brings: the config and
    /// the new payload (layers of an existing manifest are already there).
    pub blobs: Vec<(String, Vec<u8>)>,
    /// False when `existing` already held this very signature layer (same
    /// payload, same signature): `manifest` is then `existing` unchanged and
    /// there is nothing to push.
    pub added: bool,
}

/// `sha256-<hex>.sig`, the tag cosign gives the signatures of `digest`.
pub fn signature_tag(digest: &str) -> Result<String, ManifestError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| ManifestError::BadDigest(digest.to_string()))?;
    Ok(format!("sha256-{hex}.sig"))
}

/// cosign's signature image config (go-containerregistry's empty image with
/// the layers appended): zero times, one history entry and one diff ID per
/// layer (the layers are uncompressed, so diff ID = digest).
fn config_for(layer_digests: &[String]) -> Vec<u8> {
    let zero = "0001-01-01T00:00:00Z";
    let history: Vec<Value> = layer_digests
        .iter()
        .map(|_| serde_json::json!({ "created": zero }))
        .collect();
    // Field order as cosign writes it; serde_json's map would sort them.
    format!(
        r#"{{"architecture":"","created":"{zero}","history":{},"os":"","rootfs":{{"type":"layers","diff_ids":{}}},"config":{{}}}}"#,
        Value::from(history),
        serde_json::to_string(layer_digests).expect("strings")
    )
    .into_bytes()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    config: Descriptor,
    layers: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Value>,
}

/// Builds the signature manifest holding `layer` in `layout`.
///
/// Appending keeps every layer of the existing manifest as it was (its
/// descriptor JSON untouched, whatever its media type) and its
/// annotations, adds the new layer last and rebuilds the config for the
/// layers; an identical signature layer already there means nothing to do.
pub fn signature_manifest(
    layer: &SignatureLayer,
    layout: Layout<'_>,
) -> Result<SignatureManifest, ManifestError> {
    let new_layer = layer.descriptor();
    let (mut layers, annotations, subject) = match layout {
        Layout::Tag { existing: None } => (Vec::new(), None, None),
        Layout::Tag {
            existing: Some(bytes),
        } => {
            let existing: Value = serde_json::from_slice(bytes)
                .map_err(|e| ManifestError::Existing(format!("not JSON: {e}")))?;
            let layers = existing
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| ManifestError::Existing("no layers".into()))?
                .clone();
            if layers
                .iter()
                .any(|l| !l.get("digest").is_some_and(Value::is_string))
            {
                return Err(ManifestError::Existing("a layer without a digest".into()));
            }
            if layers.contains(&new_layer) {
                return Ok(SignatureManifest {
                    manifest: bytes.to_vec(),
                    digest: sha256_digest(bytes),
                    blobs: Vec::new(),
                    added: false,
                });
            }
            let annotations = existing.get("annotations").cloned();
            (layers, annotations, None)
        }
        Layout::Referrer { subject } => (Vec::new(), None, Some(subject)),
    };
    layers.push(new_layer);
    let digests: Vec<String> = layers
        .iter()
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect();
    let config = config_for(&digests);
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&ManifestOut {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE,
        artifact_type: subject.map(|_| COSIGN_SIG_ARTIFACT_TYPE),
        config: Descriptor {
            media_type: OCI_CONFIG_MEDIA_TYPE.into(),
            digest: config_digest.clone(),
            size: config.len() as u64,
        },
        layers,
        subject,
        annotations,
    })
    .expect("serializable");
    Ok(SignatureManifest {
        digest: sha256_digest(&manifest),
        manifest,
        blobs: vec![
            (config_digest, config),
            (layer.digest(), layer.payload.clone()),
        ],
        added: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CosignPolicy, TrustPolicy};
    use crate::{verify_manifest, Reason, Signer, Verdict};
    use std::collections::BTreeMap;

    const IMAGE: &str = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00";

    fn subject() -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            digest: IMAGE.into(),
            size: 1234,
        }
    }

    fn trust(keys: &[&SigningKey]) -> crate::Trust {
        TrustPolicy {
            cosign: CosignPolicy {
                keys: keys.iter().map(|k| k.public_key_pem()).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
        .compile()
        .unwrap()
    }

    fn verdict(
        m: &SignatureManifest,
        blobs: &BTreeMap<String, Vec<u8>>,
        t: &crate::Trust,
    ) -> Verdict {
        verify_manifest(
            &m.manifest,
            |d| blobs.get(d).cloned(),
            &subject(),
            "team/app",
            t,
            0,
        )
    }

    fn store(blobs: &mut BTreeMap<String, Vec<u8>>, m: &SignatureManifest) {
        for (d, b) in &m.blobs {
            assert_eq!(&sha256_digest(b), d);
            blobs.insert(d.clone(), b.clone());
        }
    }

    #[test]
    fn encrypted_key_round_trip_and_refusals() {
        let mut rng = rand_core::OsRng;
        let key = SigningKey::generate(&mut rng);
        let pem = key.to_encrypted_pem(b"correct horse", &mut rng);
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = SigningKey::from_encrypted_pem(&pem, b"correct horse").unwrap();
        assert_eq!(back.public_key_pem(), key.public_key_pem());
        assert!(key
            .public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            SigningKey::from_encrypted_pem(&pem, b"wrong horse").unwrap_err(),
            KeyError::WrongPassword
        );

        // The document is go-securesystemslib's, field for field.
        let (_, doc) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(
            v["kdf"]["params"],
            serde_json::json!({"N": 65536, "r": 8, "p": 1})
        );
        assert_eq!(
            B64.decode(v["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(v["cipher"]["name"], "nacl/secretbox");
        assert_eq!(
            B64.decode(v["cipher"]["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            24
        );

        let reseal = |f: &dyn Fn(&mut Value)| {
            let mut v = v.clone();
            f(&mut v);
            let doc = serde_json::to_vec(&v).unwrap();
            let pem =
                der::pem::encode_string(COSIGN_PRIVATE_KEY_PEM, LineEnding::LF, &doc).unwrap();
            SigningKey::from_encrypted_pem(&pem, b"correct horse").map(|k| k.public_key_pem())
        };
        // The older PEM type is read.
        assert_eq!(reseal(&|_| {}).unwrap(), key.public_key_pem());
        // One flipped ciphertext bit: refused, not a different key.
        let tampered = |v: &mut Value| {
            let mut c = B64.decode(v["ciphertext"].as_str().unwrap()).unwrap();
            c[20] ^= 1;
            v["ciphertext"] = B64.encode(c).into();
        };
        assert_eq!(reseal(&tampered).unwrap_err(), KeyError::WrongPassword);
        assert_eq!(
            reseal(&|v| v["kdf"]["name"] = "argon2".into()).unwrap_err(),
            KeyError::UnknownKdf("argon2".into())
        );
        assert_eq!(
            reseal(&|v| v["cipher"]["name"] = "aes-gcm".into()).unwrap_err(),
            KeyError::UnknownCipher("aes-gcm".into())
        );
        assert_eq!(
            reseal(&|v| v["kdf"]["params"]["N"] = (1u64 << 30).into()).unwrap_err(),
            KeyError::UnsupportedParams {
                n: 1 << 30,
                r: 8,
                p: 1
            }
        );
        assert!(matches!(
            reseal(&|v| v["cipher"]["nonce"] = B64.encode([0u8; 12]).into()),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            reseal(&|v| v["ciphertext"] = "not base64!".into()),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            SigningKey::from_encrypted_pem(&key.public_key_pem(), b""),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            SigningKey::from_encrypted_pem("garbage", b""),
            Err(KeyError::Malformed(_))
        ));
        // Sealed, but not a key.
        let doc = encrypt(b"hello", b"pw", &mut rng);
        let pem = der::pem::encode_string(SIGSTORE_PRIVATE_KEY_PEM, LineEnding::LF, &doc).unwrap();
        assert!(matches!(
            SigningKey::from_encrypted_pem(&pem, b"pw"),
            Err(KeyError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn payload_is_cosigns_simple_signing() {
        let p = simple_signing_payload("127.0.0.1:5000/team/app", IMAGE);
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/team/app"}},"image":{{"docker-manifest-digest":"{IMAGE}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let parsed = crate::cosign::SimpleSigning::parse(&p).unwrap();
        assert_eq!(parsed.manifest_digest, IMAGE);
    }

    #[test]
    fn tag_layout_verifies_and_appends() {
        let mut rng = rand_core::OsRng;
        let (a, b, other) = (
            SigningKey::generate(&mut rng),
            SigningKey::generate(&mut rng),
            SigningKey::generate(&mut rng),
        );
        let payload = simple_signing_payload("registry.test/team/app", IMAGE);
        let mut blobs = BTreeMap::new();

        let first = signature_manifest(
            &SignatureLayer::new(&a, payload.clone()),
            Layout::Tag { existing: None },
        )
        .unwrap();
        assert!(first.added);
        assert_eq!(first.digest, sha256_digest(&first.manifest));
        store(&mut blobs, &first);
        match verdict(&first, &blobs, &trust(&[&a])) {
            Verdict::Valid(v) => assert!(matches!(v.signer, Signer::Key { .. })),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            verdict(&first, &blobs, &trust(&[&other])),
            Verdict::Invalid {
                reason: Reason::SignatureInvalid,
                ..
            }
        ));
        let m: Value = serde_json::from_slice(&first.manifest).unwrap();
        assert_eq!(m["mediaType"], OCI_MANIFEST_MEDIA_TYPE);
        assert_eq!(m["config"]["mediaType"], OCI_CONFIG_MEDIA_TYPE);
        assert!(m.get("subject").is_none() && m.get("artifactType").is_none());
        // The same config bytes as cosign's for one layer (the fixture was
        // taken from a cosign-made signature image).
        let fixture = include_bytes!("../tests/fixtures/cosign-key/DERIVED-sig-config.json");
        let fixture_layer =
            "sha256:cf482371b51a7633b3f02e29b87fc3f4a18b3f127af61cb114af5f2c04fcdd75";
        assert_eq!(
            config_for(&[fixture_layer.to_string()]),
            String::from_utf8_lossy(fixture).trim().as_bytes()
        );

        // Signing again with another key appends; both verify.
        let second = signature_manifest(
            &SignatureLayer::new(&b, payload.clone()),
            Layout::Tag {
                existing: Some(&first.manifest),
            },
        )
        .unwrap();
        assert!(second.added);
        store(&mut blobs, &second);
        let m: Value = serde_json::from_slice(&second.manifest).unwrap();
        assert_eq!(m["layers"].as_array().unwrap().len(), 2);
        let first_layers: Value =
            serde_json::from_slice::<Value>(&first.manifest).unwrap()["layers"].clone();
        assert_eq!(m["layers"][0], first_layers[0]);
        let config: Value =
            serde_json::from_slice(&blobs[m["config"]["digest"].as_str().unwrap()]).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        for k in [&a, &b] {
            assert!(matches!(
                verdict(&second, &blobs, &trust(&[k])),
                Verdict::Valid(_)
            ));
        }
        // The same signature again: nothing to do.
        let again = signature_manifest(
            &SignatureLayer::new(&a, payload),
            Layout::Tag {
                existing: Some(&second.manifest),
            },
        )
        .unwrap();
        assert!(!again.added);
        assert_eq!(again.manifest, second.manifest);
        assert!(again.blobs.is_empty());

        // A manifest whose signatures would be lost is refused.
        for bad in [
            &b"not json"[..],
            br#"{"schemaVersion":2}"#,
            br#"{"layers":[{"size":1}]}"#,
        ] {
            assert!(matches!(
                signature_manifest(
                    &SignatureLayer::new(&a, b"x".to_vec()),
                    Layout::Tag {
                        existing: Some(bad)
                    }
                ),
                Err(ManifestError::Existing(_))
            ));
        }
    }

    #[test]
    fn referrer_layout_verifies() {
        let mut rng = rand_core::OsRng;
        let key = SigningKey::generate(&mut rng);
        let layer = SignatureLayer::new(&key, simple_signing_payload("r/team/app", IMAGE));
        let s = subject();
        let m = signature_manifest(&layer, Layout::Referrer { subject: &s }).unwrap();
        let mut blobs = BTreeMap::new();
        store(&mut blobs, &m);
        let v: Value = serde_json::from_slice(&m.manifest).unwrap();
        assert_eq!(v["artifactType"], COSIGN_SIG_ARTIFACT_TYPE);
        assert_eq!(v["subject"]["digest"], IMAGE);
        assert!(matches!(
            verdict(&m, &blobs, &trust(&[&key])),
            Verdict::Valid(_)
        ));
        // A referrer of another image is refused by the verifier.
        let elsewhere = Descriptor {
            digest: format!("sha256:{}", "0".repeat(64)),
            ..s.clone()
        };
        let m = signature_manifest(
            &layer,
            Layout::Referrer {
                subject: &elsewhere,
            },
        )
        .unwrap();
        assert!(matches!(
            verdict(&m, &blobs, &trust(&[&key])),
            Verdict::Invalid {
                reason: Reason::SubjectMismatch { .. },
                ..
            }
        ));
    }

    #[test]
    fn signature_tags() {
        assert_eq!(
            signature_tag(IMAGE).unwrap(),
            "sha256-634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00.sig"
        );
        for bad in ["sha256:abc", "sha512:00", &IMAGE.to_uppercase(), "latest"] {
            assert!(signature_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_are_der_and_deterministic() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let s = key.sign(b"message");
        assert_eq!(s, key.sign(b"message"));
        assert_eq!(s[0], 0x30, "an ASN.1 SEQUENCE");
        let public = crate::PublicKey::from_pem(&key.public_key_pem()).unwrap();
        assert!(public.verify(b"message", &s).is_ok());
        assert!(public.verify(b"messagf", &s).is_err());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
