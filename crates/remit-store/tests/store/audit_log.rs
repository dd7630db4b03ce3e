//! The audit log as the store keeps it: chains and checkpoints that verify, proofs, the
//! writer lock, resuming after a restart, and tampering with the database file.

use std::path::Path;
use std::time::Duration;

use remit_audit::{AuditKey, PublicKey, Tamper};
use remit_core::{AuditRecord, OutcomeRecord, RecordSink, ReviewNote};
use remit_store::audit::{AuditReader, Search, VerifyError};
use remit_store::{SqliteStore, StoreOptions};

use super::record;

fn options(every: u64) -> StoreOptions {
    StoreOptions {
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// A store with `n` decision records, each in its own batch, a checkpoint every `every`
/// entries, shut down (so a last checkpoint covers everything).
async fn written(dir: &Path, n: usize, every: u64) -> PublicKey {
    let store = SqliteStore::open_with(dir, options(every)).await.unwrap();
    for i in 0..n {
        store.append(record(i)).await.unwrap();
    }
    let key = store.public_key().clone();
    store.shutdown().await.unwrap();
    key
}

async fn verify(dir: &Path, key: &PublicKey) -> Result<remit_audit::Summary, VerifyError> {
    let reader = AuditReader::open(dir).await.unwrap();
    reader
        .verify("replica-1", std::slice::from_ref(key), &mut |_| {})
        .await
}

fn sql(dir: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(dir.join(remit_store::DB_FILE)).unwrap();
    conn.execute_batch(statements).unwrap();
}

#[tokio::test]
async fn a_written_log_verifies_with_its_public_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let key = written(dir.path(), 25, 10).await;
    let s = verify(dir.path(), &key).await.unwrap();
    assert_eq!((s.entries, s.checkpoints, s.unanchored), (25, 3, 0));
    // The key file in the data directory is the one that verifies.
    let text =
        std::fs::read_to_string(dir.path().join(remit_store::keys::PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(PublicKey::from_file_text(&text).unwrap(), key);
    // Another key does not.
    let other = AuditKey::from_seed([5; 32]).public();
    assert!(matches!(
        verify(dir.path(), &other).await,
        Err(VerifyError::Tamper(Tamper::Checkpoint { .. }))
    ));
}

#[tokio::test]
async fn a_second_writer_on_one_data_dir_is_refused_and_a_restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), options(4))
        .await
        .unwrap();
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("another remit process"), "{err}");
    for i in 0..6 {
        store.append(record(i)).await.unwrap();
    }
    store.shutdown().await.unwrap();
    let again = SqliteStore::open_with(dir.path(), options(4))
        .await
        .unwrap();
    for i in 6..11 {
        again.append(record(i)).await.unwrap();
    }
    let key = again.public_key().clone();
    again.shutdown().await.unwrap();
    let s = verify(dir.path(), &key).await.unwrap();
    assert_eq!((s.entries, s.unanchored), (11, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_chain_in_one_order_and_proofs_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), options(64))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.append(record(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    store.checkpoint().await.unwrap();
    let key = store.public_key().clone();
    let reader = store.reader();
    for id in ["d-0", "d-150", "d-299"] {
        let proof = reader.prove(id).await.unwrap();
        proof.verify(std::slice::from_ref(&key)).unwrap();
        assert!(proof.entry.contains(&format!("\"decision_id\":\"{id}\"")));
    }
    assert!(reader.prove("d-missing").await.is_err());
    store.shutdown().await.unwrap();
    assert_eq!(verify(dir.path(), &key).await.unwrap().entries, 300);
}

#[tokio::test]
async fn a_record_newer_than_the_last_checkpoint_has_no_proof_yet() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), options(1000))
        .await
        .unwrap();
    store.append(record(1)).await.unwrap();
    let err = store.reader().prove("d-1").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("not under a signed checkpoint yet"),
        "{err}"
    );
    store.checkpoint().await.unwrap();
    store.reader().prove("d-1").await.unwrap();
}

