//! Behaviour baselines kept across restarts: each identity's baseline (serialised by
//! remit-anomaly) in its own row, per replica. Separate from the audit writer: baselines
//! are learned state, not evidence, and are written through the pool in one transaction.

use crate::{SqliteStore, StoreError};

/// Largest serialised baseline accepted for one identity. A baseline's sets have fixed
/// capacities, so a real one is far smaller; anything larger is refused, not truncated.
pub const MAX_BASELINE_BYTES: usize = 64 * 1024;
/// Most baselines written in one call.
pub const MAX_BASELINES_PER_SAVE: usize = 1_000_000;

impl SqliteStore {
    /// Saves (replacing) the baselines of the given identities for this replica, in one
    /// transaction: all or none.
    pub async fn save_baselines<'a>(
        &self,
        rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<usize, StoreError> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        let mut n = 0usize;
        for (identity, state) in rows {
            if state.len() > MAX_BASELINE_BYTES {
                return Err(StoreError::TooLarge(format!(
                    "the baseline of `{identity}` is {} bytes, over {MAX_BASELINE_BYTES}",
                    state.len()
                )));
            }
            n += 1;
            if n > MAX_BASELINES_PER_SAVE {
                return Err(StoreError::TooLarge(format!(
                    "more than {MAX_BASELINES_PER_SAVE} baselines in one save"
                )));
            }
            sqlx::query(
                "INSERT INTO anomaly_baselines (replica, identity, state, updated) VALUES (?, ?, ?, ?)
                 ON CONFLICT (replica, identity) DO UPDATE SET state = excluded.state, updated = excluded.updated",
            )
            .bind(&self.replica)
            .bind(identity)
            .bind(state)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// This replica's saved baselines: `(identity, state)` pairs in identity order.
    pub async fn load_baselines(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT identity, state FROM anomaly_baselines WHERE replica = ? ORDER BY identity",
        )
        .bind(&self.replica)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn baselines_are_saved_replaced_and_loaded_and_oversized_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert!(store.load_baselines().await.unwrap().is_empty());
        let n = store
            .save_baselines([
                ("b-job", "{\"requests\":1}"),
                ("a-agent", "{\"requests\":2}"),
            ])
            .await
            .unwrap();
        assert_eq!(n, 2);
        store
            .save_baselines([("b-job", "{\"requests\":3}")])
            .await
            .unwrap();
        let big = "x".repeat(MAX_BASELINE_BYTES + 1);
        let refused = store
            .save_baselines([("a-agent", "{}"), ("c", big.as_str())])
            .await;
        assert!(
            matches!(refused, Err(StoreError::TooLarge(_))),
            "{refused:?}"
        );
        let rows = store.load_baselines().await.unwrap();
        assert_eq!(
            rows,
            [
                ("a-agent".to_owned(), "{\"requests\":2}".to_owned()),
                ("b-job".to_owned(), "{\"requests\":3}".to_owned()),
            ],
            "replaced, and the refused save changed nothing"
        );
        store.shutdown().await.unwrap();
        drop(store);
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(
            store.load_baselines().await.unwrap().len(),
            2,
            "survives a reopen"
        );
    }
}
