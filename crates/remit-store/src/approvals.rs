//! Approvals in the embedded store (`approvals` table, migration 0007).
//!
//! Every state change is one conditional statement, so SQLite's single writer makes each
//! race end with exactly one winner: opening (no identical pending approval, and the
//! identity under its pending limit), answering (`pending` and unexpired), and the
//! single-use claim (`granted` and unexpired → `used`).

use remit_core::approval::{
    Approval, ApprovalError, ApprovalFilter, ApprovalFuture, ApprovalId, ApprovalState,
    ApprovalStore, ApproverRule, Binding, MAX_LIST, Resolution,
};
use remit_core::{ActionName, CredentialId, IdentityId, Purpose, ResourceRef, ResourceType};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;

const COLUMNS: &str = "id, state, identity, on_behalf_of, purpose, action, resource_type, resource_id, \
     method, path, body_sha256, credential, approvers, requested_by, created_at, expires_at, \
     decided_by, decided_at, reason, used_by, used_at";

fn store_err(e: impl std::fmt::Display) -> ApprovalError {
    ApprovalError::Store(e.to_string())
}

/// What identifies a request to an approver, as one digest: equal bindings, equal digests.
fn digest(b: &Binding) -> Result<String, ApprovalError> {
    let text = serde_json::to_vec(b).map_err(store_err)?;
    Ok(hex::encode(Sha256::digest(&text)))
}

/// Reads a row back, parsing every name again: a row that no longer parses is reported,
/// never half-read.
fn from_row(row: &SqliteRow) -> Result<Approval, ApprovalError> {
    let id: String = row.try_get("id").map_err(store_err)?;
    let damaged = |what: &str| {
        ApprovalError::Store(format!(
            "approval row `{}` has a bad {what}",
            id.escape_default()
        ))
    };
    let text = |col: &str| -> Result<String, ApprovalError> { row.try_get(col).map_err(store_err) };
    let opt = |col: &str| -> Result<Option<String>, ApprovalError> {
        row.try_get(col).map_err(store_err)
    };
    let int = |col: &str| -> Result<i64, ApprovalError> { row.try_get(col).map_err(store_err) };
    let opt_int =
        |col: &str| -> Result<Option<i64>, ApprovalError> { row.try_get(col).map_err(store_err) };
    let approvers: Vec<ApproverRule> =
        serde_json::from_str(&text("approvers")?).map_err(|_| damaged("approver list"))?;
    Ok(Approval {
        id: ApprovalId::parse(&id).map_err(|_| damaged("id"))?,
        state: ApprovalState::parse(&text("state")?).ok_or_else(|| damaged("state"))?,
        binding: Binding {
            identity: IdentityId::parse(&text("identity")?).map_err(|_| damaged("identity"))?,
            on_behalf_of: opt("on_behalf_of")?,
            purpose: opt("purpose")?
                .map(|p| Purpose::parse(&p))
                .transpose()
                .map_err(|_| damaged("purpose"))?,
            action: ActionName::parse(&text("action")?).map_err(|_| damaged("action"))?,
            resource: ResourceRef {
                rtype: ResourceType::parse(&text("resource_type")?)
                    .map_err(|_| damaged("resource type"))?,
                id: text("resource_id")?,
            },
            method: text("method")?,
            path: text("path")?,
            body_sha256: opt("body_sha256")?,
        },
        credential: opt("credential")?
            .map(|c| CredentialId::parse(&c))
            .transpose()
            .map_err(|_| damaged("credential"))?,
        approvers,
        requested_by_decision: text("requested_by")?,
        created_at: int("created_at")?,
        expires_at: int("expires_at")?,
        decided_by: opt("decided_by")?,
        decided_at: opt_int("decided_at")?,
        reason: opt("reason")?,
        used_by_decision: opt("used_by")?,
        used_at: opt_int("used_at")?,
    })
}