#[tokio::test]
async fn outcomes_and_review_copies_are_stored_beside_their_decision() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    store.append(record(1)).await.unwrap();
    let body = b"{\"ticket\": 1}".to_vec();
    store
        .append(AuditRecord::Outcome(OutcomeRecord {
            v: 2,
            time: "2026-11-25T00:00:01Z".into(),
            replica: "replica-1".into(),
            decision_id: "d-1".into(),
            status: 200,
            response_sha256: "00".repeat(32),
            response_bytes: 40,
            complete: true,
            latency_us: 900,
            error: None,
            review: Some(ReviewNote {
                stored_bytes: body.len() as u64,
                limit: 13,
                truncated: true,
                sha256: "11".repeat(32),
                redacted: 0,
                withheld: None,
            }),
            review_body: Some(body.clone()),
            scan: None,
            record_sets: Vec::new(),
        }))
        .await
        .unwrap();
    let outcome = store.outcome("d-1").await.unwrap().unwrap();
    assert!(
        outcome.contains("\"kind\":\"outcome\"") && outcome.contains("\"status\":200"),
        "{outcome}"
    );
    assert!(
        !outcome.contains("ticket"),
        "the copy lives beside the record: {outcome}"
    );
    let (kept, total, truncated) = store.reader().review_body("d-1").await.unwrap().unwrap();
    assert_eq!((kept, total, truncated), (body, 40, true));
    assert_eq!(
        store.count().await.unwrap(),
        1,
        "outcomes are not decisions"
    );
}

