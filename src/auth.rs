//! API keys: who is calling, for which tenant, in which role. Keys come from
//! `BACKPROP_API_KEYS` (`tenant:role:secret,…`) and from a keys file that holds only SHA-256
//! hashes (managed with `backprop keys …`). Nothing here knows HTTP; `api::auth` extracts the
//! bearer token and asks [`Keyring::authenticate`].

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::{hash, hex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May call predict and read models.
    Predictor,
    /// May also upload datasets and train.
    Trainer,
    /// Everything in its tenant.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "predictor" => Some(Role::Predictor),
            "trainer" => Some(Role::Trainer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Predictor => "predictor",
            Role::Trainer => "trainer",
            Role::Admin => "admin",
        }
    }
}

/// The caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub role: Role,
}

/// The tenant of everything created while the server runs without keys.
pub const OPEN_TENANT: &str = "default";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    pub created_at: String,
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeysFile {
    pub keys: Vec<KeyEntry>,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Compares without an early exit, so timing says nothing about how much matched.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Loaded {
    /// (hash, principal)
    keys: Vec<([u8; 32], Principal)>,
    /// Entries in the file, revoked ones included: a file whose keys are all revoked still
    /// means "keys are in use", never "run open".
    entries: usize,
    file_mtime: Option<SystemTime>,
}

/// The keys in force.
pub struct Keyring {
    env_keys: Vec<([u8; 32], Principal)>,
    file: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

impl Keyring {
    /// `spec` is `BACKPROP_API_KEYS`; `file` the keys file (read now and whenever it changes).
    pub fn new(spec: Option<&str>, file: Option<PathBuf>) -> Result<Keyring, String> {
        let mut env_keys = vec![];
        for (i, item) in spec
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let mut parts = item.splitn(3, ':');
            let (Some(tenant), Some(role), Some(secret)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "BACKPROP_API_KEYS entry {} is not tenant:role:secret",
                    i + 1
                ));
            };
            let role = Role::parse(role)
                .ok_or_else(|| format!("BACKPROP_API_KEYS entry {}: role \"{role}\" is not admin, trainer or predictor", i + 1))?;
            if tenant.is_empty() || secret.len() < 8 {
                return Err(format!(
                    "BACKPROP_API_KEYS entry {}: needs a tenant and a secret of at least 8 characters",
                    i + 1
                ));
            }
            env_keys.push((
                hash(secret),
                Principal {
                    tenant: tenant.to_string(),
                    role,
                },
            ));
        }
        let ring = Keyring {
            env_keys,
            file,
            loaded: RwLock::new(Loaded {
                keys: vec![],
                entries: 0,
                file_mtime: None,
            }),
        };
        ring.reload()?;
        Ok(ring)
    }

    /// Re-reads the keys file if it changed.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if self
            .loaded
            .read()
            .map(|l| l.file_mtime == mtime)
            .unwrap_or(false)
        {
            return Ok(());
        }
        let file = read_keys(path)?;
        let keys: Vec<([u8; 32], Principal)> = file
            .keys
            .iter()
            .filter(|k| !k.revoked)
            .filter_map(|k| {
                Some((
                    unhex(&k.hash)?,
                    Principal {
                        tenant: k.tenant.clone(),
                        role: k.role,
                    },
                ))
            })
            .collect();
        let active = keys.len();
        if let Ok(mut l) = self.loaded.write() {
            let first = l.file_mtime.is_none() && l.entries == 0;
            *l = Loaded {
                keys,
                entries: file.keys.len(),
                file_mtime: mtime,
            };
            if !first {
                tracing::info!(active, file = %path.display(), "keys file changed; keys reloaded");
            }
        }
        Ok(())
    }

    /// Active keys: (from `BACKPROP_API_KEYS`, from the keys file).
    pub fn counts(&self) -> (usize, usize) {
        let file = self.loaded.read().map(|l| l.keys.len()).unwrap_or(0);
        (self.env_keys.len(), file)
    }

    /// No keys configured at all (none revoked either): the server runs open.
    pub fn is_open(&self) -> bool {
        self.env_keys.is_empty() && self.loaded.read().map(|l| l.entries == 0).unwrap_or(false)
    }

    /// The principal a bearer secret stands for.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let h = hash(secret);
        let mut found = None;
        // Look at every key, match or not, so the time taken does not depend on which matched.
        for (k, p) in &self.env_keys {
            if same(k, &h) {
                found = Some(p.clone());
            }
        }
        if let Ok(l) = self.loaded.read() {
            for (k, p) in &l.keys {
                if same(k, &h) {
                    found = Some(p.clone());
                }
            }
        }
        found
    }
}

pub fn read_keys(path: &Path) -> Result<KeysFile, String> {
    match std::fs::read(path) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("keys file {}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
        Err(e) => Err(format!("keys file {}: {e}", path.display())),
    }
}

fn write_keys(path: &Path, f: &KeysFile) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(f).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `backprop keys create`: adds a key and returns (entry, secret); the secret is not stored.
pub fn create_key(path: &Path, tenant: &str, role: Role) -> Result<(KeyEntry, String), String> {
    if tenant.is_empty() || tenant.contains([':', ',']) {
        return Err("a tenant name must be non-empty and contain no ':' or ','".into());
    }
    let mut f = read_keys(path)?;
    let secret = format!(
        "bp_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let entry = KeyEntry {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        tenant: tenant.to_string(),
        role,
        hash: hex(&hash(&secret)),
        created_at: crate::clock::rfc3339(crate::clock::now_ms()),
        revoked: false,
    };
    f.keys.push(entry.clone());
    write_keys(path, &f)?;
    Ok((entry, secret))
}

/// `backprop keys revoke ID`.
pub fn revoke_key(path: &Path, id: &str) -> Result<(), String> {
    let mut f = read_keys(path)?;
    let k = f
        .keys
        .iter_mut()
        .find(|k| k.id == id)
        .ok_or_else(|| format!("no key {id}"))?;
    k.revoked = true;
    write_keys(path, &f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_authenticate_by_secret() {
        let r = Keyring::new(
            Some("acme:trainer:s3cret-one, beta:predictor:s3cret-two"),
            None,
        )
        .unwrap();
        assert!(!r.is_open());
        assert_eq!(
            r.authenticate("s3cret-one"),
            Some(Principal {
                tenant: "acme".into(),
                role: Role::Trainer
            })
        );
        assert_eq!(r.authenticate("s3cret-two").unwrap().role, Role::Predictor);
        assert_eq!(r.authenticate("s3cret-on"), None);
        assert!(
            Keyring::new(Some("acme:root:s3cret-one"), None)
                .err()
                .unwrap()
                .contains("role")
        );
        assert!(Keyring::new(Some("acme:trainer"), None).is_err());
        assert!(Keyring::new(None, None).unwrap().is_open());
    }

    #[test]
    fn the_keys_file_holds_hashes_and_revocation_takes_effect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (entry, secret) = create_key(&path, "acme", Role::Admin).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the secret is never stored");
        let ring = Keyring::new(None, Some(path.clone())).unwrap();
        assert_eq!(ring.authenticate(&secret).unwrap().tenant, "acme");
        revoke_key(&path, &entry.id).unwrap();
        // mtime resolution can be coarse: force a reload by clearing the remembered time
        ring.loaded.write().unwrap().file_mtime = None;
        ring.reload().unwrap();
        assert_eq!(ring.authenticate(&secret), None);
        assert!(
            !ring.is_open(),
            "revoking every key must not open the server"
        );
    }
}
