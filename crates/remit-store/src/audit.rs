//! Reading the audit log: verification, inclusion proofs, search, tail and export. A
//! reader works on a running gateway's data directory or a stopped one's; it never
//! writes records.

use std::path::Path;

use futures_util::TryStreamExt as _;
use remit_audit::{Hash, InclusionProof, PublicKey, SignedCheckpoint, Summary, Tamper, Verifier};
use sqlx::sqlite::SqlitePool;

use crate::{DB_FILE, StoreError};

/// Results of one search at most.
pub const MAX_SEARCH: u32 = 10_000;

/// Why verification did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was changed.
    #[error(transparent)]
    Tamper(#[from] Tamper),
    /// A stored checkpoint is not a readable checkpoint.
    #[error("the checkpoint at tree size {tree_size} is not readable: {message}")]
    Checkpoint {
        /// Its tree size column.
        tree_size: i64,
        /// What is wrong.
        message: String,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// No decision has this id.
    #[error("no decision record has id `{0}`")]
    NotFound(String),
    /// The record is newer than the last checkpoint.
    #[error(
        "record `{0}` is not under a signed checkpoint yet; try again after the next one (at most `checkpoint_interval`)"
    )]
    NotAnchored(String),
    /// The stored log is damaged; run `remit audit verify`.
    #[error("the stored log is damaged ({0}); run `remit audit verify`")]
    Damaged(String),
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}
impl From<sqlx::Error> for ProveError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What to search for; every field that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// The acting identity.
    pub identity: Option<String>,
    /// The human a delegated request acted for.
    pub human: Option<String>,
    /// The declared purpose.
    pub purpose: Option<String>,
    /// The verdict (`allow`, `deny`, `approval_required`, `rate_limited`).
    pub verdict: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    pub since: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    pub until: Option<String>,
    /// Results at most (capped at [`MAX_SEARCH`]).
    pub limit: u32,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Insertion order across replicas (for `tail`).
    pub cursor: i64,
    /// The replica.
    pub replica: String,
    /// Its position in the replica's chain.
    pub seq: i64,
    /// The canonical entry text.
    pub entry: String,
}

/// A read-only view of the audit log.
#[derive(Debug, Clone)]
pub struct AuditReader {
    pool: SqlitePool,
}

pub(crate) async fn record_json(
    pool: &SqlitePool,
    id: &str,
    kind: &str,
) -> Result<Option<String>, StoreError> {
    let entry: Option<String> =
        sqlx::query_scalar("SELECT entry FROM audit_entries WHERE id = ? AND kind = ? LIMIT 1")
            .bind(id)
            .bind(kind)
            .fetch_optional(pool)
            .await?;
    Ok(entry.and_then(|e| {
        let v: serde_json::Value = serde_json::from_str(&e).ok()?;
        Some(v.get("record")?.to_string())
    }))
}

