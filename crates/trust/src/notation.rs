//! Notation (Notary Project) signatures: JWS (`application/jose+json`) and
//! COSE_Sign1 (`application/cose`) envelopes, the Notary payload, and trust
//! policy evaluation (trust stores, registry scopes, trusted identities,
//! verification levels).
//!
//! What each level does with each check, from the Notary Project trust
//! policy specification:
//!
//! | level | integrity | authenticity | authentic timestamp | expiry |
//! |---|---|---|---|---|
//! | `strict` | enforce | enforce | enforce | enforce |
//! | `permissive` | enforce | enforce | log | log |
//! | `audit` | enforce | log | log | log |
//! | `skip` | — | — | — | — |
//!
//! Integrity: the envelope is well formed, its critical headers are
//! understood, the signature verifies with the leaf of the embedded chain
//! and the payload names the image. Authenticity: the leaf may sign code
//! (keyUsage digitalSignature; EKU, if any, with codeSigning), the embedded
//! chain is complete (ends with a self-signed certificate) and leads to a
//! certificate of one of the statement's trust stores, and the leaf subject
//! matches a trusted identity (each of its attributes is in the subject).
//! Authentic
//! timestamp: with no RFC 3161 countersignature (not supported here), every
//! certificate of the chain is valid at the verification time (or, for the
//! `notary.x509.signingAuthority` scheme, at the authentic signing time).
//! Expiry: `io.cncf.notary.expiry`, if present, is not before the
//! verification time. Revocation (OCSP/CRL) needs the network and is not
//! checked; trusted identities that overlap are not detected.

use std::collections::BTreeMap;
use std::io::Cursor;

use base64::Engine;
use ciborium::Value;
use serde::Deserialize;

use crate::artifact::Descriptor;
use crate::keys::{Hash, PublicKey, SigAlg};
use crate::policy::{NotationTrustPolicyDocument, SignatureVerification};
use crate::x509::{verify_path, Cert};
use crate::{Reason, SignedAt, Signer, Valid, Verdict};

/// Media type of a JWS envelope blob.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// Media type of a COSE envelope blob.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// `artifactType` of a Notation signature manifest.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// The only payload content type.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";

/// The signing scheme of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `notary.x509`: trust store type `ca`, signing time is the signer's
    /// claim.
    X509,
    /// `notary.x509.signingAuthority`: trust store type `signingAuthority`,
    /// the authentic signing time is vouched for by the signing authority.
    SigningAuthority,
}

/// A parsed envelope, JWS or COSE, reduced to what verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The exact bytes the signature covers (JWS signing input or COSE
    /// Sig_structure built around the exact protected header bytes).
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    pub alg: SigAlg,
    /// The exact payload bytes.
    pub payload: Vec<u8>,
    pub scheme: Scheme,
    /// `io.cncf.notary.signingTime` (unix seconds).
    pub signing_time: Option<i64>,
    /// `io.cncf.notary.authenticSigningTime` (unix seconds).
    pub authentic_signing_time: Option<i64>,
    /// `io.cncf.notary.expiry` (unix seconds).
    pub expiry: Option<i64>,
    /// The certificate chain, leaf first, as DER.
    pub chain: Vec<Vec<u8>>,
}

fn hdr(msg: impl Into<String>) -> Reason {
    Reason::Header(msg.into())
}
fn bad(msg: impl std::fmt::Display) -> Reason {
    Reason::Malformed(format!("Notation envelope: {msg}"))
}

/// The critical headers this verifier understands.
fn check_crit(crit: &[String], has_expiry: bool, has_authentic_time: bool) -> Result<(), Reason> {
    for c in crit {
        if ![SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME].contains(&c.as_str()) {
            return Err(hdr(format!("critical header {c:?} is not understood")));
        }
    }
    let need = [
        (SIGNING_SCHEME, true),
        (EXPIRY, has_expiry),
        (AUTHENTIC_SIGNING_TIME, has_authentic_time),
    ];
    for (name, present) in need {
        if present && !crit.iter().any(|c| c == name) {
            return Err(hdr(format!("{name} is not marked critical")));
        }
    }
    Ok(())
}