impl SqliteStore {
    async fn fetch(&self, id: &ApprovalId) -> Result<Option<Approval>, ApprovalError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn open_approval(
        &self,
        mut a: Approval,
        max_pending: u32,
    ) -> Result<Approval, ApprovalError> {
        a.id = ApprovalId::from_random(rand::random());
        a.state = ApprovalState::Pending;
        let bound = digest(&a.binding)?;
        let approvers = serde_json::to_string(&a.approvers).map_err(store_err)?;
        let b = &a.binding;
        // One statement: inserted only if no identical approval is pending and the identity
        // is under its limit, both checked under SQLite's write lock.
        let inserted = sqlx::query(
            "INSERT INTO approvals (id, state, binding_digest, identity, on_behalf_of, purpose, action, \
             resource_type, resource_id, method, path, body_sha256, credential, approvers, requested_by, \
             created_at, expires_at) \
             SELECT ?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16 \
             WHERE NOT EXISTS (SELECT 1 FROM approvals WHERE binding_digest = ?2 AND state = 'pending' AND expires_at > ?15) \
             AND (SELECT count(*) FROM approvals WHERE identity = ?3 AND state = 'pending' AND expires_at > ?15) < ?17",
        )
        .bind(a.id.as_str())
        .bind(&bound)
        .bind(b.identity.as_str())
        .bind(b.on_behalf_of.as_deref())
        .bind(b.purpose.as_ref().map(Purpose::as_str))
        .bind(b.action.as_str())
        .bind(b.resource.rtype.as_str())
        .bind(&b.resource.id)
        .bind(&b.method)
        .bind(&b.path)
        .bind(b.body_sha256.as_deref())
        .bind(a.credential.as_ref().map(CredentialId::as_str))
        .bind(&approvers)
        .bind(&a.requested_by_decision)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(i64::from(max_pending))
        .execute(&self.pool)
        .await
        .map_err(store_err)?
        .rows_affected();
        if inserted == 1 {
            return Ok(a);
        }
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE binding_digest = ? AND state = 'pending' AND expires_at > ? \
             ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(&bound)
        .bind(a.created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_err)?;
        match existing {
            Some(row) => from_row(&row),
            None => Err(ApprovalError::TooMany(a.binding.identity, max_pending)),
        }
    }

    async fn resolve_approval(
        &self,
        id: &ApprovalId,
        resolution: Resolution,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        let changed = sqlx::query(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, reason = ? \
             WHERE id = ? AND state = 'pending' AND expires_at > ?",
        )
        .bind(resolution.state().as_str())
        .bind(by)
        .bind(now)
        .bind(reason)
        .bind(id.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_err)?
        .rows_affected();
        let current = self
            .fetch(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.clone()))?;
        if changed == 1 {
            Ok(current)
        } else {
            Err(ApprovalError::Conflict {
                id: id.clone(),
                state: current.effective_state(now).to_owned(),
            })
        }
    }
}