#[tokio::test]
async fn search_filters_by_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    for i in 0..5 {
        store.append(record(i)).await.unwrap();
    }
    let r = store.reader();
    let all = r
        .search(&Search {
            limit: 100,
            ..Search::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let allow = Search {
        verdict: Some("allow".into()),
        limit: 2,
        ..Search::default()
    };
    assert_eq!(r.search(&allow).await.unwrap().len(), 2);
    let deny = Search {
        verdict: Some("deny".into()),
        limit: 100,
        ..Search::default()
    };
    assert!(r.search(&deny).await.unwrap().is_empty());
    let later = Search {
        since: Some("2026-11-26T00:00:00Z".into()),
        limit: 100,
        ..Search::default()
    };
    assert!(r.search(&later).await.unwrap().is_empty());
    let cursor = all[2].cursor;
    assert_eq!(r.after(cursor, 100).await.unwrap().len(), 2);
}

/// Each kind of change to the database file, detected and named by `verify`.
#[tokio::test]
async fn tampering_with_the_database_is_detected_naming_the_record() {
    let cases: &[(&str, &str, &str)] = &[
        (
            // The index keeps where an entry is and its hash, not its text.
            "edit a hash",
            "UPDATE audit_entries SET leaf = (SELECT leaf FROM audit_entries WHERE seq = 8) WHERE seq = 7",
            "record 7 (`d-7`) was changed",
        ),
        (
            "point a row at another entry",
            "UPDATE audit_entries SET seg_offset = (SELECT seg_offset FROM audit_entries WHERE seq = 8), \
             len = (SELECT len FROM audit_entries WHERE seq = 8) WHERE seq = 7",
            "record 7 (`d-7`) was changed",
        ),
        (
            "point a row beyond the segment file",
            "UPDATE audit_entries SET seg_offset = seg_offset + 1000000 WHERE seq = 7",
            "record 7 (`d-7`) is in the index but not in the segment files",
        ),
        (
            "make a row longer than a line can be",
            "UPDATE audit_entries SET len = 99999999 WHERE seq = 7",
            "in the index: the index places record 7 of replica `replica-1`",
        ),
        (
            "point a row at a segment that does not exist",
            "UPDATE audit_entries SET segment = 5 WHERE seq = 7",
            "record 7 (`d-7`) is in the index but not in the segment files",
        ),
        (
            "delete",
            "DELETE FROM audit_entries WHERE seq = 12",
            "record 12 is missing",
        ),
        (
            "insert",
            "UPDATE audit_entries SET seq = seq + 100 WHERE seq >= 8; \
             INSERT INTO audit_entries (replica, seq, kind, id, time, segment, seg_offset, len, leaf) \
             SELECT replica, 8, kind, 'forged', time, segment, seg_offset, len, leaf FROM audit_entries WHERE seq = 3",
            "record 3 (`forged`) appears again after record 7",
        ),
        (
            "reorder",
            "UPDATE audit_entries SET seq = -1 WHERE seq = 4; UPDATE audit_entries SET seq = 4 WHERE seq = 5; \
             UPDATE audit_entries SET seq = 5 WHERE seq = -1",
            "record 4 is missing",
        ),
        (
            "truncate",
            "DELETE FROM audit_entries WHERE seq >= 17",
            "the log ends after 17 records but a signed checkpoint covers 20",
        ),
        (
            "replace a checkpoint",
            "UPDATE audit_checkpoints SET checkpoint = replace(checkpoint, '\"tree_size\":10', '\"tree_size\":11') WHERE tree_size = 10",
            "checkpoint at tree size 11",
        ),
        (
            // An older, consistent index: the segment files still hold the tail.
            "delete every checkpoint and entry after 9",
            "DELETE FROM audit_checkpoints WHERE tree_size > 10; DELETE FROM audit_entries WHERE seq > 9",
            "record 10 (`d-10`) is in the segment files but was removed from the index",
        ),
        (
            // The same, and the index's own record of how far it has read rolled back:
            // the next open of the log indexes the tail again from the segments.
            "delete the tail and roll back the index state",
            "DELETE FROM audit_checkpoints WHERE tree_size > 10; DELETE FROM audit_entries WHERE seq > 9; \
             UPDATE audit_state SET size = 10",
            "",
        ),
    ];
    for (what, statements, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let key = written(dir.path(), 25, 10).await;
        verify(dir.path(), &key).await.unwrap();
        sql(dir.path(), statements);
        let result = verify(dir.path(), &key).await;
        if named.is_empty() {
            // The segment files are the log: all 25 records verify.
            assert_eq!(result.unwrap().entries, 25, "{what}");
            continue;
        }
        let err = result.expect_err(what).to_string();
        assert!(err.contains(named), "{what}: {err}");
    }
}

#[tokio::test]
async fn swapped_keys_are_detected() {
    // The attacker replaces the data directory's key pair and re-signs every checkpoint;
    // the verifier's own copy of the public key refuses them.
    let dir = tempfile::tempdir().unwrap();
    let trusted = written(dir.path(), 12, 5).await;
    let attacker = AuditKey::from_seed([66; 32]);
    let reader = AuditReader::open(dir.path()).await.unwrap();
    let forged: Vec<String> = reader
        .checkpoints("replica-1")
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let mut cp = c.checkpoint;
            cp.key_id = attacker.public().key_id();
            serde_json::to_string(&attacker.sign(cp)).unwrap()
        })
        .collect();
    drop(reader);
    let conn = rusqlite::Connection::open(dir.path().join(remit_store::DB_FILE)).unwrap();
    for (i, cp) in forged.iter().enumerate() {
        conn.execute(
            "UPDATE audit_checkpoints SET checkpoint = ?1 WHERE rowid = ?2",
            rusqlite::params![cp, i as i64 + 1],
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join(remit_store::keys::KEY_FILE),
        attacker.to_file_text(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(remit_store::keys::PUBLIC_KEY_FILE),
        attacker.public().to_file_text(),
    )
    .unwrap();
    let err = verify(dir.path(), &trusted).await.unwrap_err().to_string();
    assert!(err.contains("not among the trusted public keys"), "{err}");
}

/// The replica's first (here: only) segment file.
fn segment_file(dir: &Path) -> std::path::PathBuf {
    remit_store::segment::segment_path(
        &remit_store::segment::replica_dir(dir, "replica-1").unwrap(),
        0,
    )
}

fn segment_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(segment_file(dir))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The index of the line holding entry `seq`.
fn entry_line(lines: &[String], seq: usize) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with("{\"prev\":") && l.ends_with(&format!(",\"seq\":{seq}}}")))
        .unwrap()
}

