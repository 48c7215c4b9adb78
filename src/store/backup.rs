//! Backups of the embedded SQLite database: `backprop backup` writes a consistent snapshot
//! of a database that a server may be using at that moment (serving and training), and
//! `backprop restore` puts one back into an empty data directory.
//!
//! The snapshot is SQLite's `VACUUM INTO`: it runs inside one read transaction, so it sees
//! exactly the transactions committed before it began (WAL readers do not block the writer,
//! nor it them), and writes a compact copy. Files of the deployment that live beside the
//! database (the keys file) travel inside the snapshot, in a table of their own that restore
//! takes out again: one file holds a whole deployment. A job that was running when the
//! snapshot was taken is `running` in it; the restored server queues it again at start and
//! it resumes from the checkpoint the snapshot holds, like after a crash.
//!
//! PostgreSQL deployments use PostgreSQL's tools (`pg_dump`), docs/upgrading.md. No HTTP here.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};

use super::{Result, StoreError};

/// The table of a backup that holds the files beside the database (name → bytes). It exists
/// only in backup files, never in a serving database.
const FILES_TABLE: &str = "backprop_backup_files";

/// What a backup holds, for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub datasets: i64,
    pub jobs: i64,
    /// Jobs running when the snapshot was taken: they resume after a restore.
    pub running: i64,
    pub models: i64,
    /// Files beside the database carried in the backup (`keys.json`).
    pub files: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, {} datasets, {} jobs ({} running: they resume from their checkpoints \
             after a restore), {} models; files: {}",
            self.bytes,
            self.datasets,
            self.jobs,
            self.running,
            self.models,
            if self.files.is_empty() {
                "none".to_string()
            } else {
                self.files.join(", ")
            }
        )
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Database(format!("{what} {}: {e}", path.display()))
}

async fn open(path: &Path, create: bool) -> Result<SqliteConnection> {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?
        .create_if_missing(create)
        .busy_timeout(Duration::from_secs(30));
    Ok(SqliteConnection::connect_with(&opts).await?)
}

/// The migration versions applied to a database, refusing a file that is not a Backprop
/// database at all.
async fn versions(c: &mut SqliteConnection, path: &Path) -> Result<Vec<i64>> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *c)
            .await?;
    for t in ["_sqlx_migrations", "datasets", "jobs", "models"] {
        if !tables.iter().any(|n| n == t) {
            return Err(StoreError::Corrupt(format!(
                "{} is not a Backprop database (no table {t})",
                path.display()
            )));
        }
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *c)
            .await?,
    )
}

async fn integrity(c: &mut SqliteConnection, path: &Path) -> Result<()> {
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut *c)
        .await?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "{} fails SQLite's integrity check: {check}",
            path.display()
        )));
    }
    Ok(())
}

async fn summary(c: &mut SqliteConnection, bytes: u64, files: Vec<String>) -> Result<Summary> {
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM datasets) AS datasets, (SELECT COUNT(*) FROM jobs) AS jobs,
                (SELECT COUNT(*) FROM jobs WHERE status = 'running') AS running,
                (SELECT COUNT(*) FROM models) AS models",
    )
    .fetch_one(&mut *c)
    .await?;
    Ok(Summary {
        bytes,
        datasets: row.try_get("datasets")?,
        jobs: row.try_get("jobs")?,
        running: row.try_get("running")?,
        models: row.try_get("models")?,
        files,
    })
}

/// A path next to `target` for writing before the final rename.
fn partial(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    target.with_file_name(name)
}

