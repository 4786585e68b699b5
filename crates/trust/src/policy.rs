//! The trust policy: plain data ([`TrustPolicy`], serde) that the server
//! stores as JSON, compiled once into [`Trust`] (keys and certificates
//! parsed, regular expressions built, the Notation document validated).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{hex, PublicKey};
use crate::x509::Cert;
use crate::Reason;

/// Bumped when the meaning of a policy changes in this crate, so that
/// fingerprints (and verdicts cached under them) change too.
const SEMANTICS_VERSION: &str = "berth-trust/1";

/// Everything that decides whether a signature is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicy {
    #[serde(default)]
    pub cosign: CosignPolicy,
    #[serde(default)]
    pub notation: NotationPolicy,
}

/// cosign: trusted keys (key-based) and Fulcio roots, Rekor keys and
/// identity rules (keyless).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignPolicy {
    /// PEM SubjectPublicKeyInfo keys; a signature by any of them is trusted.
    #[serde(default)]
    pub keys: Vec<String>,
    /// PEM Fulcio certificates trusted as anchors (one or more per string):
    /// the roots, and the intermediates too if signatures may come without
    /// the chain annotation.
    #[serde(default)]
    pub fulcio_roots: Vec<String>,
    /// PEM Rekor log public keys, selected by log ID.
    #[serde(default)]
    pub rekor_keys: Vec<String>,
    /// Keyless signatures are trusted if their certificate matches one rule.
    #[serde(default)]
    pub identities: Vec<IdentityRule>,
    /// Refuse key-based signatures that carry no Rekor bundle.
    #[serde(default)]
    pub require_rekor: bool,
}

/// A keyless identity rule: the certificate's OIDC issuer and its SAN
/// (email or URI) must both match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    pub issuer: Matcher,
    pub subject: Matcher,
}

/// A string matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// `{"exact": "..."}`: byte-for-byte equality.
    Exact(String),
    /// `{"regexp": "..."}`: a regular expression matched against the whole
    /// string (it is anchored as `^(?:...)$`).
    Regexp(String),
}

/// Notation: named trust stores and a Notation trust policy document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotationPolicy {
    /// `"ca:NAME"`, `"signingAuthority:NAME"` → PEM certificates.
    #[serde(default)]
    pub trust_stores: BTreeMap<String, Vec<String>>,
    /// The Notation `trustpolicy.json` document, as Notation writes it.
    #[serde(default)]
    pub trust_policy: Option<NotationTrustPolicyDocument>,
}

/// A Notation trust policy document (version 1.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotationTrustPolicyDocument {
    pub version: String,
    pub trust_policies: Vec<NotationTrustPolicyStatement>,
}

/// One statement of a Notation trust policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotationTrustPolicyStatement {
    pub name: String,
    pub registry_scopes: Vec<String>,
    pub signature_verification: SignatureVerification,
    #[serde(default)]
    pub trust_stores: Vec<String>,
    #[serde(default)]
    pub trusted_identities: Vec<String>,
}

/// `signatureVerification`: a level, optionally with per-check overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureVerification {
    pub level: String,
    #[serde(
        default,
        rename = "override",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub overrides: BTreeMap<String, String>,
}

impl TrustPolicy {
    /// Parses a policy from JSON.
    pub fn from_json(json: &[u8]) -> Result<TrustPolicy, Reason> {
        serde_json::from_slice(json).map_err(|e| Reason::PolicyInvalid(e.to_string()))
    }