/// Each kind of change to the segment file (the durable copy), detected and named by
/// `verify` while the index still holds the original.
#[tokio::test]
async fn tampering_with_the_segment_file_is_detected_naming_the_record() {
    type Change = fn(&mut Vec<String>);
    let cases: &[(&str, Change, &str)] = &[
        (
            "edit a field",
            |l| {
                let i = entry_line(l, 7);
                l[i] = l[i].replace("\"allow\"", "\"deny\"");
            },
            "in the segment files: record 7 (`d-7`) was changed or replaced",
        ),
        (
            "delete",
            |l| {
                let i = entry_line(l, 12);
                l.remove(i);
            },
            "in the segment files: record 12 is missing",
        ),
        (
            "insert",
            |l| {
                let copy = l[entry_line(l, 3)].clone();
                let at = entry_line(l, 7) + 1;
                l.insert(at, copy);
            },
            "in the segment files: record 3 (`d-3`) appears again after record 7",
        ),
        (
            "reorder",
            |l| {
                let (a, b) = (entry_line(l, 4), entry_line(l, 5));
                l.swap(a, b);
            },
            "in the segment files: record 4 is missing",
        ),
        (
            "truncate (with the checkpoints over the tail)",
            |l| {
                let at = entry_line(l, 17);
                l.truncate(at);
            },
            "record 17 (`d-17`) is in the index but not in the segment files",
        ),
        (
            "replace a checkpoint",
            |l| {
                let i = l
                    .iter()
                    .position(|l| l.contains("\"tree_size\":10,"))
                    .unwrap();
                l[i] = l[i].replace("\"tree_size\":10,", "\"tree_size\":11,");
            },
            "in the segment files: the checkpoint at tree size 11",
        ),
        (
            "rewrite a record with its chain (no key: the checkpoint root differs)",
            |l| {
                let i = entry_line(l, 24);
                l[i] = l[i].replace("\"allow\"", "\"deny\"");
            },
            "in the segment files: the checkpoint at tree size 25 does not match records 20..=24",
        ),
    ];
    for (what, change, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let key = written(dir.path(), 25, 10).await;
        verify(dir.path(), &key).await.unwrap();
        let mut lines = segment_lines(dir.path());
        change(&mut lines);
        std::fs::write(segment_file(dir.path()), lines.join("\n") + "\n").unwrap();
        let err = verify(dir.path(), &key).await.expect_err(what).to_string();
        assert!(err.contains(named), "{what}: {err}");
    }
}

#[tokio::test]
async fn a_truncated_segment_file_stops_the_writer_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 5, 10).await;
    let file = segment_file(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = SqliteStore::open_with(dir.path(), options(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_and_the_chain_continues() {
    // A crash in the middle of a write leaves a line without its newline; it was never
    // acknowledged. Readers skip it; the next writer cuts it off and goes on.
    let dir = tempfile::tempdir().unwrap();
    let key = written(dir.path(), 5, 10).await;
    let file = segment_file(dir.path());
    let whole = std::fs::read(&file).unwrap();
    let torn = segment_lines(dir.path())[entry_line(&segment_lines(dir.path()), 4)].clone();
    let mut bytes = whole.clone();
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]);
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(verify(dir.path(), &key).await.unwrap().entries, 5);
    let store = SqliteStore::open_with(dir.path(), options(10))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        whole,
        "the torn line is gone"
    );
    store.append(record(5)).await.unwrap();
    store.shutdown().await.unwrap();
    let s = verify(dir.path(), &key).await.unwrap();
    assert_eq!((s.entries, s.unanchored), (6, 0));
}

