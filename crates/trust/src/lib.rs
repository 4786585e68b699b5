//! Berth's image trust core: offline verification of container image
//! signatures.
//!
//! Pure: no I/O, no clock, no network. It takes bytes (a signature manifest
//! and its blobs, the signed image's descriptor, a policy, the current time)
//! and returns typed results. Every refusal is a [`Reason`] value.
//!
//! Formats:
//!
//! * **cosign, key-based**: an ECDSA/RSA/Ed25519 signature over the exact
//!   bytes of a simple-signing payload naming the image's manifest digest;
//!   optionally a Rekor bundle.
//! * **cosign, keyless**: the same, signed by a short-lived Fulcio
//!   certificate whose chain, identity (SAN) and OIDC issuer are checked at
//!   the Rekor integrated time; the Rekor SignedEntryTimestamp is verified
//!   offline with a configured log key, and the log entry must describe this
//!   very signature, payload and certificate.
//! * **Notation**: JWS and COSE_Sign1 envelopes (Notary Project signature
//!   specification, `notary.x509` scheme), checked under a Notation trust
//!   policy (trust stores, registry scopes, trusted identities, levels
//!   `strict`/`permissive`/`audit`/`skip`).
//!
//! Not done (refused or not checked, never silently accepted): sigstore
//! bundles (`application/vnd.dev.sigstore.bundle.*`, refused), Rekor
//! inclusion proofs and Fulcio SCTs (not checked; the SET is), RFC 3161
//! timestamps and revocation for Notation (not checked), P-521 (refused).
//!
//! The entry point is [`verify`]; the policy is [`TrustPolicy`] (serde),
//! compiled once into [`Trust`].
//!
//! Signing, for the CLI ([`sign`]): ECDSA P-256 key pairs in cosign's
//! encrypted key format, the simple-signing payload and the signature
//! manifest (cosign's `.sig` tag layout or an OCI 1.1 referrer), with the
//! caller's randomness.

pub mod artifact;
pub mod cosign;
pub mod keys;
pub mod notation;
pub mod policy;
pub mod rekor;
pub mod sign;
pub mod verdict;
pub mod x509;

pub use artifact::{Descriptor, SignatureArtifact};
pub use keys::{PublicKey, SigError};
pub use policy::{Trust, TrustPolicy};
pub use verdict::{Reason, SignedAt, Signer, Valid, Verdict};

/// Verifies a signature artifact attached to the image `subject` (its
/// manifest descriptor: digest as the registry names it, media type, size)
/// in `repository`, under `trust`, at `now` (unix seconds; used only where
/// the formats have no trusted time of their own: Notation's certificate
/// validity and expiry. Keyless cosign uses the Rekor integrated time).
///
/// * If the manifest is a referrer (`subject` set), its subject digest must
///   be `subject.digest` ([`Reason::SubjectMismatch`]).
/// * cosign: valid if any of its signatures is valid
///   ([`cosign::CosignSignature::verify`]); otherwise invalid with the
///   first signature's reason, all reasons listed.
/// * Notation: the statement whose registry scope is `repository` (else the
///   `*` statement) decides ([`notation::NotationTrust::verify`]).
pub fn verify(
    artifact: &SignatureArtifact,
    subject: &Descriptor,
    repository: &str,
    trust: &Trust,
    now: i64,
) -> Verdict {
    if let Some(s) = artifact.subject() {
        if s.digest != subject.digest {
            return Verdict::invalid(Reason::SubjectMismatch {
                expected: subject.digest.clone(),
                found: s.digest.clone(),
            });
        }
    }
    match artifact {
        SignatureArtifact::Cosign { signatures, .. } => {
            let mut reasons = Vec::new();
            for sig in signatures {
                match sig.verify(&subject.digest, &trust.cosign) {
                    Ok(valid) => return Verdict::Valid(valid),
                    Err(r) => reasons.push(r),
                }
            }
            match reasons.first() {
                Some(r) => Verdict::Invalid {
                    reason: r.clone(),
                    reasons,
                },
                None => Verdict::invalid(Reason::NotASignature("no signatures".into())),
            }
        }
        SignatureArtifact::Notation { envelope, .. } => {
            trust.notation.verify(envelope, subject, repository, now)
        }
    }
}

/// [`SignatureArtifact::from_manifest`] then [`verify`]: a manifest that
/// cannot be read is an invalid verdict with the reason.
pub fn verify_manifest(
    manifest: &[u8],
    blob: impl Fn(&str) -> Option<Vec<u8>>,
    subject: &Descriptor,
    repository: &str,
    trust: &Trust,
    now: i64,
) -> Verdict {
    match SignatureArtifact::from_manifest(manifest, blob) {
        Ok(a) => verify(&a, subject, repository, trust, now),
        Err(r) => Verdict::invalid(r),
    }
}
