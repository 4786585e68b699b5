//! Public keys (PEM or DER SubjectPublicKeyInfo) and signature checks.
//!
//! A [`PublicKey`] verifies a signature over the exact message bytes it is
//! given, under an explicit [`SigAlg`]: the key type never chooses the
//! algorithm on its own except through [`PublicKey::verify`], which applies
//! cosign's convention for key-based signatures.

use std::fmt;

use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::DecodePublicKey;

/// Why a signature (or a key) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The key bytes are not a supported SubjectPublicKeyInfo.
    #[error("unsupported or malformed public key: {0}")]
    BadKey(String),
    /// The signature bytes are not well formed for the algorithm
    /// (bad DER, wrong fixed length).
    #[error("malformed signature")]
    MalformedSignature,
    /// The algorithm does not apply to this kind of key (e.g. PS256 with an
    /// ECDSA key).
    #[error("algorithm {alg:?} does not fit a {key} key")]
    AlgorithmMismatch { alg: SigAlg, key: &'static str },
    /// Well formed, but the signature does not verify over the message.
    #[error("signature does not verify")]
    Invalid,
}

/// A signature algorithm, with the signature encoding it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigAlg {
    /// ECDSA, signature as an ASN.1 DER `SEQUENCE { r, s }` (cosign, X.509).
    EcdsaDer(Hash),
    /// ECDSA, signature as fixed-size big-endian `r || s` (JWS ES256/ES384,
    /// COSE).
    EcdsaFixed(Hash),
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// RSASSA-PSS, MGF1 with the same hash, salt length = `salt` bytes.
    RsaPss { hash: Hash, salt: usize },
    /// Pure Ed25519 (the message is not prehashed).
    Ed25519,
}

impl SigAlg {
    /// RSASSA-PSS with salt length equal to the hash length (JWS PS256/384/512,
    /// COSE PS256/384/512).
    pub fn pss(hash: Hash) -> SigAlg {
        SigAlg::RsaPss {
            hash,
            salt: hash.output_len(),
        }
    }
}

/// A hash function used in a signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The digest of `msg`.
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }
}