#[tokio::test]
async fn an_append_resolves_only_once_its_entry_is_in_the_segment_file() {
    // Invariant 2 as far as a process can see it: when `append` returns, the entry is in
    // the segment file (written and, with `Durability::Fsync`, fdatasynced: the writer
    // answers only after `sync_data` returns), whatever the index has done.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(dir.path(), options(1000))
        .await
        .unwrap();
    for i in 0..20 {
        store.append(record(i)).await.unwrap();
        let text = std::fs::read_to_string(segment_file(dir.path())).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            last.contains(&format!("\"decision_id\":\"d-{i}\"")) && text.ends_with('\n'),
            "record {i}: {last}"
        );
    }
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_deleted_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let key = written(dir.path(), 12, 5).await;
    for f in ["remit.db", "remit.db-wal", "remit.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let store = SqliteStore::open_with(dir.path(), options(5))
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 12);
    store.reader().prove("d-3").await.unwrap();
    store.shutdown().await.unwrap();
    let s = verify(dir.path(), &key).await.unwrap();
    assert_eq!((s.entries, s.checkpoints), (12, 3));
}

/// Turns a stopped data directory's database back into what remit wrote before
/// migration 0008: `audit_entries` holding each entry's text (taken from the segment
/// file), and 0008 not yet applied (the next open applies it).
fn back_to_schema_7(dir: &Path) {
    let text = std::fs::read(segment_file(dir)).unwrap();
    let conn = rusqlite::Connection::open(dir.join(remit_store::DB_FILE)).unwrap();
    conn.execute_batch(
        "DELETE FROM _sqlx_migrations WHERE version >= 8; \
         DROP TABLE audit_entries_before_segments; \
         ALTER TABLE audit_entries RENAME TO slim; DROP INDEX audit_entries_by_id; \
         CREATE TABLE audit_entries (replica TEXT NOT NULL, seq INTEGER NOT NULL, \
           kind TEXT NOT NULL, id TEXT NOT NULL, time TEXT NOT NULL, identity TEXT, human TEXT, \
           purpose TEXT, verdict TEXT, entry TEXT NOT NULL, leaf BLOB NOT NULL, UNIQUE (replica, seq)); \
         CREATE INDEX audit_entries_by_id ON audit_entries (id, kind);",
    )
    .unwrap();
    let rows: Vec<(i64, i64, i64)> = conn
        .prepare("SELECT rowid, seg_offset, len FROM slim ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (rowid, offset, len) in rows {
        let entry = std::str::from_utf8(&text[offset as usize..(offset + len) as usize]).unwrap();
        conn.execute(
            "INSERT INTO audit_entries (rowid, replica, seq, kind, id, time, identity, human, purpose, verdict, entry, leaf) \
             SELECT rowid, replica, seq, kind, id, time, identity, human, purpose, verdict, ?2, leaf FROM slim WHERE rowid = ?1",
            rusqlite::params![rowid, entry],
        )
        .unwrap();
    }
    conn.execute_batch("DROP TABLE slim").unwrap();
}

#[tokio::test]
async fn a_log_kept_only_in_the_database_moves_to_a_segment_file_at_open() {
    // A data directory from before segment files: the database was the log.
    let dir = tempfile::tempdir().unwrap();
    let key = written(dir.path(), 7, 3).await;
    let copy = segment_lines(dir.path());
    back_to_schema_7(dir.path());
    std::fs::remove_dir_all(dir.path().join(remit_store::segment::SEGMENT_DIR)).unwrap();
    sql(
        dir.path(),
        "UPDATE audit_state SET segment = NULL, seg_offset = NULL",
    );
    let store = SqliteStore::open_with(dir.path(), options(3))
        .await
        .unwrap();
    assert_eq!(segment_lines(dir.path()), copy, "the same lines, in order");
    store.append(record(7)).await.unwrap();
    store.reader().prove("d-2").await.unwrap();
    store.shutdown().await.unwrap();
    let s = verify(dir.path(), &key).await.unwrap();
    assert_eq!((s.entries, s.unanchored), (8, 0));
    let conn = rusqlite::Connection::open(dir.path().join(remit_store::DB_FILE)).unwrap();
    let kept: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_entries_before_segments",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 0, "the text is in the segment file now");
}

