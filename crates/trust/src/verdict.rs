//! The outcome of verifying a signature artifact: [`Verdict`], and the
//! precise [`Reason`] a signature was refused.

use serde::Serialize;

/// Why a signature (or a whole signature artifact) was refused. Every
/// failure in this crate is one of these values; nothing panics on bad
/// input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Reason {
    // --- the signature manifest and its blobs ---
    /// The signature manifest is not a JSON OCI/Docker image manifest.
    #[error("malformed signature manifest: {0}")]
    MalformedManifest(String),
    /// The manifest is neither a cosign nor a Notation signature.
    #[error("not a signature artifact: {0}")]
    NotASignature(String),
    /// A recognised signature format that this crate does not verify.
    #[error("unsupported signature format: {0}")]
    UnsupportedFormat(String),
    /// A layer blob was not available.
    #[error("blob {0} is missing")]
    BlobMissing(String),
    /// A layer blob's SHA-256 is not the digest its descriptor names (or its
    /// size differs).
    #[error("blob does not match its descriptor {0}")]
    BlobMismatch(String),
    /// The manifest's `subject` (OCI 1.1 referrer) is not the image checked.
    #[error("signature manifest is attached to {found}, not {expected}")]
    SubjectMismatch { expected: String, found: String },

    // --- payloads and envelopes ---
    /// The signed payload (simple signing or Notary payload) is malformed.
    #[error("malformed payload: {0}")]
    MalformedPayload(String),
    /// A signature, certificate, bundle or envelope field is malformed.
    #[error("malformed signature data: {0}")]
    Malformed(String),
    /// The signed payload names another image (digest as the payload states it).
    #[error("payload is for {found}, not {expected}")]
    DigestMismatch { expected: String, found: String },
    /// The Notary payload's `targetArtifact` differs from the image in a field
    /// other than the digest (`mediaType` or `size`).
    #[error("target artifact {field} is {found}, not {expected}")]
    TargetMismatch {
        field: String,
        expected: String,
        found: String,
    },

    // --- signatures and keys ---
    /// The signature does not verify with the key it was checked against
    /// (for key-based cosign: with none of the trusted keys).
    #[error("signature does not verify")]
    SignatureInvalid,
    /// The policy has nothing to verify this kind of signature with
    /// (no keys, no Fulcio roots, no Rekor keys, no trust policy).
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// An algorithm or key type this crate does not support.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),

    // --- certificates ---
    /// The certificate chain does not lead to a configured root.
    #[error("certificate chain does not lead to a trusted root")]
    ChainUntrusted,
    /// A certificate in the chain had expired at the time of checking
    /// (unix seconds).
    #[error("certificate {subject} expired at {not_after}, checked at {at}")]
    CertificateExpired {
        subject: String,
        not_after: i64,
        at: i64,
    },
    /// A certificate in the chain was not yet valid at the time of checking.
    #[error("certificate {subject} valid only from {not_before}, checked at {at}")]
    CertificateNotYetValid {
        subject: String,
        not_before: i64,
        at: i64,
    },
    /// The signing certificate may not sign code (EKU or key usage).
    #[error("certificate is not for code signing: {0}")]
    NotCodeSigning(String),
    /// The keyless certificate's OIDC issuer matches no identity rule.
    #[error("OIDC issuer {issuer:?} is not trusted")]
    IssuerNotTrusted { issuer: Option<String> },
    /// The issuer matches a rule but the identity (SAN) matches none of its
    /// rules.
    #[error("identity {identity:?} (issuer {issuer:?}) is not trusted")]
    IdentityNotTrusted {
        identity: Option<String>,
        issuer: Option<String>,
    },

    // --- Rekor ---
    /// A keyless signature without a Rekor bundle: no trusted signing time.
    #[error("no Rekor bundle")]
    BundleMissing,
    /// The bundle's log ID names no configured Rekor key.
    #[error("Rekor log {0} is not trusted")]
    UnknownRekorLog(String),
    /// The SignedEntryTimestamp does not verify with the Rekor key.
    #[error("Rekor SignedEntryTimestamp does not verify")]
    SetInvalid,
    /// The Rekor entry describes another signature, payload or key.
    #[error("Rekor entry does not match the signature: {0}")]
    RekorEntryMismatch(String),

    // --- Notation ---
    /// A protected header is missing, wrong or not understood.
    #[error("Notation envelope header: {0}")]
    Header(String),
    /// The envelope's `io.cncf.notary.expiry` has passed.
    #[error("signature expired at {expiry}, checked at {at}")]
    SignatureExpired { expiry: i64, at: i64 },
    /// No trust policy applies to the repository.
    #[error("no trust policy applies to repository {0}")]
    NoPolicyForRepository(String),
    /// The Notation trust policy document is invalid.
    #[error("invalid trust policy: {0}")]
    PolicyInvalid(String),
    /// The leaf subject matches no `trustedIdentities` entry.
    #[error("signing identity {0} is not trusted")]
    SubjectNotTrusted(String),
}

/// Who made a valid signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signer {
    /// Key-based cosign: the trusted key's id (`sha256:` of its DER SPKI).
    Key { key_id: String },
    /// Keyless cosign: the Fulcio certificate's identity (SAN email or URI)
    /// and OIDC issuer, as checked against the policy.
    Keyless {
        identity: String,
        issuer: String,
        certificate_sha256: String,
    },
    /// Notation: the leaf certificate's subject (RFC 4514 form) and the
    /// SHA-256 of its DER.
    X509 {
        subject: String,
        certificate_sha256: String,
    },
}

/// When a signature was made, and on whose word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "source", content = "unix", rename_all = "snake_case")]
pub enum SignedAt {
    /// Rekor's `integratedTime`, vouched for by a verified SET.
    RekorIntegrated(i64),
    /// Notation's `io.cncf.notary.signingTime`: the signer's own claim.
    NotationSigningTime(i64),
}

/// One valid signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Valid {
    pub signer: Signer,
    pub signed_at: Option<SignedAt>,
    /// Checks that failed but that the Notation verification level only
    /// logs (`permissive`, `audit`); empty for cosign.
    pub logged: Vec<Reason>,
}

/// The verdict on one signature artifact for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// At least one signature in the artifact is valid under the policy;
    /// this is the first one found (layer order).
    Valid(Valid),
    /// No signature is valid (or the artifact could not be read): `reason`
    /// is why the first signature failed, `reasons` has one entry per
    /// signature (several for a cosign `.sig` manifest with several layers).
    Invalid {
        reason: Reason,
        reasons: Vec<Reason>,
    },
    /// Notation level `skip`: the policy says not to verify this repository.
    Skipped,
}

impl Verdict {
    /// True for [`Verdict::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid(_))
    }

    /// The refusal reason, if invalid.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Verdict::Invalid { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn invalid(reason: Reason) -> Verdict {
        Verdict::Invalid {
            reasons: vec![reason.clone()],
            reason,
        }
    }
}
