//! Fixture helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;

use berth_trust::keys::sha256_digest;
use berth_trust::Descriptor;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn bytes(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

pub fn text(path: &str) -> String {
    String::from_utf8(bytes(path)).unwrap()
}

/// The descriptor of a manifest fixture.
pub fn descriptor(path: &str, media_type: &str) -> Descriptor {
    let b = bytes(path);
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(&b),
        size: b.len() as u64,
    }
}

/// A blob store holding exactly these blobs, by their digests.
pub fn blobs(list: &[Vec<u8>]) -> impl Fn(&str) -> Option<Vec<u8>> {
    let map: HashMap<String, Vec<u8>> =
        list.iter().map(|b| (sha256_digest(b), b.clone())).collect();
    move |d: &str| map.get(d).cloned()
}

/// containers/image's `signature-1` format: NUL, `sigstore-json`, newline,
/// then `{"mimeType", "payload" (base64), "annotations"}`.
pub struct ContainersImageSignature {
    pub mime_type: String,
    pub payload: Vec<u8>,
    pub annotations: serde_json::Map<String, serde_json::Value>,
}

pub fn containers_image_signature(path: &str) -> ContainersImageSignature {
    use base64::Engine;
    let b = bytes(path);
    let json = b
        .strip_prefix(b"\0sigstore-json\n".as_slice())
        .expect("signature-1 prefix");
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    ContainersImageSignature {
        mime_type: v["mimeType"].as_str().unwrap().into(),
        payload: base64::engine::general_purpose::STANDARD
            .decode(v["payload"].as_str().unwrap())
            .unwrap(),
        annotations: v["annotations"].as_object().unwrap().clone(),
    }
}

/// The `.sig` manifest cosign would push for one payload layer with these
/// annotations (compact JSON, cosign's layout). DERIVED in the tests.
pub fn sig_manifest(
    payload: &[u8],
    annotations: &serde_json::Map<String, serde_json::Value>,
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 233,
                   "digest": "sha256:be321600a5bd794947dce257829a2f08c21b05dde3edf84706faf6f2ae0f5f60"},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "size": payload.len(), "digest": sha256_digest(payload),
                    "annotations": annotations}],
    });
    if let serde_json::Value::Object(extra) = extra {
        m.as_object_mut().unwrap().extend(extra);
    }
    serde_json::to_vec(&m).unwrap()
}