/// Checks the scheme and its time headers, returning the scheme.
fn scheme(name: &str, signing_time: Option<i64>, authentic: Option<i64>) -> Result<Scheme, Reason> {
    match name {
        "notary.x509" if signing_time.is_some() => Ok(Scheme::X509),
        "notary.x509" => Err(hdr("notary.x509 without io.cncf.notary.signingTime")),
        "notary.x509.signingAuthority" if authentic.is_some() => Ok(Scheme::SigningAuthority),
        "notary.x509.signingAuthority" => Err(hdr("signingAuthority without authenticSigningTime")),
        other => Err(hdr(format!("signing scheme {other:?}"))),
    }
}

#[derive(Deserialize)]
struct JwsEnvelope {
    payload: String,
    protected: String,
    #[serde(default)]
    header: JwsUnprotected,
    signature: String,
}

#[derive(Deserialize, Default)]
struct JwsUnprotected {
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct JwsProtected {
    alg: String,
    cty: Option<String>,
    #[serde(default)]
    crit: Vec<String>,
    #[serde(rename = "io.cncf.notary.signingScheme")]
    signing_scheme: Option<String>,
    #[serde(rename = "io.cncf.notary.signingTime")]
    signing_time: Option<String>,
    #[serde(rename = "io.cncf.notary.authenticSigningTime")]
    authentic_signing_time: Option<String>,
    #[serde(rename = "io.cncf.notary.expiry")]
    expiry: Option<String>,
}

impl Envelope {
    /// Parses an envelope blob by its layer media type.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Envelope, Reason> {
        match media_type {
            JWS_MEDIA_TYPE => Envelope::parse_jws(bytes),
            COSE_MEDIA_TYPE => Envelope::parse_cose(bytes),
            other => Err(Reason::UnsupportedFormat(format!(
                "Notation envelope {other}"
            ))),
        }
    }

