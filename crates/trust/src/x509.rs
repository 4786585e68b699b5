//! X.509 certificates as far as signature verification needs them: chain
//! building to configured roots at a given time, signature checks, EKU,
//! key usage, SAN identities, Fulcio's OIDC issuer extensions and subject
//! RDNs.

use const_oid::db::{rfc4519, rfc5280, rfc5912, rfc8410};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::ext::pkix::{
    name::GeneralName, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName,
};
use x509_cert::Certificate;

use crate::keys::{hex, Hash, PublicKey, SigAlg};
use crate::Reason;

/// Fulcio's legacy OIDC issuer extension: the raw issuer string as the
/// extension value (not DER).
pub const OID_FULCIO_ISSUER_V1: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's OIDC issuer extension: a DER UTF8String.
pub const OID_FULCIO_ISSUER_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// Longest chain followed from a leaf to a root.
const MAX_DEPTH: usize = 8;

/// A parsed certificate with its exact DER and public key.
#[derive(Clone, Debug)]
pub struct Cert {
    der: Vec<u8>,
    cert: Certificate,
    key: PublicKey,
}

impl PartialEq for Cert {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

fn malformed(e: impl std::fmt::Display) -> Reason {
    Reason::Malformed(format!("certificate: {e}"))
}

impl Cert {
    /// Parses one DER certificate. Encodings that are not strict DER (the
    /// bytes do not re-encode to themselves) are refused, so that the TBS
    /// bytes checked are exactly the ones signed.
    pub fn from_der(der: &[u8]) -> Result<Cert, Reason> {
        let cert = Certificate::from_der(der).map_err(malformed)?;
        if cert.to_der().map_err(malformed)? != der {
            return Err(malformed("not DER"));
        }
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(malformed)?;
        let key = PublicKey::from_spki_der(&spki)
            .map_err(|e| Reason::UnsupportedAlgorithm(e.to_string()))?;
        Ok(Cert {
            der: der.to_vec(),
            cert,
            key,
        })
    }

    /// Parses every `CERTIFICATE` block of a PEM text, in order. An empty
    /// text gives an empty list.
    pub fn from_pem_chain(pem: &str) -> Result<Vec<Cert>, Reason> {
        let mut out = Vec::new();
        let mut rest = pem;
        const END: &str = "-----END CERTIFICATE-----";
        while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
            let end = rest[start..]
                .find(END)
                .ok_or_else(|| malformed("unterminated PEM"))?
                + start
                + END.len();
            let (label, der) =
                der::pem::decode_vec(&rest.as_bytes()[start..end]).map_err(malformed)?;
            if label != "CERTIFICATE" {
                return Err(malformed("PEM label"));
            }
            out.push(Cert::from_der(&der)?);
            rest = &rest[end..];
        }
        if !rest.trim().is_empty() && out.is_empty() {
            return Err(malformed("no PEM CERTIFICATE block"));
        }
        Ok(out)
    }

