//! Named deployments: a tenant's stable name for one model at a time, its versions and
//! rollback, and resolving a name to a loaded model for predictions. A prediction by name
//! reads the name from [`DeploymentCache`] (and the model from `ModelCache`), so it costs no
//! database round trip while the cache entry is fresh. Knows no HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use uuid::Uuid;

use super::read::parse_json;
use super::{Error, Result, Service};
use crate::clock::now_ms;
use crate::nn::Model;
use crate::store::{Cursor, DeploymentRecord, DeploymentVersion, Page};

/// The longest deployment name (a DNS label's length, so a name can become a host name).
pub const NAME_MAX: usize = 63;

/// The pattern a deployment name matches (also in `openapi.yaml`).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$";

/// Versions a deployment's answer lists (the newest).
pub const VERSIONS_SHOWN: i64 = 100;

/// How long a name read from the store is trusted without reading it again. A switch made
/// on this node replaces its entry at once; a switch made by another node sharing the
/// PostgreSQL database is seen here within this time.
pub const RESOLVE_TTL: Duration = Duration::from_secs(1);

/// Names held at most; past it the cache starts over (entries are one read to refill).
const CACHE_CAPACITY: usize = 10_000;

/// Refuses a name that does not match [`NAME_PATTERN`]: letters, digits, `-` and `_`, not
/// starting with `-` or `_`, 1 to 63 characters. Such a name is safe in a URL path segment,
/// a TF Serving `{name}:predict` and a file name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "/name",
            format!(
                "deployment name {name:?} must be 1 to {NAME_MAX} letters, digits, '-' or '_', starting with a letter or digit"
            ),
        ))
    }
}

/// What a name resolves to: the version and its model, loaded.
#[derive(Clone)]
pub struct Resolved {
    pub version: i64,
    pub model_id: Uuid,
    pub model: Arc<Model>,
}

#[derive(Clone, Copy)]
struct Entry {
    model_id: Uuid,
    version: i64,
    read_at: Instant,
}

/// (tenant, name) → the model its current version points at.
#[derive(Default)]
pub struct DeploymentCache {
    entries: RwLock<HashMap<(String, String), Entry>>,
    /// Counts the changes made on this node. A read from the store that began before a
    /// change must not put back what the change replaced, so [`fill`](Self::fill) checks it.
    changes: AtomicU64,
}

impl DeploymentCache {
    /// The (model, version) of `tenant`'s `name`, when read less than [`RESOLVE_TTL`] ago.
    fn get(&self, tenant: &str, name: &str) -> Option<(Uuid, i64)> {
        let g = self.entries.read().ok()?;
        // A tuple key of Strings wants owned strings to look up; a miss costs one allocation
        // pair, a hit the same, both far below a forward pass.
        let e = g.get(&(tenant.to_owned(), name.to_owned()))?;
        (e.read_at.elapsed() < RESOLVE_TTL).then_some((e.model_id, e.version))
    }

    /// A ticket for [`fill`](Self::fill): taken before reading the store.
    fn ticket(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Remembers what the store said, unless a change was made on this node since `ticket`.
    fn fill(&self, tenant: &str, name: &str, model_id: Uuid, version: i64, ticket: u64) {
        if let Ok(mut g) = self.entries.write() {
            if self.changes.load(Ordering::SeqCst) != ticket {
                return;
            }
            if g.len() >= CACHE_CAPACITY {
                g.clear();
            }
            g.insert(
                (tenant.to_owned(), name.to_owned()),
                Entry {
                    model_id,
                    version,
                    read_at: Instant::now(),
                },
            );
        }
    }

    /// A change made on this node: the new (model, version), or `None` for a deleted name.
    /// Of two switches answered at once the newer version stays.
    fn changed(&self, tenant: &str, name: &str, now: Option<(Uuid, i64)>) {
        if let Ok(mut g) = self.entries.write() {
            self.changes.fetch_add(1, Ordering::SeqCst);
            let key = (tenant.to_owned(), name.to_owned());
            match now {
                None => {
                    g.remove(&key);
                }
                Some((model_id, version)) => {
                    if g.get(&key).is_some_and(|e| e.version > version) {
                        return;
                    }
                    if g.len() >= CACHE_CAPACITY {
                        g.clear();
                    }
                    g.insert(
                        key,
                        Entry {
                            model_id,
                            version,
                            read_at: Instant::now(),
                        },
                    );
                }
            }
        }
    }
}

/// `PUT /v1/deployments/{name}`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    model_id: Uuid,
}

