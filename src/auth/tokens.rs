//! Registry tokens (the Docker token-auth specification): scopes as clients
//! ask for them, the JWT the token endpoint issues, and the key ring that
//! signs and verifies them. Tokens are HS256 JWTs with a `kid`; Berth is both
//! their issuer and their only verifier, so a symmetric key is enough, and
//! checking one costs about a microsecond on the hot path.

use std::collections::HashMap;
use std::sync::RwLock;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::meta::SigningKeyRecord;

/// One `scope` a client asks for: `repository:team/app:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope; the type may carry a class (`repository(plugin)`),
    /// which is ignored. Names never contain `:`, actions are after the last.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Every scope of a space-separated list (the OAuth2 form), skipping
    /// what does not parse.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        values
            .into_iter()
            .flat_map(|v| v.split(' '))
            .filter_map(Scope::parse)
            .collect()
    }
}

/// An entry of the token's `access` claim: what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented to `/v2/` and the API: grants what `access` lists.
    Access,
    /// Exchanged at the token endpoint for access tokens (OAuth2 offline).
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Grant>,
    /// `user`, `robot` or `anonymous`: how `sub` is looked up.
    pub kind: String,
    #[serde(rename = "use")]
    pub token_use: TokenUse,
}

impl Claims {
    /// Whether the token grants `action` on the resource.
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|g| {
            g.kind == kind && g.name == name && g.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is not valid: {0}")]
    Invalid(String),
    #[error("token was signed by an unknown key")]
    UnknownKey,
}

struct Keys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

/// The keys tokens are signed and checked with (see `signing_keys`).
pub struct KeyRing {
    issuer: String,
    audience: String,
    keys: RwLock<Option<Keys>>,
}

pub fn decode_secret(record: &SigningKeyRecord) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(&record.secret)
        .ok()
}

impl KeyRing {
    pub fn new(issuer: &str, audience: &str) -> KeyRing {
        KeyRing {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            keys: RwLock::new(None),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Replaces the keys with the stored ones: the newest unretired signs.
    pub fn load(&self, records: &[SigningKeyRecord]) {
        let verifying = records
            .iter()
            .filter_map(|r| Some((r.kid.clone(), DecodingKey::from_secret(&decode_secret(r)?))))
            .collect();
        let signing = records
            .iter()
            .filter(|r| r.retired_at.is_none())
            .max_by_key(|r| r.created_at)
            .and_then(|r| Some((r.kid.clone(), EncodingKey::from_secret(&decode_secret(r)?))));
        let mut keys = self.keys.write().expect("key ring lock");
        *keys = signing.map(|(signing_kid, signing)| Keys {
            signing_kid,
            signing,
            verifying,
        });
    }

    pub fn has(&self, kid: &str) -> bool {
        let keys = self.keys.read().expect("key ring lock");
        keys.as_ref().is_some_and(|k| k.verifying.contains_key(kid))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let keys = self.keys.read().expect("key ring lock");
        let keys = keys.as_ref().expect("a signing key is loaded at start");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &keys.signing).expect("HS256 signing cannot fail")
    }

    /// Checks signature, issuer, audience, validity period and use.
    pub fn verify(&self, token: &str, token_use: TokenUse) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let keys = self.keys.read().expect("key ring lock");
        let key = keys
            .as_ref()
            .and_then(|k| k.verifying.get(&kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
        if claims.token_use != token_use {
            return Err(TokenError::Invalid("token is for another use".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::parse("repository:team/app:pull,push"),
            Some(Scope {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()],
            })
        );
        assert_eq!(
            Scope::parse("repository(plugin):a:pull").unwrap().kind,
            "repository"
        );
        assert_eq!(Scope::parse("registry:catalog:*").unwrap().actions, ["*"]);
        assert!(Scope::parse("repository:pull").is_none());
        assert!(Scope::parse("nothing").is_none());
        let all = Scope::parse_all(["repository:a:pull repository:b:push", "x"]);
        assert_eq!(all.len(), 2);
    }

    fn ring(secret: &str, kid: &str) -> KeyRing {
        let ring = KeyRing::new("berth", "berth-registry");
        ring.load(&[SigningKeyRecord {
            kid: kid.into(),
            secret: base64::engine::general_purpose::STANDARD.encode(secret),
            created_at: 1,
            retired_at: None,
        }]);
        ring
    }

    fn claims(exp: i64) -> Claims {
        let now = crate::meta::now_millis() / 1000;
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "berth-registry".into(),
            exp: now + exp,
            nbf: now - 1,
            iat: now,
            jti: "1".into(),
            access: vec![Grant {
                kind: "repository".into(),
                name: "a/b".into(),
                actions: vec!["pull".into()],
            }],
            kind: "user".into(),
            token_use: TokenUse::Access,
        }
    }

    #[test]
    fn sign_and_verify() {
        let ring = ring("k1-secret-k1-secret-k1-secret-32", "k1");
        let token = ring.sign(&claims(60));
        let c = ring.verify(&token, TokenUse::Access).unwrap();
        assert!(c.grants("repository", "a/b", "pull"));
        assert!(!c.grants("repository", "a/b", "push"));
        assert!(ring.verify(&token, TokenUse::Refresh).is_err());
        // Another key with the same kid: the signature does not match.
        let other = crate::auth::tokens::tests::ring("another-secret-another-secret-xx", "k1");
        assert!(other.verify(&token, TokenUse::Access).is_err());
        assert!(ring
            .verify(&ring.sign(&claims(-60)), TokenUse::Access)
            .is_err());
    }
}