/// A public key that can verify signatures.
#[derive(Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.kind(), self.key_id())
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der() == other.spki_der()
    }
}
impl Eq for PublicKey {}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block. Leading and
    /// trailing whitespace is ignored; anything else is refused.
    pub fn from_pem(pem: &str) -> Result<PublicKey, SigError> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| SigError::BadKey(format!("PEM: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(SigError::BadKey(format!(
                "PEM label {label:?}, expected \"PUBLIC KEY\""
            )));
        }
        PublicKey::from_spki_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo: id-ecPublicKey on P-256 or P-384,
    /// id-Ed25519, or rsaEncryption.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, SigError> {
        let info = spki::SubjectPublicKeyInfoRef::try_from(der)
            .map_err(|e| SigError::BadKey(format!("SPKI: {e}")))?;
        let bad = |e: spki::Error| SigError::BadKey(e.to_string());
        match info.algorithm.oid {
            const_oid::db::rfc5912::ID_EC_PUBLIC_KEY => {
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| SigError::BadKey(format!("EC curve: {e}")))?;
                match curve {
                    const_oid::db::rfc5912::SECP_256_R_1 => Ok(PublicKey::P256(
                        p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(bad)?,
                    )),
                    const_oid::db::rfc5912::SECP_384_R_1 => Ok(PublicKey::P384(
                        p384::ecdsa::VerifyingKey::from_public_key_der(der).map_err(bad)?,
                    )),
                    other => Err(SigError::BadKey(format!("unsupported EC curve {other}"))),
                }
            }
            const_oid::db::rfc8410::ID_ED_25519 => Ok(PublicKey::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(bad)?,
            )),
            const_oid::db::rfc5912::RSA_ENCRYPTION => Ok(PublicKey::Rsa(
                rsa::RsaPublicKey::from_public_key_der(der).map_err(bad)?,
            )),
            other => Err(SigError::BadKey(format!(
                "unsupported key algorithm {other}"
            ))),
        }
    }

    /// The key's DER SubjectPublicKeyInfo, re-encoded from the key (the
    /// canonical form, so equal keys give equal bytes).
    pub fn spki_der(&self) -> Vec<u8> {
        use spki::EncodePublicKey;
        let doc = match self {
            PublicKey::P256(k) => k.to_public_key_der(),
            PublicKey::P384(k) => k.to_public_key_der(),
            PublicKey::Ed25519(k) => k.to_public_key_der(),
            PublicKey::Rsa(k) => k.to_public_key_der(),
        };
        // Encoding a key that was decoded cannot fail.
        doc.map(|d| d.into_vec()).unwrap_or_default()
    }

    /// A stable identifier: `sha256:` and the lowercase hex SHA-256 of the
    /// DER SubjectPublicKeyInfo. For a Rekor key this is the log ID.
    pub fn key_id(&self) -> String {
        format!("sha256:{}", hex(&Sha256::digest(self.spki_der())))
    }

    /// `"ECDSA P-256"`, `"ECDSA P-384"`, `"Ed25519"` or `"RSA"`.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "ECDSA P-256",
            PublicKey::P384(_) => "ECDSA P-384",
            PublicKey::Ed25519(_) => "Ed25519",
            PublicKey::Rsa(_) => "RSA",
        }
    }

    /// Verifies a signature as cosign makes it with a key: ECDSA (any
    /// curve) with SHA-256 and a DER signature, RSASSA-PKCS1-v1_5 with
    /// SHA-256, or pure Ed25519. (SHA-256 for P-384 too: cosign's default
    /// for key references; a P-384 key used with SHA-384 is refused.)
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SigError> {
        let alg = match self {
            PublicKey::P256(_) | PublicKey::P384(_) => SigAlg::EcdsaDer(Hash::Sha256),
            PublicKey::Ed25519(_) => SigAlg::Ed25519,
            PublicKey::Rsa(_) => SigAlg::RsaPkcs1(Hash::Sha256),
        };
        self.verify_with(alg, message, signature)
    }

    /// Verifies `signature` over exactly `message` under `alg`.
    pub fn verify_with(
        &self,
        alg: SigAlg,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SigError> {
        use ecdsa::signature::hazmat::PrehashVerifier;
        let mismatch = || SigError::AlgorithmMismatch {
            alg,
            key: self.kind(),
        };
        match (self, alg) {
            (PublicKey::P256(k), SigAlg::EcdsaDer(h) | SigAlg::EcdsaFixed(h)) => {
                let sig = if matches!(alg, SigAlg::EcdsaDer(_)) {
                    p256::ecdsa::Signature::from_der(signature)
                } else {
                    p256::ecdsa::Signature::from_slice(signature)
                }
                .map_err(|_| SigError::MalformedSignature)?;
                k.verify_prehash(&h.digest(message), &sig)
                    .map_err(|_| SigError::Invalid)
            }
            (PublicKey::P384(k), SigAlg::EcdsaDer(h) | SigAlg::EcdsaFixed(h)) => {
                let sig = if matches!(alg, SigAlg::EcdsaDer(_)) {
                    p384::ecdsa::Signature::from_der(signature)
                } else {
                    p384::ecdsa::Signature::from_slice(signature)
                }
                .map_err(|_| SigError::MalformedSignature)?;
                k.verify_prehash(&h.digest(message), &sig)
                    .map_err(|_| SigError::Invalid)
            }
            (PublicKey::Ed25519(k), SigAlg::Ed25519) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| SigError::MalformedSignature)?;
                k.verify_strict(message, &sig)
                    .map_err(|_| SigError::Invalid)
            }
            (PublicKey::Rsa(k), SigAlg::RsaPkcs1(h)) => {
                let scheme = match h {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                k.verify(scheme, &h.digest(message), signature)
                    .map_err(|_| SigError::Invalid)
            }
            (PublicKey::Rsa(k), SigAlg::RsaPss { hash, salt }) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pss::new_with_salt::<Sha256>(salt),
                    Hash::Sha384 => rsa::Pss::new_with_salt::<Sha384>(salt),
                    Hash::Sha512 => rsa::Pss::new_with_salt::<Sha512>(salt),
                };
                k.verify(scheme, &hash.digest(message), signature)
                    .map_err(|_| SigError::Invalid)
            }
            _ => Err(mismatch()),
        }
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `sha256:<hex>` of `bytes`, the OCI digest form.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSIGN_PUB: &str = include_str!("../tests/fixtures/cosign-key/cosign.pub");
    const COSIGN2_PUB: &str = include_str!("../tests/fixtures/cosign-key/cosign2.pub");
    const PAYLOAD: &[u8] = include_bytes!("../tests/fixtures/cosign-key/payload.json");
    const SIG_B64: &str = include_str!("../tests/fixtures/cosign-key/signature.b64");

    fn sig() -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(SIG_B64.trim())
            .unwrap()
    }

    #[test]
    fn p256_der_signature_verifies_and_wrong_key_refuses() {
        let key = PublicKey::from_pem(COSIGN_PUB).unwrap();
        assert_eq!(key.kind(), "ECDSA P-256");
        assert_eq!(key.verify(PAYLOAD, &sig()), Ok(()));
        let other = PublicKey::from_pem(COSIGN2_PUB).unwrap();
        assert_eq!(other.verify(PAYLOAD, &sig()), Err(SigError::Invalid));
        assert_ne!(key.key_id(), other.key_id());
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let key = PublicKey::from_pem(COSIGN_PUB).unwrap();
        assert!(matches!(
            key.verify_with(SigAlg::pss(Hash::Sha256), PAYLOAD, &sig()),
            Err(SigError::AlgorithmMismatch { .. })
        ));
        assert_eq!(
            key.verify_with(SigAlg::EcdsaFixed(Hash::Sha256), PAYLOAD, &sig()),
            Err(SigError::MalformedSignature)
        );
    }

    #[test]
    fn garbage_is_refused_not_panicking() {
        assert!(matches!(
            PublicKey::from_pem("nope"),
            Err(SigError::BadKey(_))
        ));
        let key = PublicKey::from_pem(COSIGN_PUB).unwrap();
        assert_eq!(
            key.verify(PAYLOAD, b"\x30\x02"),
            Err(SigError::MalformedSignature)
        );
    }

    #[test]
    fn key_id_is_sha256_of_the_der() {
        // rekor.pub's key id is the public-good Rekor log ID.
        let rekor = PublicKey::from_pem(include_str!("../tests/fixtures/cosign-keyless/rekor.pub"))
            .unwrap();
        assert_eq!(
            rekor.key_id(),
            "sha256:c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
        );
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn ed25519_rfc8032_test_vector_1() {
        // RFC 8032 section 7.1, TEST 1 (empty message), the key wrapped in an SPKI.
        let spki = unhex("302a300506032b6570032100d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sig = unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        let key = PublicKey::from_spki_der(&spki).unwrap();
        assert_eq!(key.kind(), "Ed25519");
        assert_eq!(key.verify(b"", &sig), Ok(()));
        assert_eq!(key.verify(b"x", &sig), Err(SigError::Invalid));
    }

    /// DERIVED (no upstream vector uses these paths): signatures made here
    /// with the RustCrypto signers, checked through [`PublicKey`] in both
    /// ECDSA encodings and with every RSA scheme.
    #[test]
    fn ecdsa_both_encodings_p256_and_p384() {
        use p256::ecdsa::signature::Signer;
        use spki::EncodePublicKey;
        let msg = b"berth";
        let sk = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let key = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        let h = Hash::Sha256;
        assert_eq!(
            key.verify_with(SigAlg::EcdsaFixed(h), msg, &sig.to_bytes()),
            Ok(())
        );
        assert_eq!(
            key.verify_with(SigAlg::EcdsaDer(h), msg, sig.to_der().as_bytes()),
            Ok(())
        );
        assert_eq!(key.verify(msg, sig.to_der().as_bytes()), Ok(()));
        assert_eq!(
            key.verify_with(SigAlg::EcdsaFixed(Hash::Sha384), msg, &sig.to_bytes()),
            Err(SigError::Invalid)
        );

        let sk = p384::ecdsa::SigningKey::from_bytes(&[9u8; 48].into()).unwrap();
        let sig: p384::ecdsa::Signature = sk.sign(msg); // SHA-384
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let key = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(key.kind(), "ECDSA P-384");
        assert_eq!(
            key.verify_with(SigAlg::EcdsaFixed(Hash::Sha384), msg, &sig.to_bytes()),
            Ok(())
        );
        assert_eq!(
            key.verify_with(SigAlg::EcdsaDer(Hash::Sha384), msg, sig.to_der().as_bytes()),
            Ok(())
        );
        assert_eq!(
            key.verify_with(SigAlg::EcdsaFixed(Hash::Sha256), msg, &sig.to_bytes()),
            Err(SigError::Invalid)
        );
        // An r||s of the wrong curve's size is malformed, not invalid.
        assert_eq!(
            key.verify_with(SigAlg::EcdsaFixed(Hash::Sha384), msg, &[1u8; 64]),
            Err(SigError::MalformedSignature)
        );
    }

    #[test]
    fn rsa_pkcs1_and_pss_with_each_hash() {
        use rand_core::OsRng;
        use spki::EncodePublicKey;
        let sk = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let der = rsa::RsaPublicKey::from(&sk).to_public_key_der().unwrap();
        let key = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(key.kind(), "RSA");
        let msg = b"berth";
        for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let (pkcs1, pss) = match h {
                Hash::Sha256 => (
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    rsa::Pss::new::<Sha256>(),
                ),
                Hash::Sha384 => (
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    rsa::Pss::new::<Sha384>(),
                ),
                Hash::Sha512 => (
                    rsa::Pkcs1v15Sign::new::<Sha512>(),
                    rsa::Pss::new::<Sha512>(),
                ),
            };
            let sig = sk.sign(pkcs1, &h.digest(msg)).unwrap();
            assert_eq!(key.verify_with(SigAlg::RsaPkcs1(h), msg, &sig), Ok(()));
            assert_eq!(
                key.verify_with(SigAlg::RsaPkcs1(h), b"other", &sig),
                Err(SigError::Invalid)
            );
            let sig = sk.sign_with_rng(&mut OsRng, pss, &h.digest(msg)).unwrap();
            assert_eq!(key.verify_with(SigAlg::pss(h), msg, &sig), Ok(()));
            assert_eq!(
                key.verify_with(SigAlg::RsaPkcs1(h), msg, &sig),
                Err(SigError::Invalid)
            );
        }
        // cosign's RSA convention: PKCS#1 v1.5 with SHA-256.
        let sig = sk
            .sign(
                rsa::Pkcs1v15Sign::new::<Sha256>(),
                &Hash::Sha256.digest(msg),
            )
            .unwrap();
        assert_eq!(key.verify(msg, &sig), Ok(()));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_as_key_or_signature_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = PublicKey::from_spki_der(&bytes);
            let key = PublicKey::from_pem(COSIGN_PUB).unwrap();
            proptest::prop_assert!(key.verify(PAYLOAD, &bytes).is_err());
        }
    }
}