#[tokio::test]
async fn an_index_written_before_offsets_is_rebuilt_from_the_segments() {
    // A data directory of the previous version: segment files, and an index holding each
    // entry's text. Migration 0008 drops that index; it is rebuilt from the segments, by
    // a reader of the stopped directory or by the writer at open.
    for by_reader in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let key = written(dir.path(), 12, 5).await;
        back_to_schema_7(dir.path());
        let conn = rusqlite::Connection::open(dir.path().join(remit_store::DB_FILE)).unwrap();
        let old: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM audit_entries WHERE entry LIKE '{\"prev\":%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 12);
        drop(conn);
        if by_reader {
            let reader = AuditReader::open(dir.path()).await.unwrap();
            assert_eq!(reader.entry_count("replica-1").await.unwrap(), 12);
            let found = reader
                .search(&Search {
                    limit: 100,
                    ..Search::default()
                })
                .await
                .unwrap();
            assert_eq!(found.len(), 12);
            assert!(found[4].entry.contains("\"decision_id\":\"d-4\""));
            reader.prove("d-9").await.unwrap();
        } else {
            let store = SqliteStore::open_with(dir.path(), options(5))
                .await
                .unwrap();
            assert_eq!(store.count().await.unwrap(), 12);
            store.append(record(12)).await.unwrap();
            store.reader().prove("d-3").await.unwrap();
            store.shutdown().await.unwrap();
        }
        let s = verify(dir.path(), &key).await.unwrap();
        assert_eq!(s.entries, if by_reader { 12 } else { 13 });
    }
}

#[tokio::test]
async fn an_entry_that_does_not_match_the_index_is_refused_not_returned() {
    // Readers read entries from the segment file where the index places them and check
    // them against the index's hash.
    use remit_store::StoreError;
    use remit_store::audit::ProveError;
    use remit_store::segment::EntryError;
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 12, 5).await;
    sql(
        dir.path(),
        "UPDATE audit_entries SET seg_offset = (SELECT seg_offset FROM audit_entries WHERE seq = 4), \
         len = (SELECT len FROM audit_entries WHERE seq = 4) WHERE seq = 3; \
         UPDATE audit_entries SET seg_offset = seg_offset + 1000000 WHERE seq = 6",
    );
    let reader = AuditReader::open(dir.path()).await.unwrap();
    let err = reader.prove("d-3").await.unwrap_err();
    assert!(
        matches!(
            err,
            ProveError::Store(StoreError::Entry(EntryError::Mismatch { seq: 3, .. }))
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not match the hash the index holds"),
        "{err}"
    );
    let err = reader.prove("d-6").await.unwrap_err();
    assert!(
        matches!(
            err,
            ProveError::Store(StoreError::Entry(EntryError::Beyond { seq: 6, .. }))
        ),
        "{err}"
    );
    let all = Search {
        limit: 100,
        ..Search::default()
    };
    assert!(matches!(
        reader.search(&all).await,
        Err(StoreError::Entry(EntryError::Mismatch { seq: 3, .. }))
    ));
    assert!(
        reader.after(0, 3).await.is_ok(),
        "rows before the changed one read"
    );
    assert!(reader.export(&mut |_| Ok(())).await.is_err());
    reader.prove("d-5").await.unwrap();
}

#[test]
fn an_entry_of_an_unknown_shape_is_still_indexed_by_its_chain_fields() {
    // A later record kind may use `decision` or `identity` for something else; the index
    // must not stop on it (it would stop the writer from opening).
    let mut chain = remit_audit::Chain::new("replica-1").unwrap();
    let odd = chain.append(br#"{"decision":{"nested":true},"identity":7,"kind":"alert"}"#);
    let dir = tempfile::tempdir().unwrap();
    let seg = segment_file(dir.path());
    std::fs::create_dir_all(seg.parent().unwrap()).unwrap();
    std::fs::write(&seg, [odd.bytes.as_slice(), b"\n"].concat()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open_with(dir.path(), options(10))
            .await
            .unwrap();
        store.append(record(1)).await.unwrap();
        let key = store.public_key().clone();
        store.shutdown().await.unwrap();
        let s = verify(dir.path(), &key).await.unwrap();
        assert_eq!((s.entries, s.unanchored), (2, 0));
    });
}
