//! Behaviour alerts kept in the data directory (`alerts`, migration 0006): written by the
//! gateway after the decision record that raised them is durable, listed and worked
//! (acknowledged, resolved, each with who and why) through the admin API and `remit
//! alerts`. The parsed types here ([`AlertId`], [`AlertState`], [`Actor`], [`Note`],
//! [`PageSize`]) are what both front ends accept, so an input is read one way.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use sqlx::SqlitePool;

use crate::{DB_FILE, SqliteStore, StoreError};

/// Longest alert id accepted.
pub const MAX_ALERT_ID: usize = 64;
/// Longest `by` (who acknowledged or resolved).
pub const MAX_ACTOR: usize = 128;
/// Longest `reason`.
pub const MAX_REASON: usize = 1024;
/// Most alerts in one page.
pub const MAX_PAGE: u32 = 500;
/// Alerts in a page unless asked otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// Longest evidence sentence stored (a detector's sentence is far shorter).
pub const MAX_EVIDENCE: usize = 2048;

/// Why an input naming or changing an alert was refused, or the change failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// An input could not be read.
    #[error("{field}: {why}")]
    Invalid {
        /// Which input.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// No alert has this id.
    #[error("no alert `{0}`")]
    NotFound(String),
    /// The alert is not in a state the change applies to.
    #[error("alert `{id}` is {state}; it cannot be {wanted}")]
    Conflict {
        /// The alert.
        id: String,
        /// Its state.
        state: AlertState,
        /// What was asked, in words.
        wanted: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AlertError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

fn invalid(field: &'static str, why: impl Into<String>) -> AlertError {
    AlertError::Invalid {
        field,
        why: why.into(),
    }
}

/// An alert's id: `al-` then 1–61 ASCII letters, digits or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AlertId(String);

impl AlertId {
    /// Reads an id.
    pub fn parse(s: &str) -> Result<Self, AlertError> {
        let ok = s.len() <= MAX_ALERT_ID
            && s.strip_prefix("al-").is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "id",
                format!(
                    "`{}` is not an alert id (`al-` then letters, digits and `-`, at most {MAX_ALERT_ID} bytes)",
                    s.chars()
                        .take(MAX_ALERT_ID)
                        .flat_map(char::escape_default)
                        .collect::<String>()
                ),
            ))
        }
    }

    /// A fresh id, ordered by creation time (UUID v7).
    pub fn new_v7() -> Self {
        Self(format!("al-{}", uuid::Uuid::now_v7().simple()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Nobody has looked at it.
    Open,
    /// Someone is looking at it.
    Acknowledged,
    /// Dealt with.
    Resolved,
}

impl AlertState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertState {
    type Err = AlertError;

    fn from_str(s: &str) -> Result<Self, AlertError> {
        match s {
            "open" => Ok(Self::Open),
            "acknowledged" => Ok(Self::Acknowledged),
            "resolved" => Ok(Self::Resolved),
            _ => Err(invalid(
                "state",
                format!(
                    "`{}` is not a state (open, acknowledged, resolved)",
                    s.chars()
                        .take(32)
                        .flat_map(char::escape_default)
                        .collect::<String>()
                ),
            )),
        }
    }
}

/// How bad an alert is, from its confidence: `high` at 90 and above, `medium` at 70.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Below 70.
    Low,
    /// 70–89.
    Medium,
    /// 90 and above.
    High,
}

impl Severity {
    /// The severity of a confidence (percent).
    pub fn of(confidence: u8) -> Self {
        match confidence {
            90.. => Self::High,
            70.. => Self::Medium,
            _ => Self::Low,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

fn text(field: &'static str, s: &str, max: usize) -> Result<String, AlertError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if t.len() > max {
        return Err(invalid(field, format!("is longer than {max} bytes")));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(t.to_owned())
}

/// Who acknowledged or resolved an alert: 1–128 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// Reads a name.
    pub fn parse(s: &str) -> Result<Self, AlertError> {
        text("by", s, MAX_ACTOR).map(Self)
    }
}

/// Why: 1–1024 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note(String);

impl Note {
    /// Reads a reason.
    pub fn parse(s: &str) -> Result<Self, AlertError> {
        text("reason", s, MAX_REASON).map(Self)
    }
}

/// Alerts per page: 1–[`MAX_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Reads a page size.
    pub fn new(n: u64) -> Result<Self, AlertError> {
        match u32::try_from(n) {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(Self(n)),
            _ => Err(invalid(
                "limit",
                format!("`{n}` is not between 1 and {MAX_PAGE}"),
            )),
        }
    }
}

impl PageSize {
    /// The size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(DEFAULT_PAGE)
    }
}

/// A new alert, as the gateway writes it.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Its id.
    pub id: AlertId,
    /// The identity.
    pub identity: String,
    /// The credential, when one was presented.
    pub credential: Option<String>,
    /// The detector, e.g. `new_origin`.
    pub detector: String,
    /// Confidence in percent.
    pub confidence: u8,
    /// One sentence naming the evidence.
    pub evidence: String,
    /// The decision that raised it.
    pub decision_id: String,
    /// When (RFC 3339).
    pub time: String,
    /// Whether it quarantined the identity.
    pub quarantined: bool,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredAlert {
    /// Its id.
    pub id: AlertId,
    /// The replica that raised it.
    pub replica: String,
    /// The identity.
    pub identity: String,
    /// The credential, when one was presented.
    pub credential: Option<String>,
    /// The detector.
    pub detector: String,
    /// Confidence in percent.
    pub confidence: u8,
    /// From the confidence.
    pub severity: Severity,
    /// One sentence naming the evidence.
    pub evidence: String,
    /// The decision that raised it (its record carries the alert too).
    pub decision_id: String,
    /// When (RFC 3339).
    pub time: String,
    /// Open, acknowledged or resolved.
    pub state: AlertState,
    /// Whether it quarantined the identity.
    pub quarantined: bool,
    /// Who acknowledged it, why and when.
    pub acknowledged: Option<Change>,
    /// Who resolved it, why and when.
    pub resolved: Option<Change>,
}

/// One change of an alert's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub time: String,
}