    /// The exact DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// Lowercase hex SHA-256 of the DER (the certificate thumbprint).
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.der))
    }

    /// The subject in RFC 4514 form (most significant RDN last, as
    /// x509-cert prints it: `CN=alpine,O=Notary,...`).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// The subject's attributes as `(short name, value)` in certificate
    /// order (`C`, `ST`, `L`, `O`, `OU`, `CN`, ... ; other types by OID).
    /// Values that are not strings are left out.
    pub fn subject_attributes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for rdn in self.cert.tbs_certificate.subject.0.iter() {
            for atv in rdn.0.iter() {
                let name = match atv.oid {
                    o if o == rfc4519::COMMON_NAME => "CN".to_string(),
                    o if o == rfc4519::COUNTRY_NAME => "C".to_string(),
                    o if o == rfc4519::ST => "ST".to_string(),
                    o if o == rfc4519::LOCALITY_NAME => "L".to_string(),
                    o if o == rfc4519::ORGANIZATION_NAME => "O".to_string(),
                    o if o == rfc4519::ORGANIZATIONAL_UNIT_NAME => "OU".to_string(),
                    o => o.to_string(),
                };
                use der::{Tag, Tagged};
                let is_string = matches!(
                    atv.value.tag(),
                    Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString
                );
                if let (true, Ok(v)) = (is_string, std::str::from_utf8(atv.value.value())) {
                    out.push((name, v.to_string()));
                }
            }
        }
        out
    }

    /// `notBefore` and `notAfter` in unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        let v = &self.cert.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs() as i64,
            v.not_after.to_unix_duration().as_secs() as i64,
        )
    }

    /// Ok if `at` (unix seconds) lies within the validity period, inclusive.
    pub fn check_valid_at(&self, at: i64) -> Result<(), Reason> {
        let (not_before, not_after) = self.validity();
        if at < not_before {
            return Err(Reason::CertificateNotYetValid {
                subject: self.subject(),
                not_before,
                at,
            });
        }
        if at > not_after {
            return Err(Reason::CertificateExpired {
                subject: self.subject(),
                not_after,
                at,
            });
        }
        Ok(())
    }

    /// The value of extension `oid`, if present.
    pub fn extension(&self, oid: ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// The extended key usages, `None` without the extension (or if it is
    /// malformed: callers treat that as "not code signing").
    pub fn extended_key_usage(&self) -> Option<Vec<ObjectIdentifier>> {
        let v = self.extension(rfc5280::ID_CE_EXT_KEY_USAGE)?;
        ExtendedKeyUsage::from_der(v).ok().map(|e| e.0)
    }

    /// True if the EKU extension is present and lists id-kp-codeSigning.
    pub fn has_code_signing_eku(&self) -> bool {
        self.extended_key_usage()
            .is_some_and(|e| e.contains(&rfc5280::ID_KP_CODE_SIGNING))
    }

    /// The key usage extension, `None` if absent or malformed.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        KeyUsage::from_der(self.extension(rfc5280::ID_CE_KEY_USAGE)?).ok()
    }

    /// True if basicConstraints says `cA: TRUE`.
    pub fn is_ca(&self) -> bool {
        self.extension(rfc5280::ID_CE_BASIC_CONSTRAINTS)
            .and_then(|v| BasicConstraints::from_der(v).ok())
            .is_some_and(|b| b.ca)
    }

    /// The first rfc822Name (email) or URI subject alternative name.
    pub fn san_identity(&self) -> Option<String> {
        let san =
            SubjectAltName::from_der(self.extension(rfc5280::ID_CE_SUBJECT_ALT_NAME)?).ok()?;
        san.0.iter().find_map(|n| match n {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
            _ => None,
        })
    }

    /// Fulcio's OIDC issuer: extension 1.3.6.1.4.1.57264.1.8 (DER
    /// UTF8String) if present, else the legacy 1.3.6.1.4.1.57264.1.1 (raw
    /// string).
    pub fn fulcio_issuer(&self) -> Option<String> {
        if let Some(v) = self.extension(OID_FULCIO_ISSUER_V2) {
            return der::asn1::Utf8StringRef::from_der(v)
                .ok()
                .map(|s| s.to_string());
        }
        let v = self.extension(OID_FULCIO_ISSUER_V1)?;
        std::str::from_utf8(v).ok().map(str::to_string)
    }

    /// True if `issuer`'s subject is this certificate's issuer name and
    /// `issuer`'s key verifies this certificate's signature.
    pub fn is_issued_by(&self, issuer: &Cert) -> bool {
        if self.cert.tbs_certificate.issuer != issuer.cert.tbs_certificate.subject {
            return false;
        }
        let Ok(alg) = cert_sig_alg(&self.cert.signature_algorithm) else {
            return false;
        };
        let Ok(tbs) = self.cert.tbs_certificate.to_der() else {
            return false;
        };
        let Some(sig) = self.cert.signature.as_bytes() else {
            return false;
        };
        issuer.key.verify_with(alg, &tbs, sig).is_ok()
    }
}

/// The signature algorithm of a certificate signature.
fn cert_sig_alg(alg: &spki::AlgorithmIdentifierOwned) -> Result<SigAlg, Reason> {
    const ECDSA_SHA256: ObjectIdentifier = rfc5912::ECDSA_WITH_SHA_256;
    const ECDSA_SHA384: ObjectIdentifier = rfc5912::ECDSA_WITH_SHA_384;
    const ECDSA_SHA512: ObjectIdentifier = rfc5912::ECDSA_WITH_SHA_512;
    Ok(match alg.oid {
        ECDSA_SHA256 => SigAlg::EcdsaDer(Hash::Sha256),
        ECDSA_SHA384 => SigAlg::EcdsaDer(Hash::Sha384),
        ECDSA_SHA512 => SigAlg::EcdsaDer(Hash::Sha512),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => SigAlg::RsaPkcs1(Hash::Sha256),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => SigAlg::RsaPkcs1(Hash::Sha384),
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => SigAlg::RsaPkcs1(Hash::Sha512),
        rfc8410::ID_ED_25519 => SigAlg::Ed25519,
        rfc5912::ID_RSASSA_PSS => {
            let params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| malformed("RSASSA-PSS without parameters"))?;
            let p: rsa::pkcs1::RsaPssParams = params.decode_as().map_err(malformed)?;
            let hash = match p.hash.oid {
                rfc5912::ID_SHA_256 => Hash::Sha256,
                rfc5912::ID_SHA_384 => Hash::Sha384,
                rfc5912::ID_SHA_512 => Hash::Sha512,
                o => return Err(Reason::UnsupportedAlgorithm(format!("PSS hash {o}"))),
            };
            SigAlg::RsaPss {
                hash,
                salt: p.salt_len as usize,
            }
        }
        o => {
            return Err(Reason::UnsupportedAlgorithm(format!(
                "certificate signature {o}"
            )))
        }
    })
}

