//! Notation vectors (notation-go): JWS and COSE envelopes over one OCI
//! manifest, a self-signed signer certificate, the authored trust policy.

mod common;

use berth_trust::notation::{parse_rfc3339, Envelope};
use berth_trust::policy::{NotationPolicy, NotationTrustPolicyDocument};
use berth_trust::{
    verify, verify_manifest, Descriptor, Reason, SignatureArtifact, SignedAt, Signer, Trust,
    TrustPolicy, Verdict,
};
use common::*;

const REPO: &str = "docker.io/library/alpine";
const SUBJECT_DN: &str = "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US";
const THUMBPRINT: &str = "9f5f5aecee24b5cfdc7a91f6d5ac5c3a5348feb17c934d403f59ac251549ea0d";

fn now() -> i64 {
    parse_rfc3339("2026-12-03T14:00:00Z").unwrap()
}

fn subject() -> Descriptor {
    descriptor("notation/manifest.json", OCI_MANIFEST)
}

fn document() -> serde_json::Value {
    serde_json::from_slice(&bytes("notation/AUTHORED-trustpolicy.json")).unwrap()
}

fn policy_with(doc: serde_json::Value, store_pem: &str) -> TrustPolicy {
    let doc: NotationTrustPolicyDocument = serde_json::from_value(doc).unwrap();
    TrustPolicy {
        notation: NotationPolicy {
            trust_stores: [("ca:alpine-test".to_string(), vec![text(store_pem)])].into(),
            trust_policy: Some(doc),
        },
        ..Default::default()
    }
}

fn trust_with(doc: serde_json::Value) -> Trust {
    policy_with(doc, "notation/signer-cert.pem")
        .compile()
        .unwrap()
}

fn trust() -> Trust {
    trust_with(document())
}

fn envelope(path: &str) -> SignatureArtifact {
    let media_type = if path.ends_with("cose.sig") || path.ends_with("cose_signature.sig") {
        "application/cose"
    } else {
        "application/jose+json"
    };
    SignatureArtifact::Notation {
        subject: None,
        envelope: Box::new(Envelope::parse(media_type, &bytes(path)).unwrap()),
    }
}

fn reason(v: Verdict) -> Reason {
    v.reason()
        .cloned()
        .unwrap_or_else(|| panic!("expected invalid, got {v:?}"))
}

/// The signing times in the envelopes (JWS: RFC 3339 header; COSE: CBOR
/// tag 1, another signing session).
const JWS_SIGNED: i64 = 1678781402; // 2023-03-14T16:10:02+08:00
const COSE_SIGNED: i64 = 1678769122; // 2023-03-14T04:45:22Z

fn assert_valid(v: Verdict) {
    let Verdict::Valid(valid) = v else {
        panic!("{v:?}")
    };
    let Some(SignedAt::NotationSigningTime(t)) = valid.signed_at else {
        panic!("{valid:?}")
    };
    assert!(t == JWS_SIGNED || t == COSE_SIGNED, "{t}");
    assert_eq!(
        valid.signer,
        Signer::X509 {
            subject: SUBJECT_DN.into(),
            certificate_sha256: THUMBPRINT.into()
        }
    );
    assert_eq!(valid.logged, vec![]);
}

#[test]
fn jws_and_cose_referrer_manifests_verify() {
    for (manifest, envelope) in [
        (
            "notation/DERIVED-sig-manifest-jws.json",
            "notation/jws_signature.sig",
        ),
        (
            "notation/DERIVED-sig-manifest-cose.json",
            "notation/cose_signature.sig",
        ),
    ] {
        let v = verify_manifest(
            &bytes(manifest),
            blobs(&[bytes(envelope)]),
            &subject(),
            REPO,
            &trust(),
            now(),
        );
        assert_valid(v);
    }
}

#[test]
fn both_envelopes_carry_the_signer_cert() {
    let pem = berth_trust::x509::Cert::from_pem_chain(&text("notation/signer-cert.pem")).unwrap();
    for (path, signed) in [
        ("notation/jws_signature.sig", JWS_SIGNED),
        ("notation/cose_signature.sig", COSE_SIGNED),
    ] {
        let SignatureArtifact::Notation { envelope, .. } = envelope(path) else {
            unreachable!()
        };
        assert_eq!(envelope.chain, vec![pem[0].der().to_vec()], "{path}");
        assert_eq!(envelope.signing_time, Some(signed), "{path}");
        assert_eq!(envelope.expiry, None);
    }
}

#[test]
fn tampered_jws_payload_and_bit_flipped_cose() {
    for path in [
        "notation/DERIVED-negative-tampered-payload.jws.sig",
        "notation/DERIVED-negative-bitflip.cose.sig",
    ] {
        let v = verify(&envelope(path), &subject(), REPO, &trust(), now());
        assert_eq!(reason(v), Reason::SignatureInvalid, "{path}");
    }
}

