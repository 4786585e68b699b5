//! Rekor bundles as cosign stores them in the `dev.sigstore.cosign/bundle`
//! annotation, verified offline: the SignedEntryTimestamp (SET) and the
//! entry body (`hashedrekord` or `rekord`, v0.0.1).

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::keys::{hex, PublicKey};
use crate::x509::Cert;
use crate::Reason;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A parsed bundle: `{"SignedEntryTimestamp": b64, "Payload": {body,
/// integratedTime, logIndex, logID}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The SET: a DER ECDSA signature.
    pub signed_entry_timestamp: Vec<u8>,
    /// The entry body, base64, as stored.
    pub body: String,
    /// Unix seconds at which the log integrated the entry.
    pub integrated_time: i64,
    pub log_index: i64,
    /// Lowercase hex SHA-256 of the log's DER public key.
    pub log_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawBundle {
    signed_entry_timestamp: String,
    payload: RawPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// The key the entry must name: the verifying key itself (key-based) or
/// the signing certificate (keyless).
#[derive(Debug, Clone, Copy)]
pub enum EntryKey<'a> {
    Key(&'a PublicKey),
    Certificate(&'a Cert),
}

fn bad(what: impl std::fmt::Display) -> Reason {
    Reason::Malformed(format!("Rekor bundle: {what}"))
}

impl Bundle {
    /// Parses the bundle JSON.
    pub fn parse(json: &[u8]) -> Result<Bundle, Reason> {
        let raw: RawBundle = serde_json::from_slice(json).map_err(bad)?;
        Ok(Bundle {
            signed_entry_timestamp: B64.decode(raw.signed_entry_timestamp).map_err(bad)?,
            body: raw.payload.body,
            integrated_time: raw.payload.integrated_time,
            log_index: raw.payload.log_index,
            log_id: raw.payload.log_id,
        })
    }

    /// The bytes the SET signs: the canonical JSON (RFC 8785: keys sorted,
    /// no whitespace) of `{body, integratedTime, logID, logIndex}`, as
    /// Rekor produces it.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
        format!(
            "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
            s(&self.body),
            self.integrated_time,
            s(&self.log_id),
            self.log_index
        )
        .into_bytes()
    }

    /// Finds the Rekor key whose id is the bundle's log ID and verifies the
    /// SET with it (ECDSA, SHA-256, DER).
    pub fn verify_set(&self, rekor_keys: &[PublicKey]) -> Result<(), Reason> {
        let key = rekor_keys
            .iter()
            .find(|k| k.key_id().strip_prefix("sha256:") == Some(self.log_id.as_str()))
            .ok_or_else(|| Reason::UnknownRekorLog(self.log_id.clone()))?;
        key.verify(&self.signed_bytes(), &self.signed_entry_timestamp)
            .map_err(|_| Reason::SetInvalid)
    }

    /// Checks the entry body describes this signature: kind `hashedrekord`
    /// or `rekord` v0.0.1, `spec.data.hash` = SHA-256 of `payload`,
    /// `spec.signature.content` = `signature`, and
    /// `spec.signature.publicKey.content` = the key or certificate used.
    pub fn check_entry(
        &self,
        payload: &[u8],
        signature: &[u8],
        key: EntryKey<'_>,
    ) -> Result<(), Reason> {
        let mismatch = |w: &str| Reason::RekorEntryMismatch(w.to_string());
        let body: serde_json::Value =
            serde_json::from_slice(&B64.decode(&self.body).map_err(bad)?).map_err(bad)?;
        let kind = body["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "hashedrekord" | "rekord") || body["apiVersion"] != "0.0.1" {
            return Err(Reason::UnsupportedFormat(format!(
                "Rekor entry {kind} {}",
                body["apiVersion"]
            )));
        }
        let spec = &body["spec"];
        let hash = &spec["data"]["hash"];
        if hash["algorithm"] != "sha256"
            || hash["value"].as_str() != Some(&hex(&Sha256::digest(payload)))
        {
            return Err(mismatch("payload hash"));
        }
        let sig = spec["signature"]["content"]
            .as_str()
            .ok_or_else(|| bad("no signature"))?;
        if B64.decode(sig).map_err(bad)? != signature {
            return Err(mismatch("signature"));
        }
        let pk = spec["signature"]["publicKey"]["content"]
            .as_str()
            .ok_or_else(|| bad("no public key"))?;
        let pem = String::from_utf8(B64.decode(pk).map_err(bad)?).map_err(bad)?;
        let same = match key {
            EntryKey::Certificate(c) => Cert::from_pem_chain(&pem)?.first() == Some(c),
            EntryKey::Key(k) => PublicKey::from_pem(&pem).ok().as_ref() == Some(k),
        };
        if !same {
            return Err(mismatch("public key or certificate"));
        }
        Ok(())
    }
}