/// Checks that `leaf` chains to one of `roots` through `intermediates`,
/// every certificate on the path being valid at `at` (unix seconds). A
/// certificate byte-identical to a root is trusted as it is (a self-signed
/// leaf in a trust store); every issuer on the path must be a CA
/// (basicConstraints `cA`).
///
/// Errors: [`Reason::CertificateExpired`] / [`Reason::CertificateNotYetValid`]
/// for the first certificate on the path out of its validity at `at`,
/// [`Reason::ChainUntrusted`] if no path reaches a root.
pub fn verify_chain(
    leaf: &Cert,
    intermediates: &[Cert],
    roots: &[Cert],
    at: i64,
) -> Result<(), Reason> {
    verify_path(leaf, intermediates, roots, Some(at))
}

/// [`verify_chain`], with validity in time checked only if `at` is given.
pub fn verify_path(
    leaf: &Cert,
    intermediates: &[Cert],
    roots: &[Cert],
    at: Option<i64>,
) -> Result<(), Reason> {
    let mut cur = leaf;
    for _ in 0..MAX_DEPTH {
        if let Some(at) = at {
            cur.check_valid_at(at)?;
        }
        if roots.contains(cur) {
            return Ok(());
        }
        let issuer = roots
            .iter()
            .chain(intermediates)
            .find(|c| *c != cur && c.is_ca() && cur.is_issued_by(c));
        match issuer {
            Some(c) => cur = c,
            None => return Err(Reason::ChainUntrusted),
        }
    }
    Err(Reason::ChainUntrusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAF: &str = include_str!("../tests/fixtures/cosign-keyless/certificate.pem");
    const CHAIN: &str = include_str!("../tests/fixtures/cosign-keyless/chain.pem");
    const ROOT: &str = include_str!("../tests/fixtures/cosign-keyless/fulcio_v1.crt.pem");
    const NOTATION: &str = include_str!("../tests/fixtures/notation/signer-cert.pem");
    /// 2023-01-20 20:51:33 UTC, the Rekor integrated time of the leaf's signature.
    const AT: i64 = 1674247893;

    fn one(pem: &str) -> Cert {
        Cert::from_pem_chain(pem).unwrap().remove(0)
    }

    #[test]
    fn fulcio_leaf_chains_to_the_root_at_integrated_time() {
        let leaf = one(LEAF);
        let chain = Cert::from_pem_chain(CHAIN).unwrap();
        let roots = Cert::from_pem_chain(ROOT).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(verify_chain(&leaf, &chain, &roots, AT), Ok(()));
        // Without the intermediate there is no path.
        assert_eq!(
            verify_chain(&leaf, &[], &roots, AT),
            Err(Reason::ChainUntrusted)
        );
        // The leaf lived ten minutes.
        assert!(matches!(
            verify_chain(&leaf, &chain, &roots, AT + 3600),
            Err(Reason::CertificateExpired { .. })
        ));
        assert!(matches!(
            verify_chain(&leaf, &chain, &roots, AT - 3600),
            Err(Reason::CertificateNotYetValid { .. })
        ));
    }

    #[test]
    fn fulcio_leaf_identity() {
        let leaf = one(LEAF);
        assert_eq!(leaf.san_identity().as_deref(), Some("mitr@redhat.com"));
        assert_eq!(
            leaf.fulcio_issuer().as_deref(),
            Some("https://github.com/login/oauth")
        );
        assert!(leaf.has_code_signing_eku());
        assert!(!leaf.is_ca());
        assert!(one(ROOT).is_ca());
    }

    #[test]
    fn notation_self_signed_cert() {
        let c = one(NOTATION);
        assert_eq!(
            c.sha256(),
            "9f5f5aecee24b5cfdc7a91f6d5ac5c3a5348feb17c934d403f59ac251549ea0d"
        );
        assert!(c.is_issued_by(&c));
        let attrs = c.subject_attributes();
        assert!(attrs.contains(&("CN".into(), "alpine".into())));
        assert!(attrs.contains(&("C".into(), "US".into())));
        assert_eq!(verify_chain(&c, &[], std::slice::from_ref(&c), AT), Ok(()));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            Cert::from_der(b"\x30\x03\x02\x01\x00"),
            Err(Reason::Malformed(_))
        ));
        assert!(matches!(
            Cert::from_pem_chain("junk"),
            Err(Reason::Malformed(_))
        ));
    }
}