/// `POST …/rollback`'s body: empty, `{}`, or the version to go back to.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    /// A whole number, also when written `6172.0` (JSON Schema's integers include it).
    #[serde(default, deserialize_with = "whole_number")]
    version: Option<i64>,
}

fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
        Some(v) => Err(D::Error::custom(format!("{v} is not a whole number"))),
    }
}

impl Service {
    /// Points `tenant`'s deployment `name` at the model the body names, as a new version.
    pub async fn deploy(&self, tenant: &str, name: &str, body: &[u8]) -> Result<DeploymentRecord> {
        check_name(name)?;
        let req: DeployRequest = parse_json(body)?;
        let model_id = req.model_id;
        self.deployable(tenant, model_id, "/model_id").await?;
        let d = self
            .store
            .deploy(tenant, name, model_id, None, now_ms())
            .await;
        let d = self.deployed(tenant, model_id, d, "/model_id").await?;
        let d =
            d.ok_or_else(|| Error::Internal("an unconditional deploy changed nothing".into()))?;
        self.deployments
            .changed(tenant, name, Some((d.model_id, d.version)));
        Ok(d)
    }

    /// Checks that `model_id` is the tenant's and loads (so a stored document that cannot
    /// be read is refused now, not at the first prediction), warming the model cache.
    async fn deployable(&self, tenant: &str, model_id: Uuid, pointer: &str) -> Result<()> {
        match self.model(tenant, model_id).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound(_)) => Err(Error::invalid(
                pointer,
                format!("no model {model_id} (of this tenant)"),
            )),
            Err(e) => Err(e),
        }
    }

    /// A deploy's outcome; a failure because the model was deleted meanwhile (the foreign
    /// key) is said as such.
    async fn deployed(
        &self,
        tenant: &str,
        model_id: Uuid,
        d: std::result::Result<Option<DeploymentRecord>, crate::store::StoreError>,
        pointer: &str,
    ) -> Result<Option<DeploymentRecord>> {
        match d {
            Ok(d) => Ok(d),
            Err(e) => match self.store.get_model(model_id).await? {
                Some(m) if m.tenant == tenant => Err(e.into()),
                _ => Err(Error::invalid(
                    pointer,
                    format!("model {model_id} was deleted while it was being deployed"),
                )),
            },
        }
    }

    /// The tenant's deployment `name` and its newest versions (newest first).
    pub async fn deployment(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(DeploymentRecord, Vec<DeploymentVersion>)> {
        let d = self.deployment_record(tenant, name).await?;
        let versions = self
            .store
            .deployment_versions(tenant, name, VERSIONS_SHOWN)
            .await?;
        Ok((d, versions))
    }

    async fn deployment_record(&self, tenant: &str, name: &str) -> Result<DeploymentRecord> {
        if check_name(name).is_err() {
            return Err(not_found(name));
        }
        self.store
            .get_deployment(tenant, name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    pub async fn list_deployments(
        &self,
        tenant: &str,
        cursor: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<DeploymentRecord>> {
        Ok(self.store.list_deployments(tenant, cursor, limit).await?)
    }

    /// Removes the name and its history; the models stay.
    pub async fn delete_deployment(&self, tenant: &str, name: &str) -> Result<()> {
        if check_name(name).is_err() {
            return Err(not_found(name));
        }
        let deleted = self.store.delete_deployment(tenant, name).await?;
        self.deployments.changed(tenant, name, None);
        if deleted {
            Ok(())
        } else {
            Err(not_found(name))
        }
    }

    /// Points `name` back at the model of its previous version (or of the version the body
    /// names), as a new version: two rollbacks in a row return to where the first started,
    /// as `kubectl rollout undo` does.
    pub async fn rollback_deployment(
        &self,
        tenant: &str,
        name: &str,
        body: &[u8],
    ) -> Result<DeploymentRecord> {
        let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
            RollbackRequest::default()
        } else {
            parse_json(body)?
        };
        let current = self.deployment_record(tenant, name).await?;
        let target = match req.version {
            Some(v) if v < 1 || v > current.version => {
                return Err(Error::invalid(
                    "/version",
                    format!(
                        "deployment {name:?} has versions 1 to {}, not {v}",
                        current.version
                    ),
                ));
            }
            Some(v) => v,
            None if current.version <= 1 => {
                return Err(Error::Conflict(format!(
                    "deployment {name:?} has only its first version; there is nothing to roll back to"
                )));
            }
            None => current.version - 1,
        };
        let Some(to) = self.store.deployment_version(tenant, name, target).await? else {
            // Deleted (and perhaps made again) since it was read: its history went with it.
            self.deployment_record(tenant, name).await?;
            return Err(Error::Conflict(format!(
                "deployment {name:?} changed while it was being rolled back (it was deleted and made again, without version {target}); read it and retry"
            )));
        };
        if self.model(tenant, to.model_id).await.is_err() {
            return Err(Error::Conflict(format!(
                "version {target} of deployment {name:?} points at model {}, which was deleted; deploy another model with PUT",
                to.model_id
            )));
        }
        let d = self
            .store
            .deploy(tenant, name, to.model_id, Some(current.version), now_ms())
            .await;
        let d = self.deployed(tenant, to.model_id, d, "/version").await?;
        let Some(d) = d else {
            return Err(Error::Conflict(format!(
                "deployment {name:?} changed while it was being rolled back (it is no longer at version {}); read it and retry",
                current.version
            )));
        };
        self.deployments
            .changed(tenant, name, Some((d.model_id, d.version)));
        Ok(d)
    }

    /// The model `tenant`'s deployment `name` points at now, or at `version`, loaded. The
    /// current version comes from the cache while it is fresh.
    pub async fn resolve(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Resolved> {
        if check_name(name).is_err() {
            return Err(not_found(name));
        }
        let (model_id, version) = match version {
            Some(v) => match self.store.deployment_version(tenant, name, v).await? {
                Some(dv) => (dv.model_id, dv.version),
                None => {
                    return Err(Error::NotFound(format!(
                        "deployment {name:?} has no version {v}"
                    )));
                }
            },
            None => match self.deployments.get(tenant, name) {
                Some(hit) => hit,
                None => {
                    let ticket = self.deployments.ticket();
                    let d = self
                        .store
                        .get_deployment(tenant, name)
                        .await?
                        .ok_or_else(|| not_found(name))?;
                    self.deployments
                        .fill(tenant, name, d.model_id, d.version, ticket);
                    (d.model_id, d.version)
                }
            },
        };
        let model = self.model(tenant, model_id).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!(
                "version {version} of deployment {name:?} points at model {model_id}, which was deleted"
            )),
            e => e,
        })?;
        Ok(Resolved {
            version,
            model_id,
            model,
        })
    }

    /// The names of the deployments pointing at model `id` now (what deleting it would break).
    pub async fn deployments_of_model(&self, id: Uuid) -> Result<Vec<String>> {
        Ok(self.store.deployments_of_model(id).await?)
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("no deployment {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe_and_bounded() {
        for ok in ["a", "iris", "Iris-v2_prod", "0day", &"x".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-lead",
            "_lead",
            "a b",
            "a:predict",
            "a/b",
            "é",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_read_that_began_before_a_change_does_not_undo_it() {
        let c = DeploymentCache::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ticket = c.ticket();
        c.changed("t", "n", Some((b, 2)));
        c.fill("t", "n", a, 1, ticket);
        assert_eq!(c.get("t", "n"), Some((b, 2)));
        // An older switch answered after a newer one keeps the newer.
        c.changed("t", "n", Some((a, 1)));
        assert_eq!(c.get("t", "n"), Some((b, 2)));
        // Another tenant's name is another entry.
        assert_eq!(c.get("u", "n"), None);
        c.changed("t", "n", None);
        assert_eq!(c.get("t", "n"), None);
    }
}