/// Which alerts to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only in this state.
    pub state: Option<AlertState>,
    /// Only of this identity.
    pub identity: Option<String>,
    /// Only older than this alert (the previous page's last id).
    pub before: Option<AlertId>,
    /// At most this many.
    pub limit: PageSize,
}

/// What is asked of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Open → acknowledged.
    Acknowledge,
    /// Open or acknowledged → resolved.
    Resolve,
}

/// The alerts table: from a running store ([`SqliteStore::alerts`]) or a data directory
/// ([`AlertBook::open`], for `remit alerts` beside a running or stopped gateway).
#[derive(Debug, Clone)]
pub struct AlertBook {
    pool: SqlitePool,
    replica: String,
}

/// One row of `alerts`, as read.
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    replica: String,
    identity: String,
    credential: Option<String>,
    detector: String,
    confidence: i64,
    evidence: String,
    decision_id: String,
    time: String,
    state: String,
    quarantined: i64,
    ack_by: Option<String>,
    ack_reason: Option<String>,
    ack_time: Option<String>,
    resolved_by: Option<String>,
    resolved_reason: Option<String>,
    resolved_time: Option<String>,
}

const COLUMNS: &str = "id, replica, identity, credential, detector, confidence, evidence, decision_id, \
     time, state, quarantined, ack_by, ack_reason, ack_time, resolved_by, resolved_reason, resolved_time";

