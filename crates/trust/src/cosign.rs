//! cosign signatures: the simple-signing payload, key-based verification
//! and keyless (Fulcio certificate + Rekor bundle) verification.
//!
//! A cosign signature is an ECDSA (or RSA, Ed25519) signature over the exact
//! bytes of a "simple signing" JSON payload that names the signed image by
//! manifest digest. The bytes are verified as stored, never re-serialised.

use serde::Deserialize;

use crate::keys::PublicKey;
use crate::policy::{CompiledRule, CosignTrust};
use crate::rekor::{Bundle, EntryKey};
use crate::x509::{verify_chain, Cert};
use crate::{Reason, SignedAt, Signer, Valid};

/// Media type of the simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of a cosign image signature payload.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// Layer annotation: base64 of the signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation: PEM Fulcio leaf certificate (keyless).
pub const ANNOTATION_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation: PEM intermediates (and usually the root).
pub const ANNOTATION_CHAIN: &str = "dev.sigstore.cosign/chain";
/// Layer annotation: the Rekor bundle JSON (SignedEntryTimestamp + Payload).
pub const ANNOTATION_BUNDLE: &str = "dev.sigstore.cosign/bundle";

/// A parsed simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    /// `critical.identity.docker-reference`: the reference the signer named.
    /// Informational: cosign does not enforce it, nor does this crate.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`, exactly as stated.
    pub manifest_digest: String,
    /// `optional`: any JSON (annotations given at signing), `Null` if absent.
    pub optional: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload {
    critical: RawCritical,
    #[serde(default)]
    optional: serde_json::Value,
}

#[derive(Deserialize)]
struct RawCritical {
    identity: RawIdentity,
    image: RawImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct RawIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl SimpleSigning {
    /// Parses payload bytes. Refuses (as [`Reason::MalformedPayload`]) JSON
    /// that lacks a critical field, has duplicate fields, or whose
    /// `critical.type` is not `cosign container image signature`.
    pub fn parse(bytes: &[u8]) -> Result<SimpleSigning, Reason> {
        let raw: RawPayload = serde_json::from_slice(bytes)
            .map_err(|e| Reason::MalformedPayload(format!("simple signing: {e}")))?;
        if raw.critical.kind != COSIGN_SIGNATURE_TYPE {
            return Err(Reason::MalformedPayload(format!(
                "critical.type is {:?}, not {COSIGN_SIGNATURE_TYPE:?}",
                raw.critical.kind
            )));
        }
        Ok(SimpleSigning {
            docker_reference: raw.critical.identity.docker_reference,
            manifest_digest: raw.critical.image.docker_manifest_digest,
            optional: raw.optional,
        })
    }
}

/// One cosign signature: the payload bytes and what the layer annotations
/// carry. Built from a signature manifest by
/// [`SignatureArtifact::from_manifest`](crate::SignatureArtifact::from_manifest),
/// or directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignSignature {
    /// The exact payload bytes (the layer blob).
    pub payload: Vec<u8>,
    /// The raw signature (decoded from the base64 annotation).
    pub signature: Vec<u8>,
    /// PEM Fulcio leaf certificate: present for keyless signatures.
    pub certificate: Option<String>,
    /// PEM chain (intermediates, possibly the root).
    pub chain: Option<String>,
    /// The Rekor bundle JSON, as stored in the annotation.
    pub bundle: Option<String>,
}