#[test]
fn target_mismatch() {
    let env = envelope("notation/jws_signature.sig");
    let mut other = subject();
    other.digest = descriptor("cosign-key/manifest.json", OCI_MANIFEST).digest;
    assert_eq!(
        reason(verify(&env, &other, REPO, &trust(), now())),
        Reason::DigestMismatch {
            expected: other.digest.clone(),
            found: subject().digest
        }
    );
    let mut other = subject();
    other.size += 1;
    assert_eq!(
        reason(verify(&env, &other, REPO, &trust(), now())),
        Reason::TargetMismatch {
            field: "size".into(),
            expected: "482".into(),
            found: "481".into()
        }
    );
    let mut other = subject();
    other.media_type = DOCKER_MANIFEST.into();
    assert!(matches!(
        reason(verify(&env, &other, REPO, &trust(), now())),
        Reason::TargetMismatch { .. }
    ));
}

#[test]
fn referrer_subject_and_blob_checks() {
    let manifest = bytes("notation/DERIVED-sig-manifest-jws.json");
    let mut other = subject();
    other.digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000".into();
    let v = verify_manifest(
        &manifest,
        blobs(&[bytes("notation/jws_signature.sig")]),
        &other,
        REPO,
        &trust(),
        now(),
    );
    assert!(matches!(reason(v), Reason::SubjectMismatch { .. }));
    // The tampered envelope served under the genuine envelope's digest.
    let tampered = bytes("notation/DERIVED-negative-tampered-payload.jws.sig");
    let v = verify_manifest(
        &manifest,
        |_| Some(tampered.clone()),
        &subject(),
        REPO,
        &trust(),
        now(),
    );
    assert!(matches!(reason(v), Reason::BlobMismatch(_)));
}

#[test]
fn identity_not_trusted() {
    let mut doc = document();
    doc["trustPolicies"][0]["trustedIdentities"] =
        serde_json::json!(["x509.subject: C=US, ST=WA, O=Notary, CN=other"]);
    assert_eq!(
        reason(verify(
            &envelope("notation/cose_signature.sig"),
            &subject(),
            REPO,
            &trust_with(doc.clone()),
            now()
        )),
        Reason::SubjectNotTrusted(SUBJECT_DN.into())
    );
    // A subset of the subject's attributes is trusted; `*` trusts anyone the store vouches for.
    doc["trustPolicies"][0]["trustedIdentities"] =
        serde_json::json!(["x509.subject: C=US, ST=WA, O=Notary"]);
    assert_valid(verify(
        &envelope("notation/cose_signature.sig"),
        &subject(),
        REPO,
        &trust_with(doc.clone()),
        now(),
    ));
    doc["trustPolicies"][0]["trustedIdentities"] = serde_json::json!(["*"]);
    assert_valid(verify(
        &envelope("notation/cose_signature.sig"),
        &subject(),
        REPO,
        &trust_with(doc),
        now(),
    ));
}

#[test]
fn audit_logs_what_permissive_enforces() {
    let mut doc = document();
    doc["trustPolicies"][0]["trustedIdentities"] =
        serde_json::json!(["x509.subject: C=US, ST=WA, O=Other"]);
    doc["trustPolicies"][0]["signatureVerification"]["level"] = "permissive".into();
    let env = envelope("notation/jws_signature.sig");
    assert!(matches!(
        reason(verify(
            &env,
            &subject(),
            REPO,
            &trust_with(doc.clone()),
            now()
        )),
        Reason::SubjectNotTrusted(_)
    ));
    doc["trustPolicies"][0]["signatureVerification"]["level"] = "audit".into();
    let Verdict::Valid(v) = verify(&env, &subject(), REPO, &trust_with(doc.clone()), now()) else {
        panic!()
    };
    assert_eq!(v.logged, vec![Reason::SubjectNotTrusted(SUBJECT_DN.into())]);
    // Integrity is enforced at every level but skip.
    let bad = envelope("notation/DERIVED-negative-bitflip.cose.sig");
    assert_eq!(
        reason(verify(&bad, &subject(), REPO, &trust_with(doc), now())),
        Reason::SignatureInvalid
    );
}

#[test]
fn certificate_validity_at_the_verification_time() {
    let env = envelope("notation/jws_signature.sig");
    // The certificate is valid 2000-08-29 .. 2123-08-29.
    let late = parse_rfc3339("2124-01-01T00:00:00Z").unwrap();
    let early = parse_rfc3339("1999-01-01T00:00:00Z").unwrap();
    assert!(matches!(
        reason(verify(&env, &subject(), REPO, &trust(), late)),
        Reason::CertificateExpired { .. }
    ));
    assert!(matches!(
        reason(verify(&env, &subject(), REPO, &trust(), early)),
        Reason::CertificateNotYetValid { .. }
    ));
    // permissive only logs the authentic-timestamp check.
    let mut doc = document();
    doc["trustPolicies"][0]["signatureVerification"]["level"] = "permissive".into();
    let Verdict::Valid(v) = verify(&env, &subject(), REPO, &trust_with(doc), late) else {
        panic!()
    };
    assert!(matches!(
        v.logged.as_slice(),
        [Reason::CertificateExpired { .. }]
    ));
    // So does strict with an override.
    let mut doc = document();
    doc["trustPolicies"][0]["signatureVerification"]["override"] =
        serde_json::json!({"authenticTimestamp": "log"});
    assert!(verify(&env, &subject(), REPO, &trust_with(doc), late).is_valid());
}