fn from_row(r: Row) -> Result<StoredAlert, AlertError> {
    let change = |by: Option<String>, reason: Option<String>, time: Option<String>| {
        by.map(|by| Change {
            by,
            reason: reason.unwrap_or_default(),
            time: time.unwrap_or_default(),
        })
    };
    let confidence = u8::try_from(r.confidence.clamp(0, 100)).unwrap_or(0);
    Ok(StoredAlert {
        id: AlertId(r.id),
        replica: r.replica,
        identity: r.identity,
        credential: r.credential,
        detector: r.detector,
        confidence,
        severity: Severity::of(confidence),
        evidence: r.evidence,
        decision_id: r.decision_id,
        time: r.time,
        state: r.state.parse()?,
        quarantined: r.quarantined != 0,
        acknowledged: change(r.ack_by, r.ack_reason, r.ack_time),
        resolved: change(r.resolved_by, r.resolved_reason, r.resolved_time),
    })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl SqliteStore {
    /// The alerts table of this store.
    pub fn alerts(&self) -> AlertBook {
        AlertBook {
            pool: self.pool.clone(),
            replica: self.replica.clone(),
        }
    }
}

impl AlertBook {
    /// Opens the alerts of the data directory `data_dir`, which must hold a store.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        if !data_dir.join(DB_FILE).is_file() {
            return Err(StoreError::DataDir {
                path: data_dir.display().to_string(),
                message: format!("no remit store here (no `{DB_FILE}`)"),
            });
        }
        Ok(Self {
            pool: crate::open_pool(data_dir, false).await?,
            replica: String::new(),
        })
    }

    /// Writes new alerts, all or none. An evidence sentence over [`MAX_EVIDENCE`] bytes is
    /// refused.
    pub async fn insert(&self, alerts: &[NewAlert]) -> Result<(), AlertError> {
        let mut tx = self.pool.begin().await?;
        for a in alerts {
            if a.evidence.len() > MAX_EVIDENCE {
                return Err(invalid(
                    "evidence",
                    format!("is longer than {MAX_EVIDENCE} bytes"),
                ));
            }
            sqlx::query(
                "INSERT INTO alerts (id, replica, identity, credential, detector, confidence, severity, \
                 evidence, decision_id, time, state, quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            )
            .bind(a.id.as_str())
            .bind(&self.replica)
            .bind(&a.identity)
            .bind(&a.credential)
            .bind(&a.detector)
            .bind(i64::from(a.confidence.min(100)))
            .bind(Severity::of(a.confidence).as_str())
            .bind(&a.evidence)
            .bind(&a.decision_id)
            .bind(&a.time)
            .bind(i64::from(a.quarantined))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Alerts matching `filter`, newest first.
    pub async fn list(&self, filter: &AlertFilter) -> Result<Vec<StoredAlert>, AlertError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR identity = ?2) \
             AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(filter.state.map(AlertState::as_str))
            .bind(filter.identity.as_deref())
            .bind(filter.before.as_ref().map(AlertId::as_str))
            .bind(i64::from(filter.limit.0))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(from_row).collect()
    }

    /// One alert.
    pub async fn get(&self, id: &AlertId) -> Result<Option<StoredAlert>, AlertError> {
        let sql = format!("SELECT {COLUMNS} FROM alerts WHERE id = ?");
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(from_row).transpose()
    }

    /// Acknowledges or resolves an alert, saying who and why; returns it as it now is.
    /// Acknowledging needs an open alert; resolving one that is not yet resolved.
    pub async fn transition(
        &self,
        id: &AlertId,
        to: Transition,
        by: &Actor,
        reason: &Note,
    ) -> Result<StoredAlert, AlertError> {
        let now = now_rfc3339();
        let (sql, wanted) = match to {
            Transition::Acknowledge => (
                "UPDATE alerts SET state = 'acknowledged', ack_by = ?, ack_reason = ?, ack_time = ? \
                 WHERE id = ? AND state = 'open'",
                "acknowledged",
            ),
            Transition::Resolve => (
                "UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_reason = ?, resolved_time = ? \
                 WHERE id = ? AND state IN ('open', 'acknowledged')",
                "resolved",
            ),
        };
        let done = sqlx::query(sql)
            .bind(&by.0)
            .bind(&reason.0)
            .bind(&now)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        let alert = self
            .get(id)
            .await?
            .ok_or_else(|| AlertError::NotFound(id.to_string()))?;
        if done.rows_affected() == 0 {
            return Err(AlertError::Conflict {
                id: id.to_string(),
                state: alert.state,
                wanted,
            });
        }
        Ok(alert)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn alert(id: &AlertId, identity: &str, confidence: u8) -> NewAlert {
        NewAlert {
            id: id.clone(),
            identity: identity.into(),
            credential: Some(format!("{identity}-key")),
            detector: "new_origin".into(),
            confidence,
            evidence: "credential `k` was used from 203.0.113.0/24".into(),
            decision_id: "d-1".into(),
            time: now_rfc3339(),
            quarantined: false,
        }
    }

    #[test]
    fn inputs_are_parsed_one_way() {
        assert!(AlertId::parse("al-0190abc-1").is_ok());
        for bad in [
            "",
            "al-",
            "xx-1",
            "al-a b",
            "al-é",
            &format!("al-{}", "a".repeat(70)),
        ] {
            assert!(AlertId::parse(bad).is_err(), "{bad:?}");
        }
        let fresh = AlertId::new_v7();
        assert!(AlertId::parse(fresh.as_str()).is_ok(), "{fresh}");
        assert_eq!("open".parse::<AlertState>().unwrap(), AlertState::Open);
        assert!("Open".parse::<AlertState>().is_err());
        assert!(Actor::parse("  ").is_err());
        assert!(Actor::parse("a\u{7}").is_err());
        assert!(Actor::parse(&"a".repeat(MAX_ACTOR + 1)).is_err());
        assert!(Note::parse(&"a".repeat(MAX_REASON + 1)).is_err());
        assert!(PageSize::new(0).is_err() && PageSize::new(501).is_err());
        assert_eq!(Severity::of(95), Severity::High);
        assert_eq!(Severity::of(75), Severity::Medium);
        assert_eq!(Severity::of(50), Severity::Low);
    }

    #[tokio::test]
    async fn alerts_are_listed_filtered_and_worked_with_who_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let book = store.alerts();
        let (a, b) = (AlertId::new_v7(), AlertId::new_v7());
        book.insert(&[alert(&a, "job", 95), alert(&b, "agent", 60)])
            .await
            .unwrap();
        let all = book.list(&AlertFilter::default()).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, b, "newest first");
        assert_eq!(all[1].severity, Severity::High);
        let by = Actor::parse("alice").unwrap();
        let why = Note::parse("looking into it").unwrap();
        let acked = book
            .transition(&a, Transition::Acknowledge, &by, &why)
            .await
            .unwrap();
        assert_eq!(acked.state, AlertState::Acknowledged);
        assert_eq!(acked.acknowledged.as_ref().unwrap().by, "alice");
        let again = book
            .transition(&a, Transition::Acknowledge, &by, &why)
            .await;
        assert!(
            matches!(again, Err(AlertError::Conflict { .. })),
            "{again:?}"
        );
        let resolved = book
            .transition(
                &a,
                Transition::Resolve,
                &by,
                &Note::parse("key rotated").unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resolved.resolved.as_ref().unwrap().reason, "key rotated");
        let missing = book
            .transition(&AlertId::new_v7(), Transition::Resolve, &by, &why)
            .await;
        assert!(
            matches!(missing, Err(AlertError::NotFound(_))),
            "{missing:?}"
        );
        let open = AlertFilter {
            state: Some(AlertState::Open),
            ..AlertFilter::default()
        };
        let listed = book.list(&open).await.unwrap();
        assert_eq!(listed.iter().map(|x| &x.id).collect::<Vec<_>>(), [&b]);
        let of_job = AlertFilter {
            identity: Some("job".into()),
            ..AlertFilter::default()
        };
        assert_eq!(
            book.list(&of_job).await.unwrap()[0].state,
            AlertState::Resolved
        );
        let page = AlertFilter {
            limit: PageSize::new(1).unwrap(),
            ..AlertFilter::default()
        };
        let first = book.list(&page).await.unwrap();
        let next = AlertFilter {
            before: Some(first[0].id.clone()),
            ..page
        };
        assert_eq!(book.list(&next).await.unwrap()[0].id, a);
        store.shutdown().await.unwrap();
        let reopened = AlertBook::open(dir.path()).await.unwrap();
        assert_eq!(
            reopened.list(&AlertFilter::default()).await.unwrap().len(),
            2
        );
    }
}
