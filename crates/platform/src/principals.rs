//! Callers that are not a customer's token: API keys for machines and staff (a kiosk, a
//! dispenser, a gym's front desk, a seed client), and the roles kept in the database for
//! people (staff, admins). The users service keeps both; every service asks it through
//! [`Principals`], which remembers an answer for at most [`REVOCATION_DELAY`], so a revoked key
//! or a withdrawn role is refused everywhere within that time.
//!
//! A key reads `kassa_<id>_<secret>`: the id (32 hex digits) names its record, and only a
//! SHA-256 of the secret (256 random bits) is stored, compared in constant time.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::Role;

/// How long a key's record or a person's role is remembered: a revocation takes effect
/// everywhere within this time.
pub const REVOCATION_DELAY: Duration = Duration::from_secs(1);

const PREFIX: &str = "kassa_";

/// A key as its holder shows it, parsed: its id and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownKey<'a> {
    pub id: Uuid,
    secret: &'a str,
}

impl<'a> ShownKey<'a> {
    /// `kassa_<32 hex>_<secret>`, or `None` for anything else.
    pub fn parse(text: &'a str) -> Option<Self> {
        let rest = text.trim().strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if id.len() != 32 || secret.len() < 32 || secret.len() > 64 {
            return None;
        }
        Some(ShownKey {
            id: Uuid::try_parse(id).ok()?,
            secret,
        })
    }

    /// Whether this is the key whose secret hashes to `hash` (hex), in constant time.
    pub fn matches(&self, hash: &str) -> bool {
        let shown = hash_secret(self.secret);
        shown.len() == hash.len()
            && shown
                .bytes()
                .zip(hash.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// A new key: its text (shown once, to the operator who made it) and what is stored of it.
pub fn new_key() -> (String, Uuid, String) {
    let id = Uuid::new_v4();
    let mut random = Vec::with_capacity(32);
    random.extend_from_slice(Uuid::new_v4().as_bytes());
    random.extend_from_slice(Uuid::new_v4().as_bytes());
    let secret = URL_SAFE_NO_PAD.encode(random);
    let text = format!("{PREFIX}{}_{secret}", id.simple());
    let hash = hash_secret(&secret);
    (text, id, hash)
}

fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the users service keeps of a key, as it answers `GET /internal/keys/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub hash: String,
}

/// A person's role as the users service keeps it (`GET /internal/users/{id}/role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeptRole {
    #[schema(value_type = String)]
    pub role: Role,
}

/// A lookup under way.
pub type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where keys and roles are kept: the users service, in this process or elsewhere.
pub trait Keeper: Send + Sync + 'static {
    /// The key `id`, if there is one and it is not revoked.
    fn key(&self, id: Uuid) -> Lookup<'_, Option<KeyRecord>>;
    /// The role of user `id`, if there is such a user.
    fn role(&self, id: Uuid) -> Lookup<'_, Option<Role>>;
}

/// Keys and roles as this process knows them: asked of the [`Keeper`], remembered for
/// [`REVOCATION_DELAY`]. A request extension on every service's routes.
#[derive(Clone)]
pub struct Principals {
    keeper: Arc<dyn Keeper>,
    keys: Arc<Recent<Option<Arc<KeyRecord>>>>,
    roles: Arc<Recent<Option<Role>>>,
}

impl std::fmt::Debug for Principals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Principals")
    }
}

impl Principals {
    pub fn new(keeper: impl Keeper) -> Self {
        Principals {
            keeper: Arc::new(keeper),
            keys: Arc::default(),
            roles: Arc::default(),
        }
    }

    /// The key shown, if it is a live key and its secret is the one kept.
    pub async fn key(&self, shown: &ShownKey<'_>) -> Result<Option<Arc<KeyRecord>>, String> {
        let record = match self.keys.get(shown.id) {
            Some(record) => record,
            None => {
                let record = self.keeper.key(shown.id).await?.map(Arc::new);
                self.keys.put(shown.id, record.clone());
                record
            }
        };
        Ok(record.filter(|r| shown.matches(&r.hash)))
    }