impl ApprovalStore for SqliteStore {
    fn open(&self, approval: Approval, max_pending: u32) -> ApprovalFuture<'_, Approval> {
        Box::pin(self.open_approval(approval, max_pending))
    }

    fn get<'a>(&'a self, id: &'a ApprovalId) -> ApprovalFuture<'a, Option<Approval>> {
        Box::pin(self.fetch(id))
    }

    fn resolve<'a>(
        &'a self,
        id: &'a ApprovalId,
        resolution: Resolution,
        by: &'a str,
        reason: &'a str,
        now: i64,
    ) -> ApprovalFuture<'a, Approval> {
        Box::pin(self.resolve_approval(id, resolution, by, reason, now))
    }

    fn claim<'a>(
        &'a self,
        id: &'a ApprovalId,
        decision_id: &'a str,
        now: i64,
    ) -> ApprovalFuture<'a, bool> {
        Box::pin(async move {
            let changed = sqlx::query(
                "UPDATE approvals SET state = 'used', used_by = ?, used_at = ? \
                 WHERE id = ? AND state = 'granted' AND expires_at > ?",
            )
            .bind(decision_id)
            .bind(now)
            .bind(id.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(store_err)?
            .rows_affected();
            Ok(changed == 1)
        })
    }

    fn withdraw<'a>(
        &'a self,
        id: &'a ApprovalId,
        resolution: Resolution,
        by: &'a str,
    ) -> ApprovalFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE approvals SET state = 'pending', decided_by = NULL, decided_at = NULL, reason = NULL \
                 WHERE id = ? AND state = ? AND decided_by = ? AND used_by IS NULL",
            )
            .bind(id.as_str())
            .bind(resolution.state().as_str())
            .bind(by)
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, filter: &'a ApprovalFilter) -> ApprovalFuture<'a, Vec<Approval>> {
        Box::pin(async move {
            let limit = i64::from(filter.limit.clamp(1, MAX_LIST));
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR identity = ?2) \
                 ORDER BY created_at DESC, id LIMIT ?3"
            ))
            .bind(filter.state.map(ApprovalState::as_str))
            .bind(filter.identity.as_ref().map(IdentityId::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
            rows.iter().map(from_row).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    fn asked(identity: &str, body: &str, now: i64) -> Approval {
        Approval {
            id: ApprovalId::from_random([0; 16]),
            state: ApprovalState::Pending,
            binding: Binding {
                identity: IdentityId::parse(identity).unwrap(),
                on_behalf_of: Some("alice".into()),
                purpose: Some(Purpose::parse("code-change").unwrap()),
                action: ActionName::parse("repos.deploy").unwrap(),
                resource: ResourceRef {
                    rtype: ResourceType::parse("Repo").unwrap(),
                    id: "web".into(),
                },
                method: "POST".into(),
                path: "/repos/web/deployments".into(),
                body_sha256: Some(hex::encode(Sha256::digest(body))),
            },
            credential: Some(CredentialId::parse("codegen-demo").unwrap()),
            approvers: vec![ApproverRule {
                policy: "deploy".into(),
                groups: vec!["release-managers".into()],
            }],
            requested_by_decision: format!("d-{body}"),
            created_at: now,
            expires_at: now + 60,
            decided_by: None,
            decided_at: None,
            reason: None,
            used_by_decision: None,
            used_at: None,
        }
    }

    #[tokio::test]
    async fn opening_finds_the_identical_pending_one_and_limits_each_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let a = store.open(asked("codegen", "v1", 1000), 2).await.unwrap();
        assert_eq!(a.state, ApprovalState::Pending);
        assert_eq!(store.get(&a.id).await.unwrap().unwrap(), a);
        // The identical request finds the same approval, not a second one.
        let again = store.open(asked("codegen", "v1", 1010), 2).await.unwrap();
        assert_eq!(again.id, a.id);
        let b = store.open(asked("codegen", "v2", 1010), 2).await.unwrap();
        assert_ne!(b.id, a.id);
        let e = store
            .open(asked("codegen", "v3", 1010), 2)
            .await
            .unwrap_err();
        assert!(matches!(e, ApprovalError::TooMany(_, 2)), "{e}");
        // Another identity has its own limit; an expired approval no longer counts.
        store.open(asked("other", "v3", 1010), 2).await.unwrap();
        let c = store.open(asked("codegen", "v3", 1070), 2).await.unwrap();
        assert_ne!(c.id, a.id);
        let listed = store
            .list(&ApprovalFilter {
                state: Some(ApprovalState::Pending),
                identity: Some(IdentityId::parse("codegen").unwrap()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].id, c.id, "newest first");
    }

    #[tokio::test]
    async fn answers_and_claims_are_conditional_and_one_of_many_parallel_claims_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let a = store.open(asked("codegen", "v1", 1000), 8).await.unwrap();
        assert!(
            !store.claim(&a.id, "early", 1001).await.unwrap(),
            "a pending approval cannot be used"
        );
        let granted = store
            .resolve(&a.id, Resolution::Grant, "bob", "looks right", 1002)
            .await
            .unwrap();
        assert_eq!(
            (granted.state, granted.decided_by.as_deref()),
            (ApprovalState::Granted, Some("bob"))
        );
        let e = store
            .resolve(&a.id, Resolution::Deny, "carol", "no", 1003)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ApprovalError::Conflict { state, .. } if state == "granted"),
            "{e}"
        );
        let claims = (0..100).map(|i| {
            let store = Arc::clone(&store);
            let id = a.id.clone();
            tokio::spawn(async move { store.claim(&id, &format!("d{i}"), 1004).await.unwrap() })
        });
        let won = futures_util::future::join_all(claims)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(won, 1);
        let used = store.get(&a.id).await.unwrap().unwrap();
        assert_eq!(used.state, ApprovalState::Used);
        assert!(used.used_by_decision.unwrap().starts_with('d'));
        // Expiry: neither answered nor used after it.
        let b = store.open(asked("codegen", "v2", 1000), 8).await.unwrap();
        let e = store
            .resolve(&b.id, Resolution::Grant, "bob", "late", 1060)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ApprovalError::Conflict { state, .. } if state == "expired"),
            "{e}"
        );
        let c = store.open(asked("codegen", "v3", 1000), 8).await.unwrap();
        store
            .resolve(&c.id, Resolution::Grant, "bob", "ok", 1001)
            .await
            .unwrap();
        assert!(!store.claim(&c.id, "late", 1060).await.unwrap());
        // An answer that could not be recorded is withdrawn: pending again.
        let d = store.open(asked("codegen", "v4", 1000), 8).await.unwrap();
        store
            .resolve(&d.id, Resolution::Deny, "bob", "no", 1001)
            .await
            .unwrap();
        store
            .withdraw(&d.id, Resolution::Deny, "bob")
            .await
            .unwrap();
        assert_eq!(
            store.get(&d.id).await.unwrap().unwrap().state,
            ApprovalState::Pending
        );
        assert!(
            store
                .get(&ApprovalId::from_random([9; 16]))
                .await
                .unwrap()
                .is_none()
        );
    }
}
