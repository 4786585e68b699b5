//! The policy as the server stores it (JSON), and verdicts as it would
//! record them.

mod common;

use berth_trust::{verify_manifest, TrustPolicy, Verdict};
use common::*;

/// A policy with every part, written as JSON the way the server would store it.
fn policy_json() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "cosign": {
            "keys": [text("cosign-key/cosign.pub")],
            "fulcio_roots": [text("cosign-keyless/fulcio_v1.crt.pem")],
            "rekor_keys": [text("cosign-keyless/rekor.pub")],
            "identities": [{"issuer": {"exact": "https://github.com/login/oauth"},
                            "subject": {"regexp": ".*@redhat\\.com"}}],
            "require_rekor": false
        },
        "notation": {
            "trust_stores": {"ca:alpine-test": [text("notation/signer-cert.pem")]},
            "trust_policy": serde_json::from_slice::<serde_json::Value>(&bytes("notation/AUTHORED-trustpolicy.json")).unwrap()
        }
    }))
    .unwrap()
}

#[test]
fn one_policy_verifies_every_format() {
    let policy = TrustPolicy::from_json(&policy_json()).unwrap();
    let trust = policy.compile().unwrap();
    assert_eq!(trust.fingerprint(), policy.fingerprint());

    let key = verify_manifest(
        &bytes("cosign-key/DERIVED-sig-manifest.json"),
        blobs(&[bytes("cosign-key/payload.json")]),
        &descriptor("cosign-key/manifest.json", DOCKER_MANIFEST),
        "r",
        &trust,
        0,
    );
    let notation = verify_manifest(
        &bytes("notation/DERIVED-sig-manifest-cose.json"),
        blobs(&[bytes("notation/cose_signature.sig")]),
        &descriptor("notation/manifest.json", OCI_MANIFEST),
        "docker.io/library/alpine",
        &trust,
        1_800_000_000,
    );
    assert!(key.is_valid(), "{key:?}");
    assert!(notation.is_valid(), "{notation:?}");

    // Verdicts serialise for storage.
    let json = serde_json::to_value(&notation).unwrap();
    assert_eq!(json["status"], "valid");
    assert_eq!(json["signer"]["kind"], "x509");
    assert_eq!(json["signed_at"]["source"], "notation_signing_time");
    let invalid = verify_manifest(
        b"[]",
        |_| None,
        &descriptor("notation/manifest.json", OCI_MANIFEST),
        "r",
        &trust,
        0,
    );
    let json = serde_json::to_value(&invalid).unwrap();
    assert_eq!(json["status"], "invalid");
    assert_eq!(json["reason"]["reason"], "malformed_manifest");
    assert!(matches!(invalid, Verdict::Invalid { .. }));
}

#[test]
fn fingerprint_is_stable_and_follows_content() {
    let a = TrustPolicy::from_json(&policy_json()).unwrap();
    // Round trip through the stored form: the same fingerprint.
    let again = TrustPolicy::from_json(&serde_json::to_vec(&a).unwrap()).unwrap();
    assert_eq!(a.fingerprint(), again.fingerprint());
    let mut b = a.clone();
    b.cosign.keys.push(text("cosign-key/cosign2.pub"));
    assert_ne!(a.fingerprint(), b.fingerprint());
    let mut c = a.clone();
    c.notation.trust_policy.as_mut().unwrap().trust_policies[0]
        .signature_verification
        .level = "audit".into();
    assert_ne!(a.fingerprint(), c.fingerprint());
}

#[test]
fn bad_material_is_refused_at_compile_time() {
    let mut p = TrustPolicy::from_json(&policy_json()).unwrap();
    p.cosign.keys = vec!["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into()];
    assert!(matches!(
        p.compile(),
        Err(berth_trust::Reason::PolicyInvalid(_))
    ));
    let mut p = TrustPolicy::from_json(&policy_json()).unwrap();
    p.cosign.identities[0].subject = berth_trust::policy::Matcher::Regexp("(".into());
    assert!(matches!(
        p.compile(),
        Err(berth_trust::Reason::PolicyInvalid(_))
    ));
    let mut p = TrustPolicy::from_json(&policy_json()).unwrap();
    p.notation.trust_stores.insert("nostore".into(), vec![]);
    assert!(matches!(
        p.compile(),
        Err(berth_trust::Reason::PolicyInvalid(_))
    ));
}