    /// The role user `id` holds now.
    pub async fn role(&self, id: Uuid) -> Result<Option<Role>, String> {
        if let Some(role) = self.roles.get(id) {
            return Ok(role);
        }
        let role = self.keeper.role(id).await?;
        self.roles.put(id, role);
        Ok(role)
    }
}

/// The most answers [`Recent`] holds; past it, the stale ones go (all, if none is).
const MAX_REMEMBERED: usize = 10_000;

/// Answers by id, each good for [`REVOCATION_DELAY`] from when it was asked. A miss is asked
/// again by whoever meets it (two requests at once may both ask: at most a few calls a second).
struct Recent<V> {
    entries: std::sync::Mutex<std::collections::HashMap<Uuid, (std::time::Instant, V)>>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            entries: Default::default(),
        }
    }
}

impl<V: Clone> Recent<V> {
    fn get(&self, id: Uuid) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|(at, _)| at.elapsed() < REVOCATION_DELAY)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, id: Uuid, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_REMEMBERED {
            entries.retain(|_, (at, _)| at.elapsed() < REVOCATION_DELAY);
            if entries.len() >= MAX_REMEMBERED {
                entries.clear();
            }
        }
        entries.insert(id, (std::time::Instant::now(), value));
    }
}

/// The users service's paths [`PeerKeeper`] asks.
pub const KEY_PATH: &str = "/internal/keys/{id}";
pub const ROLE_PATH: &str = "/internal/users/{id}/role";

/// The [`Keeper`] that asks the users service through the process's directory, as a service.
pub struct PeerKeeper {
    client: crate::peer::PeerClient,
}

impl PeerKeeper {
    pub fn new(directory: crate::peer::Directory, secret: Option<crate::auth::Secret>) -> Self {
        let settings = crate::peer::PeerSettings {
            timeout: Duration::from_secs(2),
            attempts: 2,
            ..Default::default()
        };
        PeerKeeper {
            client: crate::peer::PeerClient::new(directory, "users", settings).as_service(secret),
        }
    }

    async fn ask<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<Option<T>, String> {
        let answer = self
            .client
            .get(&path, None)
            .await
            .map_err(|e| e.to_string())?;
        match answer.status.as_u16() {
            200 => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| e.to_string()),
            404 => Ok(None),
            status => Err(format!("the users service answered {status}")),
        }
    }
}

impl Keeper for PeerKeeper {
    fn key(&self, id: Uuid) -> Lookup<'_, Option<KeyRecord>> {
        Box::pin(self.ask(KEY_PATH.replace("{id}", &id.to_string())))
    }

    fn role(&self, id: Uuid) -> Lookup<'_, Option<Role>> {
        Box::pin(async move {
            let kept: Option<KeptRole> =
                self.ask(ROLE_PATH.replace("{id}", &id.to_string())).await?;
            Ok(kept.map(|k| k.role))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_remembered_for_the_revocation_delay_and_the_map_stays_bounded() {
        let recent: Recent<u32> = Recent::default();
        let id = Uuid::new_v4();
        assert_eq!(recent.get(id), None);
        recent.put(id, 7);
        assert_eq!(recent.get(id), Some(7));
        recent.entries.lock().unwrap().get_mut(&id).unwrap().0 -= REVOCATION_DELAY;
        assert_eq!(recent.get(id), None, "stale after the delay");
        for _ in 0..MAX_REMEMBERED + 5 {
            recent.put(Uuid::new_v4(), 1);
        }
        assert!(recent.entries.lock().unwrap().len() <= MAX_REMEMBERED);
    }

    #[test]
    fn a_new_key_parses_back_and_matches_only_its_hash() {
        let (text, id, hash) = new_key();
        let shown = ShownKey::parse(&text).unwrap();
        assert_eq!(shown.id, id);
        assert!(shown.matches(&hash));
        let (_, _, other) = new_key();
        assert!(!shown.matches(&other));
        let mut altered = text.clone();
        altered.pop();
        altered.push(if text.ends_with('A') { 'B' } else { 'A' });
        assert!(!ShownKey::parse(&altered).unwrap().matches(&hash));
        for bad in [
            "",
            "kassa_",
            "kassa_nothex_secret",
            "eyJhbGciOi.x.y",
            &text[1..],
        ] {
            assert_eq!(ShownKey::parse(bad), None, "{bad}");
        }
    }
}
