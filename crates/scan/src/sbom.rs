//! SBOMs of an inventory: SPDX 2.3 JSON and CycloneDX 1.5 JSON.
//!
//! Both list the image as the described component and every package with
//! its version and package URL, and say where each package was found: the
//! layer digest and the evidence file (SPDX in the package's `sourceInfo`,
//! CycloneDX as the component properties `berth:layer` and `berth:path`,
//! beside `berth:ecosystem`). The documents depend only on their inputs:
//! the SPDX namespace is built from the repository and digest, the
//! CycloneDX serial number from the digest, so the same image and
//! inventory give the same bytes.

pub mod input;

use serde_json::{json, Value};

use crate::inventory::Package;

/// What the documents say about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `project/repo`
    pub repository: String,
    /// The manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// When the document was made, `YYYY-MM-DDThh:mm:ssZ` (the only form
    /// SPDX accepts).
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SbomError {
    #[error("image digest {0:?} is not `algorithm:hex` with at least 32 hex digits")]
    Digest(String),
    #[error("creation time {0:?} is not YYYY-MM-DDThh:mm:ssZ")]
    Created(String),
}

const TOOL: &str = concat!("berth-scan-", env!("CARGO_PKG_VERSION"));
/// A reserved domain (RFC 2606): SPDX wants a URI that names the document,
/// not one that resolves.
const NAMESPACE_BASE: &str = "https://berth.invalid/spdx";

fn check(info: &ImageInfo) -> Result<(), SbomError> {
    let t = info.created.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    let ok = t.len() == shape.len()
        && t.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            s => c == s,
        });
    if !ok {
        return Err(SbomError::Created(info.created.clone()));
    }
    serial(&info.digest).map(|_| ())
}

/// `urn:uuid:` from the digest's first 122 bits, in the version 4 layout:
/// RFC 9562 lets a v4 UUID come from any pseudo-random source, and a
/// digest is one that makes the serial number reproducible (CycloneDX's
/// schema takes versions 1 to 5 only, so no v8).
fn serial(digest: &str) -> Result<String, SbomError> {
    let bad = || SbomError::Digest(digest.to_owned());
    let (_, hex) = digest.split_once(':').ok_or_else(bad)?;
    if hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let h = hex.to_ascii_lowercase();
    let variant =
        "89ab".as_bytes()[usize::from_str_radix(&h[16..17], 16).expect("hex") & 3] as char;
    Ok(format!(
        "urn:uuid:{}-{}-4{}-{variant}{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ))
}

fn where_found(p: &Package) -> String {
    match &p.layer {
        Some(layer) => format!("found in layer {layer} at {}", p.path),
        None => format!("found at {}", p.path),
    }
}

/// SPDX 2.3 JSON.
pub fn spdx(info: &ImageInfo, packages: &[Package]) -> Result<String, SbomError> {
    check(info)?;
    let mut spdx_packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": info.repository,
        "versionInfo": info.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}", i + 1);
        spdx_packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": where_found(p),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", info.repository, info.digest),
        "documentNamespace": format!("{NAMESPACE_BASE}/{}/{}", info.repository, info.digest),
        "creationInfo": {
            "created": info.created,
            "creators": [format!("Tool: {TOOL}")],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    Ok(pretty(&doc))
}

/// CycloneDX 1.5 JSON.
pub fn cyclonedx(info: &ImageInfo, packages: &[Package]) -> Result<String, SbomError> {
    check(info)?;
    let refs: Vec<String> = (1..=packages.len())
        .map(|i| format!("package-{i}"))
        .collect();
    let components: Vec<Value> = packages
        .iter()
        .zip(&refs)
        .map(|(p, r)| {
            let mut properties = vec![
                json!({"name": "berth:ecosystem", "value": p.ecosystem.to_string()}),
                json!({"name": "berth:path", "value": p.path}),
            ];
            if let Some(layer) = &p.layer {
                properties.insert(1, json!({"name": "berth:layer", "value": layer}));
            }
            json!({
                "type": "library",
                "bom-ref": r,
                "name": p.name,
                "version": p.version,
                "purl": p.purl,
                "properties": properties,
            })
        })
        .collect();
    let doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial(&info.digest)?,
        "version": 1,
        "metadata": {
            "timestamp": info.created,
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "berth-scan",
                    "version": env!("CARGO_PKG_VERSION"),
                }],
            },
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": info.repository,
                "version": info.digest,
            },
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": refs}],
    });
    Ok(pretty(&doc))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_come_from_the_digest() {
        let d = "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            serial(d).unwrap(),
            "urn:uuid:01234567-89ab-4def-8123-456789abcdef"
        );
        assert!(serial("sha256:xyz").is_err());
        assert!(serial("0123456789abcdef0123456789abcdef").is_err());
    }

    #[test]
    fn refuses_bad_metadata() {
        let mut info = ImageInfo {
            repository: "p/r".into(),
            digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .into(),
            created: "2024-01-02T03:04:05Z".into(),
        };
        assert!(spdx(&info, &[]).is_ok());
        info.created = "2024-01-02 03:04:05".into();
        assert!(matches!(cyclonedx(&info, &[]), Err(SbomError::Created(_))));
    }
}