#[test]
fn registry_scopes() {
    let env = envelope("notation/jws_signature.sig");
    let mut doc = document();
    doc["trustPolicies"][0]["registryScopes"] = serde_json::json!(["registry.example/other"]);
    assert_eq!(
        reason(verify(
            &env,
            &subject(),
            REPO,
            &trust_with(doc.clone()),
            now()
        )),
        Reason::NoPolicyForRepository(REPO.into())
    );
    assert_valid(verify(
        &env,
        &subject(),
        "registry.example/other",
        &trust_with(doc.clone()),
        now(),
    ));
    // An exact scope wins over `*`; skip is allowed for exact scopes only.
    let strict = doc["trustPolicies"][0].clone();
    let mut global = strict.clone();
    global["name"] = "global".into();
    global["registryScopes"] = serde_json::json!(["*"]);
    global["trustedIdentities"] = serde_json::json!(["x509.subject: C=US, ST=WA, O=Nobody"]);
    let skip = serde_json::json!({"name": "unsigned", "registryScopes": ["registry.example/unsigned"],
                                  "signatureVerification": {"level": "skip"}});
    doc["trustPolicies"] = serde_json::json!([strict, global, skip]);
    let t = trust_with(doc.clone());
    assert_valid(verify(
        &env,
        &subject(),
        "registry.example/other",
        &t,
        now(),
    ));
    assert!(matches!(
        reason(verify(&env, &subject(), REPO, &t, now())),
        Reason::SubjectNotTrusted(_)
    ));
    assert_eq!(
        verify(&env, &subject(), "registry.example/unsigned", &t, now()),
        Verdict::Skipped
    );
    doc["trustPolicies"][2]["registryScopes"] = serde_json::json!(["*"]);
    assert!(matches!(
        policy_with(doc, "notation/signer-cert.pem").compile(),
        Err(Reason::PolicyInvalid(_))
    ));
}

#[test]
fn trust_store_without_the_signer() {
    // The store holds the Fulcio root instead of the signer's certificate.
    let t = policy_with(document(), "cosign-keyless/fulcio_v1.crt.pem")
        .compile()
        .unwrap();
    let v = verify(
        &envelope("notation/cose_signature.sig"),
        &subject(),
        REPO,
        &t,
        now(),
    );
    assert_eq!(reason(v), Reason::ChainUntrusted);
    // A policy naming a store that is not configured.
    let mut doc = document();
    doc["trustPolicies"][0]["trustStores"] = serde_json::json!(["ca:missing"]);
    let v = verify(
        &envelope("notation/cose_signature.sig"),
        &subject(),
        REPO,
        &trust_with(doc),
        now(),
    );
    assert_eq!(
        reason(v),
        Reason::NotConfigured("trust store ca:missing".into())
    );
}

#[test]
fn invalid_policies_are_refused() {
    for (field, value) in [
        (
            "trustedIdentities",
            serde_json::json!(["x509.subject: C=US, CN=alpine"]),
        ),
        (
            "trustedIdentities",
            serde_json::json!(["*", "x509.subject: C=US, ST=WA, O=Notary"]),
        ),
        (
            "registryScopes",
            serde_json::json!(["*", "docker.io/library/alpine"]),
        ),
        (
            "signatureVerification",
            serde_json::json!({"level": "lenient"}),
        ),
        (
            "signatureVerification",
            serde_json::json!({"level": "strict", "override": {"integrity": "log"}}),
        ),
        (
            "signatureVerification",
            serde_json::json!({"level": "strict", "override": {"expiry": "skip"}}),
        ),
        ("trustStores", serde_json::json!([])),
    ] {
        let mut doc = document();
        doc["trustPolicies"][0][field] = value.clone();
        let r = policy_with(doc, "notation/signer-cert.pem").compile();
        assert!(
            matches!(r, Err(Reason::PolicyInvalid(_))),
            "{field} = {value}"
        );
    }
    let mut doc = document();
    doc["version"] = "2.0".into();
    assert!(matches!(
        policy_with(doc, "notation/signer-cert.pem").compile(),
        Err(Reason::PolicyInvalid(_))
    ));
}

/// DERIVED: the JWS with its `cty` header changed (and therefore its
/// signature invalid, but the header is refused first, at parse time).
#[test]
fn wrong_content_type_is_refused() {
    use base64::Engine;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut env: serde_json::Value =
        serde_json::from_slice(&bytes("notation/jws_signature.sig")).unwrap();
    let header =
        String::from_utf8(url.decode(env["protected"].as_str().unwrap()).unwrap()).unwrap();
    let header = header.replace(
        "application/vnd.cncf.notary.payload.v1+json",
        "application/json",
    );
    env["protected"] = url.encode(header).into();
    let r = Envelope::parse_jws(&serde_json::to_vec(&env).unwrap());
    assert!(matches!(r, Err(Reason::Header(_))));
}