    /// `sha256:` of this crate's semantics version and the policy's JSON
    /// serialisation (fields in declaration order, maps sorted). Equal
    /// policies have equal fingerprints; a verdict cached under a
    /// fingerprint is stale once the policy's fingerprint changes.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(SEMANTICS_VERSION);
        h.update([0]);
        h.update(serde_json::to_vec(self).unwrap_or_default());
        format!("sha256:{}", hex(&h.finalize()))
    }

    /// Parses every key and certificate, builds the regular expressions and
    /// validates the Notation document. Errors are [`Reason::PolicyInvalid`].
    pub fn compile(&self) -> Result<Trust, Reason> {
        let c = &self.cosign;
        let invalid = |e: Reason| Reason::PolicyInvalid(e.to_string());
        let cosign = CosignTrust {
            keys: crate::cosign::parse_keys(&c.keys)?,
            fulcio_roots: certs(&c.fulcio_roots).map_err(invalid)?,
            rekor_keys: crate::cosign::parse_keys(&c.rekor_keys)?,
            identities: c
                .identities
                .iter()
                .map(|r| {
                    Ok(CompiledRule {
                        issuer: CompiledMatcher::new(&r.issuer)?,
                        subject: CompiledMatcher::new(&r.subject)?,
                    })
                })
                .collect::<Result<_, Reason>>()?,
            require_rekor: c.require_rekor,
        };
        let mut stores = BTreeMap::new();
        for (name, pems) in &self.notation.trust_stores {
            let Some((kind, _)) = name.split_once(':') else {
                return Err(Reason::PolicyInvalid(format!(
                    "trust store {name:?} is not TYPE:NAME"
                )));
            };
            if !matches!(kind, "ca" | "signingAuthority" | "tsa") {
                return Err(Reason::PolicyInvalid(format!("trust store type {kind:?}")));
            }
            stores.insert(name.clone(), certs(pems).map_err(invalid)?);
        }
        let statements = match &self.notation.trust_policy {
            Some(doc) => crate::notation::validate_document(doc)?,
            None => Vec::new(),
        };
        Ok(Trust {
            cosign,
            notation: NotationTrust { stores, statements },
            fingerprint: self.fingerprint(),
        })
    }
}

fn certs(pems: &[String]) -> Result<Vec<Cert>, Reason> {
    let mut out = Vec::new();
    for p in pems {
        out.extend(Cert::from_pem_chain(p)?);
    }
    Ok(out)
}

/// A compiled [`TrustPolicy`], ready to verify with.
#[derive(Debug, Clone)]
pub struct Trust {
    pub(crate) cosign: CosignTrust,
    pub(crate) notation: NotationTrust,
    fingerprint: String,
}

impl Trust {
    /// The fingerprint of the policy this was compiled from.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The cosign part.
    pub fn cosign(&self) -> &CosignTrust {
        &self.cosign
    }
}

/// The compiled cosign policy.
#[derive(Debug, Clone, Default)]
pub struct CosignTrust {
    pub keys: Vec<PublicKey>,
    pub fulcio_roots: Vec<Cert>,
    pub rekor_keys: Vec<PublicKey>,
    pub identities: Vec<CompiledRule>,
    pub require_rekor: bool,
}

/// A compiled [`IdentityRule`].
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub issuer: CompiledMatcher,
    pub subject: CompiledMatcher,
}

/// A compiled [`Matcher`].
#[derive(Debug, Clone)]
pub enum CompiledMatcher {
    Exact(String),
    Regexp(regex::Regex),
}

impl CompiledMatcher {
    /// Compiles a matcher; a regular expression is anchored at both ends.
    pub fn new(m: &Matcher) -> Result<CompiledMatcher, Reason> {
        Ok(match m {
            Matcher::Exact(s) => CompiledMatcher::Exact(s.clone()),
            Matcher::Regexp(r) => CompiledMatcher::Regexp(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| Reason::PolicyInvalid(format!("regexp {r:?}: {e}")))?,
            ),
        })
    }

    /// True if `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            CompiledMatcher::Exact(e) => e == s,
            CompiledMatcher::Regexp(r) => r.is_match(s),
        }
    }
}

pub(crate) use crate::notation::NotationTrust;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexp_is_anchored() {
        let m = CompiledMatcher::new(&Matcher::Regexp(".*@redhat\\.com".into())).unwrap();
        assert!(m.matches("mitr@redhat.com"));
        assert!(!m.matches("mitr@redhat.com.evil"));
        let m = CompiledMatcher::new(&Matcher::Regexp("a|b".into())).unwrap();
        assert!(!m.matches("ab"));
    }

    #[test]
    fn fingerprint_changes_with_the_policy() {
        let a = TrustPolicy::default();
        let mut b = a.clone();
        b.cosign.require_rekor = true;
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), TrustPolicy::default().fingerprint());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(matches!(
            TrustPolicy::from_json(br#"{"cosign":{"keyz":[]}}"#),
            Err(Reason::PolicyInvalid(_))
        ));
    }
}