/// Writes a consistent snapshot of the database file `db` to `to` (which must not exist),
/// with `files` (name, path; missing ones are skipped) inside it. The snapshot is written
/// beside `to`, checked and renamed, so `to` is either absent or a whole backup.
pub async fn backup(db: &Path, to: &Path, files: &[(&str, PathBuf)]) -> Result<Summary> {
    if to.exists() {
        return Err(StoreError::Database(format!(
            "{} exists already; a backup never overwrites a file",
            to.display()
        )));
    }
    if !db.exists() {
        return Err(StoreError::Database(format!(
            "no database at {} (is --data-dir or DATABASE_URL right?)",
            db.display()
        )));
    }
    let tmp = partial(to);
    let _ = std::fs::remove_file(&tmp);
    let written = async {
        let mut src = open(db, false).await?;
        versions(&mut src, db).await?;
        sqlx::query("VACUUM INTO ?")
            .bind(tmp.display().to_string())
            .execute(&mut src)
            .await?;
        src.close().await?;

        let mut out = open(&tmp, false).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {FILES_TABLE} (name TEXT PRIMARY KEY, content BLOB NOT NULL)"
        )))
        .execute(&mut out)
        .await?;
        let mut carried = vec![];
        for (name, path) in files {
            let content = match std::fs::read(path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("cannot read", path, e)),
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {FILES_TABLE} (name, content) VALUES (?, ?)"
            )))
            .bind(*name)
            .bind(content)
            .execute(&mut out)
            .await?;
            carried.push(name.to_string());
        }
        integrity(&mut out, &tmp).await?;
        let bytes = std::fs::metadata(&tmp)
            .map_err(|e| io("cannot read", &tmp, e))?
            .len();
        let s = summary(&mut out, bytes, carried).await?;
        out.close().await?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot sync", &tmp, e))?;
        Ok(s)
    }
    .await;
    match written {
        Ok(s) => {
            std::fs::rename(&tmp, to).map_err(|e| io("cannot write", to, e))?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Restores the backup `from` into `data_dir` (created if missing; refused unless empty):
/// the database as `db_name` and the carried files beside it. `known` are the migration
/// versions this binary has: a backup from a newer release is refused.
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    db_name: &str,
    known: &[i64],
) -> Result<Summary> {
    if let Ok(mut entries) = std::fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(StoreError::Database(format!(
            "{} is not empty; restore only into an empty data directory",
            data_dir.display()
        )));
    }
    if !from.is_file() {
        return Err(StoreError::Database(format!(
            "no backup file at {}",
            from.display()
        )));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io("cannot create", data_dir, e))?;
    let db = data_dir.join(db_name);
    let tmp = partial(&db);
    std::fs::copy(from, &tmp).map_err(|e| io("cannot copy to", &tmp, e))?;
    let restored = async {
        let mut c = open(&tmp, false).await?;
        integrity(&mut c, from).await?;
        let newer: Vec<i64> = versions(&mut c, from)
            .await?
            .into_iter()
            .filter(|v| !known.contains(v))
            .collect();
        if !newer.is_empty() {
            return Err(StoreError::Database(format!(
                "{} was written by a newer release (migrations {newer:?} are unknown to this one)",
                from.display()
            )));
        }
        let has_files: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(FILES_TABLE)
                .fetch_optional(&mut c)
                .await?;
        let mut files = vec![];
        if has_files.is_some() {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT name, content FROM {FILES_TABLE} ORDER BY name"
            )))
            .fetch_all(&mut c)
            .await?;
            for r in rows {
                let name: String = r.try_get("name")?;
                let content: Vec<u8> = r.try_get("content")?;
                // Only plain names: a backup must not write outside the data directory.
                if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                    return Err(StoreError::Corrupt(format!("backup file name {name:?}")));
                }
                let path = data_dir.join(&name);
                std::fs::write(&path, content).map_err(|e| io("cannot write", &path, e))?;
                files.push(name);
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {FILES_TABLE}")))
                .execute(&mut c)
                .await?;
        }
        let bytes = std::fs::metadata(from)
            .map_err(|e| io("cannot read", from, e))?
            .len();
        let s = summary(&mut c, bytes, files).await?;
        c.close().await?;
        Ok(s)
    }
    .await;
    match restored {
        Ok(s) => {
            std::fs::rename(&tmp, &db).map_err(|e| io("cannot write", &db, e))?;
            Ok(s)
        }
        Err(e) => {
            // Leave the directory as empty as it was.
            let _ = std::fs::remove_dir_all(data_dir);
            let _ = std::fs::create_dir_all(data_dir);
            Err(e)
        }
    }
}
