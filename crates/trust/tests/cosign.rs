//! cosign vectors: key-based (containers/image, sigstore-rs) and keyless
//! (containers/image 2023 hashedrekord, sigstore-rs 2021 rekord).

mod common;

use berth_trust::cosign::CosignSignature;
use berth_trust::policy::{CosignPolicy, IdentityRule, Matcher};
use berth_trust::rekor::{Bundle, EntryKey};
use berth_trust::x509::{verify_chain, Cert};
use berth_trust::{
    verify, verify_manifest, PublicKey, Reason, SignatureArtifact, SignedAt, Signer, Trust,
    TrustPolicy, Verdict,
};
use common::*;

/// Any time: cosign verification does not read the clock.
const NOW: i64 = 1_800_000_000;

fn key_trust(keys: &[&str]) -> Trust {
    TrustPolicy {
        cosign: CosignPolicy {
            keys: keys.iter().map(|k| text(k)).collect(),
            ..Default::default()
        },
        ..Default::default()
    }
    .compile()
    .unwrap()
}

fn key_sig(payload: &str, sig: &str) -> CosignSignature {
    CosignSignature::from_annotations(bytes(payload), &text(sig), None, None, None).unwrap()
}

fn check(sig: CosignSignature, subject_manifest: &str, trust: &Trust) -> Verdict {
    let artifact = SignatureArtifact::Cosign {
        subject: None,
        signatures: vec![sig],
    };
    verify(
        &artifact,
        &descriptor(subject_manifest, DOCKER_MANIFEST),
        "r",
        trust,
        NOW,
    )
}

fn reason(v: Verdict) -> Reason {
    v.reason()
        .cloned()
        .unwrap_or_else(|| panic!("expected invalid, got {v:?}"))
}

// ---------------------------------------------------------------- key-based

#[test]
fn key_based_sig_manifest_verifies() {
    let trust = key_trust(&["cosign-key/cosign.pub"]);
    let v = verify_manifest(
        &bytes("cosign-key/DERIVED-sig-manifest.json"),
        blobs(&[bytes("cosign-key/payload.json")]),
        &descriptor("cosign-key/manifest.json", DOCKER_MANIFEST),
        "192.168.64.2:5000/cosign-signed-single-sample",
        &trust,
        NOW,
    );
    let key_id = PublicKey::from_pem(&text("cosign-key/cosign.pub"))
        .unwrap()
        .key_id();
    let Verdict::Valid(valid) = v else {
        panic!("{v:?}")
    };
    assert_eq!(valid.signer, Signer::Key { key_id });
    assert_eq!(valid.signed_at, None);
}