impl AuditReader {
    /// Opens the data directory's log; it must exist.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        if !data_dir.join(DB_FILE).is_file() {
            return Err(StoreError::DataDir {
                path: data_dir.display().to_string(),
                message: format!("no audit log here (no `{DB_FILE}`)"),
            });
        }
        Ok(Self::from_pool(crate::open_pool(data_dir, false).await?))
    }

    pub(crate) fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Every replica with entries or checkpoints.
    pub async fn replicas(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT replica FROM audit_state UNION SELECT DISTINCT replica FROM audit_entries \
             UNION SELECT DISTINCT replica FROM audit_checkpoints ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many entries a replica has stored.
    pub async fn entry_count(&self, replica: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries WHERE replica = ?")
            .bind(replica)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A replica's signed checkpoints, by tree size.
    pub async fn checkpoints(&self, replica: &str) -> Result<Vec<SignedCheckpoint>, VerifyError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT tree_size, checkpoint FROM audit_checkpoints WHERE replica = ? ORDER BY tree_size",
        )
        .bind(replica)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(tree_size, json)| {
                serde_json::from_str(&json).map_err(|e| VerifyError::Checkpoint {
                    tree_size,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Verifies a replica's whole log against its checkpoints with `keys`, calling
    /// `progress` with the number of entries verified every few thousand entries.
    pub async fn verify(
        &self,
        replica: &str,
        keys: &[PublicKey],
        progress: &mut dyn FnMut(u64),
    ) -> Result<Summary, VerifyError> {
        let mut verifier = Verifier::new(replica, keys, self.checkpoints(replica).await?)?;
        let mut rows = sqlx::query_as::<_, (i64, String, String, Vec<u8>)>(
            "SELECT seq, id, entry, leaf FROM audit_entries WHERE replica = ? ORDER BY seq",
        )
        .bind(replica)
        .fetch(&self.pool);
        while let Some((seq, id, entry, leaf)) = rows.try_next().await? {
            verifier.entry(
                u64::try_from(seq).unwrap_or(u64::MAX),
                &id,
                entry.as_bytes(),
                Hash::from_slice(&leaf),
            )?;
            if verifier.entries() % 4096 == 0 {
                progress(verifier.entries());
            }
        }
        progress(verifier.entries());
        Ok(verifier.finish()?)
    }

    /// An inclusion proof for decision `id` against the first checkpoint that covers it.
    pub async fn prove(&self, id: &str) -> Result<InclusionProof, ProveError> {
        let found: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT replica, seq, entry FROM audit_entries WHERE id = ? AND kind = 'decision'",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let (replica, seq, entry) = found.ok_or_else(|| ProveError::NotFound(id.to_owned()))?;
        let cp: Option<String> = sqlx::query_scalar(
            "SELECT checkpoint FROM audit_checkpoints WHERE replica = ? AND tree_size > ? ORDER BY tree_size LIMIT 1",
        )
        .bind(&replica)
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        let cp: SignedCheckpoint =
            serde_json::from_str(&cp.ok_or_else(|| ProveError::NotAnchored(id.to_owned()))?)
                .map_err(|e| ProveError::Damaged(e.to_string()))?;
        let size = i64::try_from(cp.checkpoint.tree_size)
            .map_err(|_| ProveError::Damaged("tree size".into()))?;
        let mut leaves = Vec::new();
        let mut rows = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT leaf FROM audit_entries WHERE replica = ? AND seq < ? ORDER BY seq",
        )
        .bind(&replica)
        .bind(size)
        .fetch(&self.pool);
        while let Some(leaf) = rows.try_next().await? {
            leaves.push(
                Hash::from_slice(&leaf).ok_or_else(|| ProveError::Damaged("a leaf hash".into()))?,
            );
        }
        let seq = u64::try_from(seq).map_err(|_| ProveError::Damaged("seq".into()))?;
        InclusionProof::build(&leaves, seq, entry, cp)
            .map_err(|e| ProveError::Damaged(e.to_string()))
    }

    /// Decision entries matching `search`, oldest first.
    pub async fn search(&self, s: &Search) -> Result<Vec<StoredEntry>, StoreError> {
        let limit = s.limit.clamp(1, MAX_SEARCH);
        let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT rowid, replica, seq, entry FROM audit_entries WHERE kind = 'decision' \
             AND (?1 IS NULL OR identity = ?1) AND (?2 IS NULL OR human = ?2) \
             AND (?3 IS NULL OR purpose = ?3) AND (?4 IS NULL OR verdict = ?4) \
             AND (?5 IS NULL OR time >= ?5) AND (?6 IS NULL OR time < ?6) \
             ORDER BY rowid LIMIT ?7",
        )
        .bind(&s.identity)
        .bind(&s.human)
        .bind(&s.purpose)
        .bind(&s.verdict)
        .bind(&s.since)
        .bind(&s.until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Entries written after `cursor` (0: from the start), at most `limit`, in the order
    /// they were written.
    pub async fn after(&self, cursor: i64, limit: u32) -> Result<Vec<StoredEntry>, StoreError> {
        let rows: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT rowid, replica, seq, entry FROM audit_entries WHERE rowid > ? ORDER BY rowid LIMIT ?",
        )
        .bind(cursor)
        .bind(limit.clamp(1, MAX_SEARCH))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// The cursor of the last entry written (0 when empty).
    pub async fn last_cursor(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM audit_entries")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Calls `visit` with every entry, replica by replica in chain order.
    pub async fn export(
        &self,
        visit: &mut dyn FnMut(StoredEntry) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        let mut rows = sqlx::query_as::<_, (i64, String, i64, String)>(
            "SELECT rowid, replica, seq, entry FROM audit_entries ORDER BY replica, seq",
        )
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            visit(stored(row))?;
        }
        Ok(())
    }

    /// The review copy kept for decision `id`, if any: (bytes, total, truncated).
    pub async fn review_body(&self, id: &str) -> Result<Option<(Vec<u8>, i64, bool)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT body, total, truncated FROM audit_bodies WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

fn stored((cursor, replica, seq, entry): (i64, String, i64, String)) -> StoredEntry {
    StoredEntry {
        cursor,
        replica,
        seq,
        entry,
    }
}