impl CosignSignature {
    /// Builds a signature from the annotation values of a layer: the base64
    /// signature is decoded here.
    pub fn from_annotations(
        payload: Vec<u8>,
        signature_b64: &str,
        certificate: Option<String>,
        chain: Option<String>,
        bundle: Option<String>,
    ) -> Result<CosignSignature, Reason> {
        use base64::Engine;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|e| Reason::Malformed(format!("signature base64: {e}")))?;
        Ok(CosignSignature {
            payload,
            signature,
            certificate: certificate.filter(|c| !c.trim().is_empty()),
            chain: chain.filter(|c| !c.trim().is_empty()),
            bundle: bundle.filter(|b| !b.trim().is_empty()),
        })
    }

    /// Verifies this signature for the image whose manifest digest is
    /// `subject_digest`: key-based if it carries no certificate, keyless
    /// otherwise.
    ///
    /// Key-based: the signature must verify over the payload bytes with one
    /// of the trusted keys; if it carries a bundle and Rekor keys are
    /// configured, the bundle must verify too (and gives the time); a
    /// missing bundle is refused only if `require_rekor` is set.
    ///
    /// Keyless: the signature must verify with the leaf's key; the bundle is
    /// required and must verify with a configured Rekor key and describe this
    /// signature, payload and certificate; the leaf must chain to a Fulcio
    /// root through the chain annotation with every certificate valid at the
    /// Rekor integrated time, carry the code-signing EKU, and its identity and
    /// OIDC issuer must match an identity rule.
    ///
    /// Either way the payload's `docker-manifest-digest` must equal
    /// `subject_digest` exactly.
    pub fn verify(&self, subject_digest: &str, trust: &CosignTrust) -> Result<Valid, Reason> {
        let payload = SimpleSigning::parse(&self.payload)?;
        match &self.certificate {
            None => self.verify_key(&payload, subject_digest, trust),
            Some(pem) => self.verify_keyless(pem, &payload, subject_digest, trust),
        }
    }

    fn verify_key(
        &self,
        payload: &SimpleSigning,
        subject_digest: &str,
        trust: &CosignTrust,
    ) -> Result<Valid, Reason> {
        if trust.keys.is_empty() {
            return Err(Reason::NotConfigured("cosign public keys".into()));
        }
        let key = trust
            .keys
            .iter()
            .find(|k| k.verify(&self.payload, &self.signature).is_ok())
            .ok_or(Reason::SignatureInvalid)?;
        check_digest(payload, subject_digest)?;
        let signed_at = match (&self.bundle, trust.rekor_keys.is_empty()) {
            (Some(b), false) => Some(self.check_bundle(b, EntryKey::Key(key), trust)?),
            (None, _) if trust.require_rekor => return Err(Reason::BundleMissing),
            _ => None,
        };
        Ok(Valid {
            signer: Signer::Key {
                key_id: key.key_id(),
            },
            signed_at: signed_at.map(SignedAt::RekorIntegrated),
            logged: Vec::new(),
        })
    }

    fn verify_keyless(
        &self,
        cert_pem: &str,
        payload: &SimpleSigning,
        subject_digest: &str,
        trust: &CosignTrust,
    ) -> Result<Valid, Reason> {
        if trust.fulcio_roots.is_empty() {
            return Err(Reason::NotConfigured("Fulcio roots".into()));
        }
        let leaf = Cert::from_pem_chain(cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| Reason::Malformed("empty certificate annotation".into()))?;
        let chain = match &self.chain {
            Some(pem) => Cert::from_pem_chain(pem)?,
            None => Vec::new(),
        };
        leaf.public_key()
            .verify(&self.payload, &self.signature)
            .map_err(|_| Reason::SignatureInvalid)?;
        check_digest(payload, subject_digest)?;
        let bundle = self.bundle.as_deref().ok_or(Reason::BundleMissing)?;
        if trust.rekor_keys.is_empty() {
            return Err(Reason::NotConfigured("Rekor public keys".into()));
        }
        let at = self.check_bundle(bundle, EntryKey::Certificate(&leaf), trust)?;
        verify_chain(&leaf, &chain, &trust.fulcio_roots, at)?;
        if !leaf.has_code_signing_eku() {
            return Err(Reason::NotCodeSigning("no id-kp-codeSigning EKU".into()));
        }
        let identity = leaf.san_identity();
        let issuer = leaf.fulcio_issuer();
        match_identity(&trust.identities, identity.as_deref(), issuer.as_deref())?;
        Ok(Valid {
            signer: Signer::Keyless {
                identity: identity.unwrap_or_default(),
                issuer: issuer.unwrap_or_default(),
                certificate_sha256: leaf.sha256(),
            },
            signed_at: Some(SignedAt::RekorIntegrated(at)),
            logged: Vec::new(),
        })
    }

    /// Verifies the bundle and its entry; returns the integrated time.
    fn check_bundle(
        &self,
        json: &str,
        key: EntryKey<'_>,
        trust: &CosignTrust,
    ) -> Result<i64, Reason> {
        let bundle = Bundle::parse(json.as_bytes())?;
        bundle.verify_set(&trust.rekor_keys)?;
        bundle.check_entry(&self.payload, &self.signature, key)?;
        Ok(bundle.integrated_time)
    }
}

fn check_digest(payload: &SimpleSigning, subject_digest: &str) -> Result<(), Reason> {
    if payload.manifest_digest != subject_digest {
        return Err(Reason::DigestMismatch {
            expected: subject_digest.to_string(),
            found: payload.manifest_digest.clone(),
        });
    }
    Ok(())
}

/// Ok if some rule matches both `issuer` and `identity`. Otherwise
/// [`Reason::IssuerNotTrusted`] if no rule's issuer matches,
/// [`Reason::IdentityNotTrusted`] if an issuer matches but not its identity.
pub fn match_identity(
    rules: &[CompiledRule],
    identity: Option<&str>,
    issuer: Option<&str>,
) -> Result<(), Reason> {
    if rules.is_empty() {
        return Err(Reason::NotConfigured("keyless identity rules".into()));
    }
    let mut issuer_matched = false;
    for rule in rules {
        if issuer.is_some_and(|i| rule.issuer.matches(i)) {
            issuer_matched = true;
            if identity.is_some_and(|s| rule.subject.matches(s)) {
                return Ok(());
            }
        }
    }
    let (identity, issuer) = (identity.map(str::to_string), issuer.map(str::to_string));
    Err(if issuer_matched {
        Reason::IdentityNotTrusted { identity, issuer }
    } else {
        Reason::IssuerNotTrusted { issuer }
    })
}

/// Parses the PEM keys of a policy.
pub(crate) fn parse_keys(pems: &[String]) -> Result<Vec<PublicKey>, Reason> {
    pems.iter()
        .map(|p| PublicKey::from_pem(p).map_err(|e| Reason::PolicyInvalid(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_fields() {
        let p = SimpleSigning::parse(include_bytes!("../tests/fixtures/cosign-key/payload.json"))
            .unwrap();
        assert_eq!(
            p.docker_reference,
            "192.168.64.2:5000/cosign-signed-single-sample"
        );
        assert_eq!(
            p.manifest_digest,
            "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
        );
        assert_eq!(p.optional, serde_json::Value::Null);
    }

    #[test]
    fn payload_refusals() {
        let bad = |s: &str| {
            matches!(
                SimpleSigning::parse(s.as_bytes()),
                Err(Reason::MalformedPayload(_))
            )
        };
        assert!(bad("{}"));
        assert!(bad("not json"));
        assert!(bad(
            r#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:00"},"type":"something else"},"optional":null}"#
        ));
        // Duplicate field: two different digests must not be ambiguous.
        assert!(bad(
            r#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:00","docker-manifest-digest":"sha256:11"},"type":"cosign container image signature"},"optional":null}"#
        ));
        assert!(!bad(
            r#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":{"k":"v"}}"#
        ));
    }
}