#[test]
fn key_based_containers_image_signature_1_verifies() {
    let s = containers_image_signature("cosign-key/signature-1");
    assert_eq!(
        s.mime_type,
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert_eq!(s.payload, bytes("cosign-key/payload.json"));
    let sig = s.annotations["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    let sig = CosignSignature::from_annotations(s.payload.clone(), sig, None, None, None).unwrap();
    assert!(check(
        sig,
        "cosign-key/manifest.json",
        &key_trust(&["cosign-key/cosign.pub"])
    )
    .is_valid());
}

#[test]
fn key_based_wrong_key() {
    let sig = key_sig("cosign-key/payload.json", "cosign-key/signature.b64");
    let v = check(
        sig.clone(),
        "cosign-key/manifest.json",
        &key_trust(&["cosign-key/cosign2.pub"]),
    );
    assert_eq!(reason(v), Reason::SignatureInvalid);
    // With both keys trusted, the right one is found.
    let both = key_trust(&["cosign-key/cosign2.pub", "cosign-key/cosign.pub"]);
    assert!(check(sig, "cosign-key/manifest.json", &both).is_valid());
}

#[test]
fn key_based_tampered_payloads_and_bit_flip() {
    let trust = key_trust(&["cosign-key/cosign.pub"]);
    for payload in [
        "cosign-key/DERIVED-negative-tampered-digest.payload.json",
        "cosign-key/DERIVED-negative-tampered-reference.payload.json",
        // Semantically equal JSON, other bytes: the exact bytes are verified.
        "cosign-key/DERIVED-negative-reformatted.payload.json",
    ] {
        let v = check(
            key_sig(payload, "cosign-key/signature.b64"),
            "cosign-key/manifest.json",
            &trust,
        );
        assert_eq!(reason(v), Reason::SignatureInvalid, "{payload}");
    }
    let v = check(
        key_sig(
            "cosign-key/payload.json",
            "cosign-key/DERIVED-negative-bitflip.signature.b64",
        ),
        "cosign-key/manifest.json",
        &trust,
    );
    assert_eq!(reason(v), Reason::SignatureInvalid);
}

#[test]
fn key_based_modified_manifest_is_not_the_signed_one() {
    let trust = key_trust(&["cosign-key/cosign.pub"]);
    let sig = key_sig("cosign-key/payload.json", "cosign-key/signature.b64");
    let v = check(
        sig,
        "cosign-key/upstream-negative-modified-manifest.json",
        &trust,
    );
    assert_eq!(
        reason(v),
        Reason::DigestMismatch {
            expected: descriptor(
                "cosign-key/upstream-negative-modified-manifest.json",
                DOCKER_MANIFEST
            )
            .digest,
            found: "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00".into(),
        }
    );
}

#[test]
fn key_based_sigstore_rs_vector() {
    let trust = key_trust(&["cosign-key-sigstore-rs/cosign.pub"]);
    let sig = key_sig(
        "cosign-key-sigstore-rs/payload.json",
        "cosign-key-sigstore-rs/signature.b64",
    );
    // The image manifest is not available: the digest the payload names is
    // used as the subject.
    let artifact = SignatureArtifact::Cosign {
        subject: None,
        signatures: vec![sig],
    };
    let subject = berth_trust::Descriptor {
        media_type: DOCKER_MANIFEST.into(),
        digest: "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b".into(),
        size: 0,
    };
    assert!(verify(&artifact, &subject, "r", &trust, NOW).is_valid());
    // The other set's key does not verify it.
    let v = verify(
        &artifact,
        &subject,
        "r",
        &key_trust(&["cosign-key/cosign.pub"]),
        NOW,
    );
    assert_eq!(reason(v), Reason::SignatureInvalid);
}

#[test]
fn sig_manifest_blob_checks() {
    let trust = key_trust(&["cosign-key/cosign.pub"]);
    let manifest = bytes("cosign-key/DERIVED-sig-manifest.json");
    let subject = descriptor("cosign-key/manifest.json", DOCKER_MANIFEST);
    let digest = "sha256:cf482371b51a7633b3f02e29b87fc3f4a18b3f127af61cb114af5f2c04fcdd75";
    let v = verify_manifest(&manifest, |_| None, &subject, "r", &trust, NOW);
    assert_eq!(reason(v), Reason::BlobMissing(digest.into()));
    // A store answering the payload digest with other bytes (the reformatted
    // payload): refused before any signature check.
    let other = bytes("cosign-key/DERIVED-negative-reformatted.payload.json");
    let v = verify_manifest(
        &manifest,
        |_| Some(other.clone()),
        &subject,
        "r",
        &trust,
        NOW,
    );
    assert_eq!(reason(v), Reason::BlobMismatch(digest.into()));
    let v = verify_manifest(b"{", |_| None, &subject, "r", &trust, NOW);
    assert!(matches!(reason(v), Reason::MalformedManifest(_)));
    // The image manifest itself is not a signature.
    let v = verify_manifest(
        &bytes("cosign-key/manifest.json"),
        |_| None,
        &subject,
        "r",
        &trust,
        NOW,
    );
    assert!(matches!(reason(v), Reason::NotASignature(_)));
}

#[test]
fn no_keys_configured() {
    let sig = key_sig("cosign-key/payload.json", "cosign-key/signature.b64");
    let v = check(
        sig,
        "cosign-key/manifest.json",
        &TrustPolicy::default().compile().unwrap(),
    );
    assert_eq!(
        reason(v),
        Reason::NotConfigured("cosign public keys".into())
    );
}

/// DERIVED: the same signature as an OCI 1.1 referrer (artifactType and
/// subject), as cosign's `--registry-referrers-mode=oci-1-1` pushes it.
#[test]
fn referrer_form() {
    let trust = key_trust(&["cosign-key/cosign.pub"]);
    let payload = bytes("cosign-key/payload.json");
    let mut ann = serde_json::Map::new();
    ann.insert(
        "dev.cosignproject.cosign/signature".into(),
        text("cosign-key/signature.b64").into(),
    );
    let subject = descriptor("cosign-key/manifest.json", DOCKER_MANIFEST);
    let manifest = sig_manifest(
        &payload,
        &ann,
        serde_json::json!({"artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json", "subject": subject}),
    );
    let v = verify_manifest(
        &manifest,
        blobs(std::slice::from_ref(&payload)),
        &subject,
        "r",
        &trust,
        NOW,
    );
    assert!(v.is_valid(), "{v:?}");
    // Checked against another image: the referrer's subject is not it.
    let other = descriptor(
        "cosign-key/upstream-negative-modified-manifest.json",
        DOCKER_MANIFEST,
    );
    let v = verify_manifest(&manifest, blobs(&[payload]), &other, "r", &trust, NOW);
    assert!(matches!(reason(v), Reason::SubjectMismatch { .. }));
}

/// DERIVED: a sigstore bundle referrer is recognised and refused as
/// unsupported, not misread.
#[test]
fn sigstore_bundle_is_unsupported() {
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "size": 2,
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}],
    }))
    .unwrap();
    let err = SignatureArtifact::from_manifest(&manifest, |_| None).unwrap_err();
    assert!(matches!(err, Reason::UnsupportedFormat(_)));
}