    /// Parses a JWS JSON serialisation envelope. The signing input is the
    /// stored `protected` and `payload` strings joined by `.`.
    pub fn parse_jws(bytes: &[u8]) -> Result<Envelope, Reason> {
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let env: JwsEnvelope = serde_json::from_slice(bytes).map_err(bad)?;
        let protected: JwsProtected =
            serde_json::from_slice(&url.decode(&env.protected).map_err(bad)?)
                .map_err(|e| hdr(e.to_string()))?;
        let alg = match protected.alg.as_str() {
            "PS256" => SigAlg::pss(Hash::Sha256),
            "PS384" => SigAlg::pss(Hash::Sha384),
            "PS512" => SigAlg::pss(Hash::Sha512),
            "ES256" => SigAlg::EcdsaFixed(Hash::Sha256),
            "ES384" => SigAlg::EcdsaFixed(Hash::Sha384),
            other => return Err(Reason::UnsupportedAlgorithm(format!("JWS alg {other}"))),
        };
        if protected.cty.as_deref() != Some(PAYLOAD_CONTENT_TYPE) {
            return Err(hdr(format!("cty {:?}", protected.cty)));
        }
        let time = |t: &Option<String>| t.as_deref().map(parse_rfc3339).transpose();
        let signing_time = time(&protected.signing_time)?;
        let authentic = time(&protected.authentic_signing_time)?;
        let expiry = time(&protected.expiry)?;
        check_crit(&protected.crit, expiry.is_some(), authentic.is_some())?;
        let scheme = scheme(
            protected.signing_scheme.as_deref().unwrap_or_default(),
            signing_time,
            authentic,
        )?;
        let std = base64::engine::general_purpose::STANDARD;
        let chain = env
            .header
            .x5c
            .iter()
            .map(|c| std.decode(c).map_err(bad))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Envelope {
            signing_input: format!("{}.{}", env.protected, env.payload).into_bytes(),
            signature: url.decode(&env.signature).map_err(bad)?,
            alg,
            payload: url.decode(&env.payload).map_err(bad)?,
            scheme,
            signing_time,
            authentic_signing_time: authentic,
            expiry,
            chain,
        })
    }

    /// Parses a tagged COSE_Sign1 envelope. The Sig_structure is
    /// `["Signature1", protected, h'', payload]` around the exact protected
    /// header bytes.
    pub fn parse_cose(bytes: &[u8]) -> Result<Envelope, Reason> {
        let mut cur = Cursor::new(bytes);
        let v: Value = ciborium::de::from_reader(&mut cur).map_err(bad)?;
        if cur.position() as usize != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        let Value::Tag(18, inner) = v else {
            return Err(bad("not a tagged COSE_Sign1"));
        };
        let Value::Array(parts) = *inner else {
            return Err(bad("COSE_Sign1 is not an array"));
        };
        let [Value::Bytes(protected_bytes), Value::Map(unprotected), Value::Bytes(payload), Value::Bytes(signature)] =
            <[Value; 4]>::try_from(parts).map_err(|_| bad("COSE_Sign1 does not have 4 items"))?
        else {
            return Err(bad("COSE_Sign1 items (detached payload?)"));
        };
        let protected: Value =
            ciborium::de::from_reader(protected_bytes.as_slice()).map_err(bad)?;
        let Value::Map(protected) = protected else {
            return Err(hdr("protected header is not a map"));
        };
        for (i, (label, _)) in protected.iter().enumerate() {
            if protected[..i].iter().any(|(l, _)| l == label) {
                return Err(hdr(format!("duplicate protected header {label:?}")));
            }
        }
        let get = |m: &[(Value, Value)], k: &Value| {
            m.iter().find(|(l, _)| l == k).map(|(_, v)| v.clone())
        };
        let int = |i: i64| Value::Integer(i.into());
        let text = |s: &str| Value::Text(s.to_string());
        let alg = match get(&protected, &int(1))
            .and_then(|v| v.as_integer())
            .map(i128::from)
        {
            Some(-37) => SigAlg::pss(Hash::Sha256),
            Some(-38) => SigAlg::pss(Hash::Sha384),
            Some(-39) => SigAlg::pss(Hash::Sha512),
            Some(-7) => SigAlg::EcdsaFixed(Hash::Sha256),
            Some(-35) => SigAlg::EcdsaFixed(Hash::Sha384),
            other => return Err(Reason::UnsupportedAlgorithm(format!("COSE alg {other:?}"))),
        };
        if get(&protected, &int(3)) != Some(text(PAYLOAD_CONTENT_TYPE)) {
            return Err(hdr("content type"));
        }
        let crit = match get(&protected, &int(2)) {
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|c| match c {
                    Value::Text(t) => Ok(t),
                    other => Err(hdr(format!("critical label {other:?} is not understood"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
            Some(_) => return Err(hdr("crit is not an array")),
        };
        let time = |name: &str| match get(&protected, &text(name)) {
            None => Ok(None),
            Some(Value::Tag(1, t)) => match *t {
                Value::Integer(i) => i64::try_from(i)
                    .map(Some)
                    .map_err(|_| hdr(format!("{name} range"))),
                Value::Float(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
                _ => Err(hdr(format!("{name} is not a CBOR date"))),
            },
            Some(_) => Err(hdr(format!("{name} is not a CBOR date (tag 1)"))),
        };
        let signing_time = time(SIGNING_TIME)?;
        let authentic = time(AUTHENTIC_SIGNING_TIME)?;
        let expiry = time(EXPIRY)?;
        check_crit(&crit, expiry.is_some(), authentic.is_some())?;
        let scheme_name = match get(&protected, &text(SIGNING_SCHEME)) {
            Some(Value::Text(s)) => s,
            _ => String::new(),
        };
        let scheme = scheme(&scheme_name, signing_time, authentic)?;
        let chain = match get(&unprotected, &int(33)) {
            Some(Value::Bytes(one)) => vec![one],
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|c| match c {
                    Value::Bytes(b) => Ok(b),
                    _ => Err(bad("x5chain item is not bytes")),
                })
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let sig_structure = Value::Array(vec![
            text("Signature1"),
            Value::Bytes(protected_bytes),
            Value::Bytes(Vec::new()),
            Value::Bytes(payload.clone()),
        ]);
        let mut signing_input = Vec::new();
        ciborium::ser::into_writer(&sig_structure, &mut signing_input).map_err(bad)?;
        Ok(Envelope {
            signing_input,
            signature,
            alg,
            payload,
            scheme,
            signing_time,
            authentic_signing_time: authentic,
            expiry,
            chain,
        })
    }

    /// Integrity: the chain parses, the signature verifies with the leaf
    /// key, and the payload's `targetArtifact` equals `subject` (digest,
    /// mediaType and size). Returns the parsed chain, leaf first.
    pub fn check_integrity(&self, subject: &Descriptor) -> Result<Vec<Cert>, Reason> {
        let chain = self
            .chain
            .iter()
            .map(|d| Cert::from_der(d))
            .collect::<Result<Vec<_>, _>>()?;
        let leaf = chain.first().ok_or_else(|| bad("no certificate chain"))?;
        let expected = expected_alg(leaf.public_key())?;
        if expected != self.alg {
            return Err(Reason::UnsupportedAlgorithm(format!(
                "envelope algorithm {:?} is not the one for a {} key ({expected:?})",
                self.alg,
                leaf.public_key().kind()
            )));
        }
        leaf.public_key()
            .verify_with(self.alg, &self.signing_input, &self.signature)
            .map_err(|e| match e {
                crate::keys::SigError::AlgorithmMismatch { .. } => {
                    Reason::UnsupportedAlgorithm(e.to_string())
                }
                _ => Reason::SignatureInvalid,
            })?;
        check_target(&self.payload, subject)?;
        Ok(chain)
    }
}

/// The algorithm the Notary signature specification pairs with a signing
/// key: RSA 2048/3072/4096 → PS256/PS384/PS512, P-256 → ES256, P-384 →
/// ES384 (P-521/ES512 is not supported).
fn expected_alg(key: &PublicKey) -> Result<SigAlg, Reason> {
    use rsa::traits::PublicKeyParts;
    Ok(match key {
        PublicKey::Rsa(k) => match k.size() {
            256 => SigAlg::pss(Hash::Sha256),
            384 => SigAlg::pss(Hash::Sha384),
            512 => SigAlg::pss(Hash::Sha512),
            n => {
                return Err(Reason::UnsupportedAlgorithm(format!(
                    "RSA-{} signing key",
                    n * 8
                )))
            }
        },
        PublicKey::P256(_) => SigAlg::EcdsaFixed(Hash::Sha256),
        PublicKey::P384(_) => SigAlg::EcdsaFixed(Hash::Sha384),
        PublicKey::Ed25519(_) => {
            return Err(Reason::UnsupportedAlgorithm("Ed25519 signing key".into()))
        }
    })
}

/// The signing certificate requirements of the Notary signature
/// specification that matter here: keyUsage with digitalSignature, and an
/// EKU, if present, that includes codeSigning.
fn check_leaf(leaf: &Cert) -> Result<(), Reason> {
    match leaf.key_usage() {
        Some(ku) if ku.digital_signature() => {}
        _ => {
            return Err(Reason::NotCodeSigning(
                "keyUsage lacks digitalSignature".into(),
            ))
        }
    }
    if let Some(eku) = leaf.extended_key_usage() {
        if !eku.contains(&const_oid::db::rfc5280::ID_KP_CODE_SIGNING) {
            return Err(Reason::NotCodeSigning("EKU lacks codeSigning".into()));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotaryPayload {
    target_artifact: Descriptor,
}

/// Checks the Notary payload `{"targetArtifact": descriptor}` names
/// `subject`: digest first (as stated), then mediaType and size.
pub fn check_target(payload: &[u8], subject: &Descriptor) -> Result<(), Reason> {
    let p: NotaryPayload = serde_json::from_slice(payload)
        .map_err(|e| Reason::MalformedPayload(format!("Notary payload: {e}")))?;
    let t = p.target_artifact;
    if t.digest != subject.digest {
        return Err(Reason::DigestMismatch {
            expected: subject.digest.clone(),
            found: t.digest,
        });
    }
    if t.media_type != subject.media_type {
        return Err(Reason::TargetMismatch {
            field: "mediaType".into(),
            expected: subject.media_type.clone(),
            found: t.media_type,
        });
    }
    if t.size != subject.size {
        return Err(Reason::TargetMismatch {
            field: "size".into(),
            expected: subject.size.to_string(),
            found: t.size.to_string(),
        });
    }
    Ok(())
}

/// What a verification level does with a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Enforce,
    Log,
    Skip,
}

/// A validated trust policy statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub name: String,
    pub scopes: Vec<String>,
    /// `None` for level `skip`.
    pub actions: Option<Actions>,
    pub trust_stores: Vec<String>,
    /// `None` for `*`; otherwise each identity as `(attribute, value)`s.
    pub identities: Option<Vec<Vec<(String, String)>>>,
}

/// The action for each check that a level can relax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    pub authenticity: Action,
    pub authentic_timestamp: Action,
    pub expiry: Action,
}

/// The compiled Notation part of a policy.
#[derive(Debug, Clone, Default)]
pub struct NotationTrust {
    pub stores: BTreeMap<String, Vec<Cert>>,
    pub statements: Vec<Statement>,
}

fn level_actions(v: &SignatureVerification) -> Result<Option<Actions>, Reason> {
    use Action::*;
    let mut a = match v.level.as_str() {
        "strict" => Actions {
            authenticity: Enforce,
            authentic_timestamp: Enforce,
            expiry: Enforce,
        },
        "permissive" => Actions {
            authenticity: Enforce,
            authentic_timestamp: Log,
            expiry: Log,
        },
        "audit" => Actions {
            authenticity: Log,
            authentic_timestamp: Log,
            expiry: Log,
        },
        "skip" if v.overrides.is_empty() => return Ok(None),
        "skip" => {
            return Err(Reason::PolicyInvalid(
                "level skip cannot have overrides".into(),
            ))
        }
        other => {
            return Err(Reason::PolicyInvalid(format!(
                "verification level {other:?}"
            )))
        }
    };
    // Supported overrides: authenticity, authenticTimestamp and expiry take
    // enforce or log; revocation also skip; integrity none.
    for (check, action) in &v.overrides {
        let action = match (check.as_str(), action.as_str()) {
            (_, "enforce") => Enforce,
            (_, "log") => Log,
            ("revocation", "skip") => Skip,
            (_, other) => {
                return Err(Reason::PolicyInvalid(format!(
                    "override {check:?}: {other:?}"
                )))
            }
        };
        match check.as_str() {
            "authenticity" => a.authenticity = action,
            "authenticTimestamp" => a.authentic_timestamp = action,
            "expiry" => a.expiry = action,
            // Revocation is not checked by this crate whatever its action.
            "revocation" => {}
            other => return Err(Reason::PolicyInvalid(format!("override of {other:?}"))),
        }
    }
    Ok(Some(a))
}

/// Parses `C=US, ST=WA, O=Notary` (commas escaped as `\,`) into attributes.
fn parse_dn(dn: &str) -> Result<Vec<(String, String)>, Reason> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ',' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Reason::PolicyInvalid(format!("identity attribute {p:?}")))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Validates a trust policy document as Notation does: version `1.0`,
/// unique statement names, each registry scope in one statement only, `*`
/// alone in its statement, trust stores and identities present unless the
/// level is `skip`, each `x509.subject` identity naming at least `C`, `ST`
/// and `O`, and `*` identity alone.
pub fn validate_document(doc: &NotationTrustPolicyDocument) -> Result<Vec<Statement>, Reason> {
    let invalid = |m: String| Reason::PolicyInvalid(m);
    if doc.version != "1.0" {
        return Err(invalid(format!("trust policy version {:?}", doc.version)));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut scopes = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for s in &doc.trust_policies {
        if !names.insert(s.name.as_str()) {
            return Err(invalid(format!("duplicate statement name {:?}", s.name)));
        }
        if s.registry_scopes.is_empty() {
            return Err(invalid(format!(
                "statement {:?} has no registry scopes",
                s.name
            )));
        }
        if s.registry_scopes.len() > 1 && s.registry_scopes.iter().any(|r| r == "*") {
            return Err(invalid(format!(
                "statement {:?}: \"*\" must be the only scope",
                s.name
            )));
        }
        for r in &s.registry_scopes {
            if !scopes.insert(r.as_str()) {
                return Err(invalid(format!(
                    "registry scope {r:?} is in two statements"
                )));
            }
        }
        let actions = level_actions(&s.signature_verification)?;
        if actions.is_none() && s.registry_scopes.iter().any(|r| r == "*") {
            return Err(invalid(format!(
                "statement {:?}: level skip with the global scope",
                s.name
            )));
        }
        let identities = if actions.is_none() {
            if !s.trust_stores.is_empty() || !s.trusted_identities.is_empty() {
                return Err(invalid(format!(
                    "statement {:?}: skip with trust stores or identities",
                    s.name
                )));
            }
            None
        } else {
            if s.trust_stores.is_empty() || s.trusted_identities.is_empty() {
                return Err(invalid(format!(
                    "statement {:?} needs trust stores and trusted identities",
                    s.name
                )));
            }
            if s.trusted_identities.iter().any(|i| i == "*") {
                if s.trusted_identities.len() > 1 {
                    return Err(invalid(format!(
                        "statement {:?}: \"*\" must be the only identity",
                        s.name
                    )));
                }
                None
            } else {
                let mut ids = Vec::new();
                for i in &s.trusted_identities {
                    let dn = i
                        .strip_prefix("x509.subject:")
                        .ok_or_else(|| invalid(format!("trusted identity {i:?}")))?;
                    let attrs = parse_dn(dn)?;
                    for required in ["C", "ST", "O"] {
                        if !attrs.iter().any(|(k, _)| k == required) {
                            return Err(invalid(format!(
                                "trusted identity {i:?} lacks {required}"
                            )));
                        }
                    }
                    ids.push(attrs);
                }
                Some(ids)
            }
        };
        out.push(Statement {
            name: s.name.clone(),
            scopes: s.registry_scopes.clone(),
            actions,
            trust_stores: s.trust_stores.clone(),
            identities,
        });
    }
    Ok(out)
}

impl NotationTrust {
    /// The statement for `repository`: the one naming it exactly, else the
    /// `*` statement.
    pub fn statement_for(&self, repository: &str) -> Option<&Statement> {
        self.statements
            .iter()
            .find(|s| s.scopes.iter().any(|r| r == repository))
            .or_else(|| {
                self.statements
                    .iter()
                    .find(|s| s.scopes.iter().any(|r| r == "*"))
            })
    }

    /// Verifies `envelope` for `subject` in `repository` at `now` (unix
    /// seconds) under the statement that applies, as in the table of the
    /// module documentation.
    pub fn verify(
        &self,
        envelope: &Envelope,
        subject: &Descriptor,
        repository: &str,
        now: i64,
    ) -> Verdict {
        let Some(statement) = self.statement_for(repository) else {
            return Verdict::invalid(Reason::NoPolicyForRepository(repository.to_string()));
        };
        let Some(actions) = statement.actions else {
            return Verdict::Skipped;
        };
        match self.evaluate(statement, actions, envelope, subject, now) {
            Ok(v) => Verdict::Valid(v),
            Err(r) => Verdict::invalid(r),
        }
    }

    fn evaluate(
        &self,
        statement: &Statement,
        actions: Actions,
        envelope: &Envelope,
        subject: &Descriptor,
        now: i64,
    ) -> Result<Valid, Reason> {
        let chain = envelope.check_integrity(subject)?;
        let leaf = &chain[0];
        let mut logged = Vec::new();
        let mut apply = |action: Action, result: Result<(), Reason>| match (action, result) {
            (_, Ok(())) | (Action::Skip, _) => Ok(()),
            (Action::Log, Err(r)) => {
                logged.push(r);
                Ok(())
            }
            (Action::Enforce, Err(r)) => Err(r),
        };
        apply(
            actions.authenticity,
            self.authenticity(statement, envelope.scheme, &chain),
        )?;
        let at = match envelope.scheme {
            Scheme::X509 => now,
            Scheme::SigningAuthority => envelope.authentic_signing_time.unwrap_or(now),
        };
        let timestamp = chain.iter().try_for_each(|c| c.check_valid_at(at));
        apply(actions.authentic_timestamp, timestamp)?;
        let expiry = match envelope.expiry {
            Some(expiry) if now > expiry => Err(Reason::SignatureExpired { expiry, at: now }),
            _ => Ok(()),
        };
        apply(actions.expiry, expiry)?;
        Ok(Valid {
            signer: Signer::X509 {
                subject: leaf.subject(),
                certificate_sha256: leaf.sha256(),
            },
            signed_at: envelope
                .authentic_signing_time
                .or(envelope.signing_time)
                .map(SignedAt::NotationSigningTime),
            logged,
        })
    }

    /// The chain leads to a trust store certificate of the scheme's type
    /// (time is the authentic-timestamp check's business), and the leaf
    /// subject matches a trusted identity.
    fn authenticity(
        &self,
        statement: &Statement,
        scheme: Scheme,
        chain: &[Cert],
    ) -> Result<(), Reason> {
        let kind = match scheme {
            Scheme::X509 => "ca",
            Scheme::SigningAuthority => "signingAuthority",
        };
        let mut anchors = Vec::new();
        for name in &statement.trust_stores {
            if name.split_once(':').map(|(t, _)| t) != Some(kind) {
                continue;
            }
            let store = self
                .stores
                .get(name)
                .ok_or_else(|| Reason::NotConfigured(format!("trust store {name}")))?;
            anchors.extend(store.iter().cloned());
        }
        if anchors.is_empty() {
            return Err(Reason::NotConfigured(format!(
                "a {kind} trust store for {:?}",
                statement.name
            )));
        }
        // The envelope carries the complete chain, ending with a root; it
        // must lead to a trust store certificate. Validity in time is the
        // authentic-timestamp check's business.
        let leaf = &chain[0];
        check_leaf(leaf)?;
        let last = &chain[chain.len() - 1];
        if !last.is_issued_by(last) {
            return Err(Reason::ChainUntrusted);
        }
        verify_path(leaf, &chain[1..], &anchors, None)?;
        if let Some(ids) = &statement.identities {
            let subject = leaf.subject_attributes();
            let trusted = ids
                .iter()
                .any(|id| id.iter().all(|attr| subject.contains(attr)));
            if !trusted {
                return Err(Reason::SubjectNotTrusted(leaf.subject()));
            }
        }
        Ok(())
    }
}

/// Parses an RFC 3339 date-time (`2023-03-14T16:10:02+08:00`, fractions
/// ignored) into unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, Reason> {
    let err = || hdr(format!("time {s:?} is not RFC 3339"));
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, Reason> {
        let part = s.get(r).ok_or_else(err)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| err())
        } else {
            Err(err())
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(err());
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err());
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return Err(err()),
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Ok(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2023-03-14T16:10:02+08:00"), Ok(1678781402));
        assert_eq!(parse_rfc3339("2023-03-14T08:10:02.123Z"), Ok(1678781402));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00-01:30"),
            Ok(951868800 + 5400)
        );
        for bad in [
            "",
            "2023-03-14",
            "2023-03-14T16:10:02",
            "2023-13-14T16:10:02Z",
            "2023-03-14T16:10:02+0800",
            "２023-03-14T16:10:02Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dn_parsing() {
        assert_eq!(
            parse_dn("C=US, ST=WA, O=Notary\\, Inc., CN=alpine").unwrap(),
            vec![
                ("C".into(), "US".into()),
                ("ST".into(), "WA".into()),
                ("O".into(), "Notary, Inc.".into()),
                ("CN".into(), "alpine".into())
            ]
        );
    }

    #[test]
    fn crit_rules() {
        assert!(check_crit(&[SIGNING_SCHEME.into()], false, false).is_ok());
        assert!(check_crit(&[], false, false).is_err());
        assert!(check_crit(&[SIGNING_SCHEME.into()], true, false).is_err());
        assert!(check_crit(
            &[
                SIGNING_SCHEME.into(),
                "io.cncf.notary.verificationPlugin".into()
            ],
            false,
            false
        )
        .is_err());
    }

    fn trust(level: &str) -> NotationTrust {
        let doc = serde_json::json!({"version": "1.0", "trustPolicies": [{
            "name": "p", "registryScopes": ["*"], "signatureVerification": {"level": level},
            "trustStores": ["ca:s"], "trustedIdentities": ["*"]}]});
        let pem = include_str!("../tests/fixtures/notation/signer-cert.pem");
        NotationTrust {
            stores: [("ca:s".to_string(), Cert::from_pem_chain(pem).unwrap())].into(),
            statements: validate_document(&serde_json::from_value(doc).unwrap()).unwrap(),
        }
    }

    fn jws() -> (Envelope, Descriptor) {
        let env = Envelope::parse_jws(include_bytes!(
            "../tests/fixtures/notation/jws_signature.sig"
        ))
        .unwrap();
        let m = include_bytes!("../tests/fixtures/notation/manifest.json");
        let subject = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: crate::keys::sha256_digest(m),
            size: m.len() as u64,
        };
        (env, subject)
    }

    /// DERIVED: the fixtures carry no `io.cncf.notary.expiry`; here the
    /// parsed envelope's expiry is set by hand (in a real envelope it is a
    /// signed, critical header) to exercise the level's treatment of it.
    #[test]
    fn expiry_by_level() {
        let (mut env, subject) = jws();
        let now = 1_800_000_000;
        env.expiry = Some(now - 1);
        let expired = Reason::SignatureExpired {
            expiry: now - 1,
            at: now,
        };
        assert_eq!(
            trust("strict").verify(&env, &subject, "r", now).reason(),
            Some(&expired)
        );
        let Verdict::Valid(v) = trust("permissive").verify(&env, &subject, "r", now) else {
            panic!()
        };
        assert_eq!(v.logged, vec![expired]);
        env.expiry = Some(now);
        assert!(trust("strict").verify(&env, &subject, "r", now).is_valid());
    }

    /// DERIVED, as above: the scheme switched to signingAuthority by hand.
    /// It needs a `signingAuthority:` store; a `ca:` store is not one.
    #[test]
    fn signing_authority_needs_its_own_store() {
        let (mut env, subject) = jws();
        env.scheme = Scheme::SigningAuthority;
        env.authentic_signing_time = env.signing_time;
        assert!(matches!(
            trust("strict")
                .verify(&env, &subject, "r", 1_800_000_000)
                .reason(),
            Some(Reason::NotConfigured(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn envelopes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Envelope::parse_cose(&bytes);
            let _ = Envelope::parse_jws(&bytes);
        }
    }
}