// ------------------------------------------------------------------ keyless

const ISSUER: &str = "https://github.com/login/oauth";
const IDENTITY: &str = "mitr@redhat.com";
const INTEGRATED: i64 = 1674247893;

fn keyless_policy(issuer: Matcher, subject: Matcher) -> TrustPolicy {
    TrustPolicy {
        cosign: CosignPolicy {
            fulcio_roots: vec![text("cosign-keyless/fulcio_v1.crt.pem")],
            rekor_keys: vec![text("cosign-keyless/rekor.pub")],
            identities: vec![IdentityRule { issuer, subject }],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn keyless_trust() -> Trust {
    keyless_policy(
        Matcher::Exact(ISSUER.into()),
        Matcher::Exact(IDENTITY.into()),
    )
    .compile()
    .unwrap()
}

/// The keyless signature as the `.sig` layer annotations carry it.
fn keyless_annotations() -> (Vec<u8>, serde_json::Map<String, serde_json::Value>) {
    let s = containers_image_signature("cosign-keyless/signature-1");
    (s.payload, s.annotations)
}

fn keyless_sig() -> CosignSignature {
    let (payload, a) = keyless_annotations();
    let get = |k: &str| a.get(k).and_then(|v| v.as_str()).map(str::to_string);
    CosignSignature::from_annotations(
        payload,
        &get("dev.cosignproject.cosign/signature").unwrap(),
        get("dev.sigstore.cosign/certificate"),
        get("dev.sigstore.cosign/chain"),
        get("dev.sigstore.cosign/bundle"),
    )
    .unwrap()
}

#[test]
fn keyless_annotations_are_the_extracted_files() {
    let s = keyless_sig();
    assert_eq!(s.payload, bytes("cosign-keyless/payload.json"));
    assert_eq!(
        s.certificate.as_deref(),
        Some(text("cosign-keyless/certificate.pem").as_str())
    );
    assert_eq!(
        s.chain.as_deref(),
        Some(text("cosign-keyless/chain.pem").as_str())
    );
    assert_eq!(
        s.bundle.as_deref(),
        Some(text("cosign-keyless/rekor-bundle.json").as_str())
    );
}

#[test]
fn keyless_sig_manifest_verifies() {
    let (payload, ann) = keyless_annotations();
    // DERIVED: the `.sig` manifest carrying signature-1's annotations.
    let manifest = sig_manifest(&payload, &ann, serde_json::json!({}));
    let v = verify_manifest(
        &manifest,
        blobs(&[payload]),
        &descriptor("cosign-keyless/manifest.json", DOCKER_MANIFEST),
        "192.168.64.2:5000/cosign-signed/fulcio-rekor-1",
        &keyless_trust(),
        NOW,
    );
    let Verdict::Valid(valid) = v else {
        panic!("{v:?}")
    };
    let Signer::Keyless {
        identity,
        issuer,
        certificate_sha256,
    } = valid.signer
    else {
        panic!()
    };
    assert_eq!((identity.as_str(), issuer.as_str()), (IDENTITY, ISSUER));
    assert_eq!(
        certificate_sha256,
        Cert::from_pem_chain(&text("cosign-keyless/certificate.pem")).unwrap()[0].sha256()
    );
    assert_eq!(valid.signed_at, Some(SignedAt::RekorIntegrated(INTEGRATED)));
}

#[test]
fn keyless_identity_rules() {
    let run = |p: TrustPolicy| {
        check(
            keyless_sig(),
            "cosign-keyless/manifest.json",
            &p.compile().unwrap(),
        )
    };
    let exact = |s: &str| Matcher::Exact(s.into());
    let re = |s: &str| Matcher::Regexp(s.into());
    assert!(run(keyless_policy(exact(ISSUER), re(".*@redhat\\.com"))).is_valid());
    assert!(run(keyless_policy(re("https://github\\.com/.*"), re(".*"))).is_valid());
    assert_eq!(
        reason(run(keyless_policy(
            exact(ISSUER),
            exact("someone@redhat.com")
        ))),
        Reason::IdentityNotTrusted {
            identity: Some(IDENTITY.into()),
            issuer: Some(ISSUER.into())
        }
    );
    // Anchored: a prefix is not a match.
    assert!(matches!(
        reason(run(keyless_policy(exact(ISSUER), re("mitr@redhat")))),
        Reason::IdentityNotTrusted { .. }
    ));
    assert_eq!(
        reason(run(keyless_policy(
            exact("https://accounts.google.com"),
            exact(IDENTITY)
        ))),
        Reason::IssuerNotTrusted {
            issuer: Some(ISSUER.into())
        }
    );
}

#[test]
fn keyless_wrong_rekor_key() {
    let mut p = keyless_policy(
        Matcher::Exact(ISSUER.into()),
        Matcher::Exact(IDENTITY.into()),
    );
    p.cosign.rekor_keys = vec![text("cosign-key/cosign2.pub")];
    let v = check(
        keyless_sig(),
        "cosign-keyless/manifest.json",
        &p.compile().unwrap(),
    );
    assert_eq!(
        reason(v),
        Reason::UnknownRekorLog(
            "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d".into()
        )
    );
}

/// DERIVED: the bundle with its integratedTime moved by one second; the SET
/// no longer verifies (so the time cannot be moved into a validity window).
#[test]
fn keyless_tampered_integrated_time() {
    let mut sig = keyless_sig();
    sig.bundle = Some(sig.bundle.unwrap().replace("1674247893", "1674247894"));
    let v = check(sig, "cosign-keyless/manifest.json", &keyless_trust());
    assert_eq!(reason(v), Reason::SetInvalid);
}

/// DERIVED: a genuine SET, for another entry (the 2021 sigstore-rs bundle).
#[test]
fn keyless_bundle_of_another_entry() {
    let mut sig = keyless_sig();
    sig.bundle = Some(text("cosign-keyless-sigstore-rs/rekor-bundle.json"));
    let v = check(sig, "cosign-keyless/manifest.json", &keyless_trust());
    assert_eq!(reason(v), Reason::RekorEntryMismatch("payload hash".into()));
}

#[test]
fn keyless_without_bundle_or_chain() {
    let mut sig = keyless_sig();
    sig.bundle = None;
    assert_eq!(
        reason(check(sig, "cosign-keyless/manifest.json", &keyless_trust())),
        Reason::BundleMissing
    );
    let mut sig = keyless_sig();
    sig.chain = None;
    assert_eq!(
        reason(check(sig, "cosign-keyless/manifest.json", &keyless_trust())),
        Reason::ChainUntrusted
    );
}

#[test]
fn keyless_other_fulcio_root() {
    // The 2021 root (FULCIO_CRT_1) did not issue this chain.
    let mut p = keyless_policy(
        Matcher::Exact(ISSUER.into()),
        Matcher::Exact(IDENTITY.into()),
    );
    let roots = Cert::from_pem_chain(&text("cosign-keyless-sigstore-rs/fulcio-roots.pem")).unwrap();
    p.cosign.fulcio_roots =
        vec![
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, roots[0].der())
                .unwrap(),
        ];
    let v = check(
        keyless_sig(),
        "cosign-keyless/manifest.json",
        &p.compile().unwrap(),
    );
    assert_eq!(reason(v), Reason::ChainUntrusted);
}

#[test]
fn keyless_tampered_payload_and_manifest() {
    let mut sig = keyless_sig();
    // DERIVED: last hex digit of the manifest digest changed in the payload.
    let p = String::from_utf8(sig.payload.clone()).unwrap();
    sig.payload = p.replace("c37d9a", "c37d9b").into_bytes();
    assert_ne!(sig.payload, keyless_sig().payload);
    assert_eq!(
        reason(check(sig, "cosign-keyless/manifest.json", &keyless_trust())),
        Reason::SignatureInvalid
    );
    // The key-based set's manifest is not the one this signature names.
    assert!(matches!(
        reason(check(
            keyless_sig(),
            "cosign-key/manifest.json",
            &keyless_trust()
        )),
        Reason::DigestMismatch { .. }
    ));
}

#[test]
fn keyless_certificate_validity_is_checked_at_the_given_time() {
    let leaf = &Cert::from_pem_chain(&text("cosign-keyless/certificate.pem")).unwrap()[0];
    let chain = Cert::from_pem_chain(&text("cosign-keyless/chain.pem")).unwrap();
    let roots = Cert::from_pem_chain(&text("cosign-keyless/fulcio_v1.crt.pem")).unwrap();
    assert_eq!(verify_chain(leaf, &chain, &roots, INTEGRATED), Ok(()));
    // At "now" the ten-minute leaf has long expired.
    assert!(matches!(
        verify_chain(leaf, &chain, &roots, NOW),
        Err(Reason::CertificateExpired { .. })
    ));
    // 2023-01-20 20:51:30, one second before notBefore.
    assert!(matches!(
        verify_chain(leaf, &chain, &roots, 1674247890),
        Err(Reason::CertificateNotYetValid { .. })
    ));
}

/// The 2021 vector: rekord entry, leaf directly under FULCIO_CRT_1, no
/// intermediate, and no OIDC issuer extension (Fulcio added it later).
#[test]
fn keyless_sigstore_rs_2021_vector() {
    let sig = CosignSignature::from_annotations(
        bytes("cosign-keyless-sigstore-rs/payload.json"),
        &text("cosign-keyless-sigstore-rs/signature.b64"),
        Some(text("cosign-keyless-sigstore-rs/certificate.pem")),
        None,
        Some(text("cosign-keyless-sigstore-rs/rekor-bundle.json")),
    )
    .unwrap();
    // Each piece verifies.
    let leaf = &Cert::from_pem_chain(sig.certificate.as_ref().unwrap()).unwrap()[0];
    let rekor = PublicKey::from_pem(&text("cosign-keyless-sigstore-rs/rekor.pub")).unwrap();
    let bundle = Bundle::parse(sig.bundle.as_ref().unwrap().as_bytes()).unwrap();
    assert_eq!(bundle.integrated_time, 1634714717);
    assert_eq!(bundle.verify_set(std::slice::from_ref(&rekor)), Ok(()));
    assert_eq!(
        bundle.check_entry(&sig.payload, &sig.signature, EntryKey::Certificate(leaf)),
        Ok(())
    );
    assert_eq!(
        leaf.public_key().verify(&sig.payload, &sig.signature),
        Ok(())
    );
    let roots = Cert::from_pem_chain(&text("cosign-keyless-sigstore-rs/fulcio-roots.pem")).unwrap();
    assert_eq!(
        verify_chain(leaf, &[], &roots, bundle.integrated_time),
        Ok(())
    );
    assert_eq!(
        verify_chain(leaf, &[], &roots[1..], bundle.integrated_time),
        Err(Reason::ChainUntrusted)
    );
    assert_eq!(leaf.fulcio_issuer(), None);

    // The whole path: everything passes up to the identity rule, which
    // cannot match a certificate without an issuer.
    let policy = TrustPolicy {
        cosign: CosignPolicy {
            fulcio_roots: vec![text("cosign-keyless-sigstore-rs/fulcio-roots.pem")],
            rekor_keys: vec![text("cosign-keyless-sigstore-rs/rekor.pub")],
            identities: vec![IdentityRule {
                issuer: Matcher::Regexp(".*".into()),
                subject: Matcher::Exact("flavio@castelli.me".into()),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let artifact = SignatureArtifact::Cosign {
        subject: None,
        signatures: vec![sig],
    };
    let subject = berth_trust::Descriptor {
        media_type: DOCKER_MANIFEST.into(),
        digest: "sha256:5f481572d088dc4023afb35fced9530ced3d9b03bf7299c6f492163cb9f0452e".into(),
        size: 0,
    };
    let v = verify(&artifact, &subject, "r", &policy.compile().unwrap(), NOW);
    assert_eq!(reason(v), Reason::IssuerNotTrusted { issuer: None });
}

/// Key-based signature with a Rekor bundle: DERIVED by pairing the keyless
/// bundle with a key-based signature; the entry names another key.
#[test]
fn key_based_with_foreign_bundle() {
    let mut p = TrustPolicy::default();
    p.cosign.keys = vec![text("cosign-key/cosign.pub")];
    p.cosign.rekor_keys = vec![text("cosign-keyless/rekor.pub")];
    let mut sig = key_sig("cosign-key/payload.json", "cosign-key/signature.b64");
    sig.bundle = Some(text("cosign-keyless/rekor-bundle.json"));
    let v = check(
        sig.clone(),
        "cosign-key/manifest.json",
        &p.compile().unwrap(),
    );
    assert_eq!(reason(v), Reason::RekorEntryMismatch("payload hash".into()));
    // Without Rekor keys the bundle is not looked at; require_rekor refuses a
    // signature without one.
    sig.bundle = None;
    p.cosign.require_rekor = true;
    assert_eq!(
        reason(check(
            sig,
            "cosign-key/manifest.json",
            &p.compile().unwrap()
        )),
        Reason::BundleMissing
    );
}

proptest::proptest! {
    /// Arbitrary manifests, blobs and bundles are refused, never a panic.
    #[test]
    fn arbitrary_input_never_panics(m in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                                    blob in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = SignatureArtifact::from_manifest(&m, |_| Some(blob.clone()));
        let _ = Bundle::parse(&m);
        let _ = berth_trust::cosign::SimpleSigning::parse(&m);
        let _ = TrustPolicy::from_json(&m);
    }

    /// Any one-bit change of the payload or of the signature is refused.
    #[test]
    fn any_bit_flip_is_refused(pos in 0usize..(261 + 72) * 8) {
        let mut sig = key_sig("cosign-key/payload.json", "cosign-key/signature.b64");
        let (byte, bit) = (pos / 8, pos % 8);
        if byte < sig.payload.len() {
            sig.payload[byte] ^= 1 << bit;
        } else if byte - sig.payload.len() < sig.signature.len() {
            let i = byte - sig.payload.len();
            sig.signature[i] ^= 1 << bit;
        } else {
            return Ok(());
        }
        let v = check(sig, "cosign-key/manifest.json", &key_trust(&["cosign-key/cosign.pub"]));
        proptest::prop_assert!(!v.is_valid());
    }
}
