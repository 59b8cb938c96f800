use super::*;

fn message(id: &str, content: &SpooledContent) -> NewMessage {
    NewMessage {
        id: id.into(),
        received_at: now(),
        expires_at: now() + 3600,
        sender: "a@example.org".into(),
        size: content.size,
        sha256: content.sha256.clone(),
        kind: MessageKind::Mail,
        smtputf8: false,
        body: None,
        envid: None,
        ret: None,
        recipients: vec![NewRecipient {
            address: "b@example.test".into(),
            route: "maildir".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn accept(spool: &Spool, body: &[u8]) -> String {
    let id = Spool::new_id();
    let mut f = spool.create(&id).unwrap();
    f.write(body).await.unwrap();
    let c = f.finish().await.unwrap();
    spool
        .commit(Batch {
            accepted: vec![message(&id, &c)],
            ..Default::default()
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn accepted_messages_survive_reopen_and_partials_do_not() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, report) = Spool::open(&data).unwrap();
    assert_eq!(report.queued, 0);

    // Big enough to spill to disk before finish.
    let big = vec![b'x'; 700 * 1024];
    let id1 = accept(&spool, b"Subject: one\r\n\r\nbody\r\n").await;
    let id2 = accept(&spool, &big).await;

    // A session that died mid-DATA leaves a file without a row (simulated: file kept on disk).
    let partial = Spool::new_id();
    std::fs::write(spool.content_path(&partial), b"half a mess").unwrap();
    // A dropped incoming file removes itself.
    let dropped = Spool::new_id();
    {
        let mut f = spool.create(&dropped).unwrap();
        f.write(&big).await.unwrap();
    }
    assert!(!spool.content_path(&dropped).exists());
    drop(spool);

    let (spool, report) = Spool::open(&data).unwrap();
    assert_eq!(report.queued, 2);
    assert_eq!(report.removed_partial, vec![partial.clone()]);
    assert!(!spool.content_path(&partial).exists());
    let db = spool.db().lock().unwrap();
    let due = db.due(now() + 1, 100).unwrap();
    let ids: Vec<_> = due.iter().map(|m| m.id.as_str()).collect();
    assert!(ids.contains(&id1.as_str()) && ids.contains(&id2.as_str()));
    for m in &due {
        spool.verify(m, 0).unwrap();
    }
}

#[tokio::test]
async fn damaged_content_is_set_aside_never_delivered() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, _) = Spool::open(&data).unwrap();
    let truncated = accept(&spool, b"Subject: t\r\n\r\nbody body body\r\n").await;
    let flipped = accept(&spool, b"Subject: f\r\n\r\nbody body body\r\n").await;
    let missing = accept(&spool, b"Subject: m\r\n\r\nbody\r\n").await;
    drop(spool);

    let p = data.spool().join(&truncated);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let p = data.spool().join(&flipped);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[5] ^= 0x20;
    std::fs::write(&p, bytes).unwrap();
    std::fs::remove_file(data.spool().join(&missing)).unwrap();

    let (spool, report) = Spool::open(&data).unwrap();
    let mut corrupt: Vec<_> = report.corrupt.iter().map(|(id, _)| id.clone()).collect();
    corrupt.sort();
    let mut want = vec![truncated.clone(), missing.clone()];
    want.sort();
    assert_eq!(corrupt, want);
    assert!(data.spool_corrupt().join(&truncated).exists());
    assert_eq!(report.queued, 1);

    // Same size, different bytes: only the checksum catches it, before delivery.
    let db = spool.db().lock().unwrap();
    let due = db.due(now() + 1, 100).unwrap();
    assert_eq!(due.len(), 1);
    assert!(spool.verify(&due[0], 0).unwrap_err().contains("checksum"));
    let t = db
        .track_search(&palisade_store::mail::TrackQuery {
            status: Some("corrupt".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(t.len(), 2);
}

#[tokio::test]
async fn concurrent_commits_are_grouped_and_all_durable() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, _) = Spool::open(&data).unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            accept(&spool, format!("Subject: {i}\r\n\r\n{i}\r\n").as_bytes()).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(spool.db().lock().unwrap().queue_len().unwrap(), (50, 50));
}

/// Every queue operation writes exactly one audit entry, in the library call itself (the path
/// the engine takes for the console and the CLI, and the CLI takes without an engine).
#[tokio::test]
async fn queue_admin_audits_each_operation_once() {
    use crate::admin::{self, Requester};
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, _) = Spool::open(&data).unwrap();
    let a = accept(&spool, b"Subject: a\r\n\r\nx\r\n").await;
    let b = accept(&spool, b"Subject: b\r\n\r\nx\r\n").await;
    let c = accept(&spool, b"Subject: c\r\n\r\nx\r\n").await;
    let by = Requester {
        actor: "alice",
        source: "10.0.0.9",
    };

    assert_eq!(admin::retry(&data, &a, by).unwrap(), 1);
    assert_eq!(admin::flush(&data, by).unwrap(), 3);
    assert!(admin::delete(&data, &b, by).unwrap());
    assert!(!data.spool().join(&b).exists());
    assert_eq!(admin::bounce(&data, &c, by).unwrap(), Some(1));
    let msg = spool.db().lock().unwrap().message(&c).unwrap().unwrap();
    assert_eq!(msg.recipients[0].state, RcptState::Failed);
    assert!(
        msg.recipients[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains(admin::BOUNCE_REASON)
    );
    // Nothing to act on: nothing changes, nothing is audited.
    assert!(!admin::delete(&data, &b, by).unwrap());
    assert_eq!(admin::bounce(&data, &b, by).unwrap(), None);

    let entries = palisade_store::AuditLog::open(&data.audit_db())
        .unwrap()
        .list(&Default::default())
        .unwrap();
    let count = |action: &str| entries.iter().filter(|e| e.action == action).count();
    for action in ["queue.retry", "queue.flush", "queue.delete", "queue.bounce"] {
        assert_eq!(count(action), 1, "{action}: {entries:?}");
    }
    assert_eq!(entries.len(), 4);
    assert!(
        entries
            .iter()
            .all(|e| e.actor == "alice" && e.source == "10.0.0.9")
    );
    let target = |action: &str| {
        entries
            .iter()
            .find(|e| e.action == action)
            .map(|e| e.target.clone())
            .unwrap()
    };
    assert_eq!(target("queue.retry"), a);
    assert_eq!(target("queue.flush"), "*");
    assert_eq!(target("queue.delete"), b);
    assert_eq!(target("queue.bounce"), c);
}

async fn write(f: IncomingFile, body: &[u8]) -> SpooledContent {
    let mut f = f;
    f.write(body).await.unwrap();
    f.finish().await.unwrap()
}

/// A message with an edited copy for one recipient: two artifacts, each recorded and
/// verified on its own.
async fn accept_two_artifacts(spool: &Spool) -> String {
    let id = Spool::new_id();
    let original = write(spool.create(&id).unwrap(), b"Subject: o\r\n\r\nbody\r\n").await;
    let edited = write(
        spool.create_artifact(&id, 1).unwrap(),
        b"X-Tag: yes\r\nSubject: o\r\n\r\nbody\r\n",
    )
    .await;
    assert_eq!(edited.path, spool.artifact_path(&id, 1));
    let mut m = message(&id, &original);
    m.recipients.push(NewRecipient {
        address: "c@example.test".into(),
        route: "maildir".into(),
        artifact: 1,
        ..Default::default()
    });
    m.artifacts = vec![
        NewArtifact {
            n: 0,
            size: original.size,
            sha256: original.sha256.clone(),
        },
        NewArtifact {
            n: 1,
            size: edited.size,
            sha256: edited.sha256.clone(),
        },
    ];
    spool
        .commit(Batch {
            accepted: vec![m],
            ..Default::default()
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn artifacts_are_verified_removed_and_recovered_together() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, _) = Spool::open(&data).unwrap();
    let whole = accept_two_artifacts(&spool).await;
    let damaged = accept_two_artifacts(&spool).await;
    let gone = accept_two_artifacts(&spool).await;
    {
        let db = spool.db().lock().unwrap();
        let m = db.message(&whole).unwrap().unwrap();
        assert_eq!(m.artifacts.len(), 2);
        spool.verify(&m, 0).unwrap();
        spool.verify(&m, 1).unwrap();
        assert!(spool.verify(&m, 2).is_err());
    }
    // Never acknowledged: an artifact of an unknown id, and an artifact no row names.
    let stray = format!("{}.1", Spool::new_id());
    std::fs::write(data.spool().join(&stray), b"x").unwrap();
    let unused = format!("{whole}.2");
    std::fs::write(data.spool().join(&unused), b"x").unwrap();
    // Damaged: artifact 1 truncated; artifact 1 missing.
    std::fs::write(spool.artifact_path(&damaged, 1), b"X-Tag").unwrap();
    std::fs::remove_file(spool.artifact_path(&gone, 1)).unwrap();
    drop(spool);

    let (spool, report) = Spool::open(&data).unwrap();
    let mut removed = report.removed_partial.clone();
    removed.sort();
    let mut want = vec![stray, unused];
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(report.queued, 1);
    let mut corrupt: Vec<_> = report.corrupt.iter().map(|(id, _)| id.clone()).collect();
    corrupt.sort();
    let mut want = vec![damaged.clone(), gone.clone()];
    want.sort();
    assert_eq!(corrupt, want);
    assert!(
        report
            .corrupt
            .iter()
            .any(|(id, r)| id == &gone && r.contains("content file 1 is missing"))
    );
    // Both files of the damaged message were set aside together.
    assert!(data.spool_corrupt().join(&damaged).exists());
    assert!(data.spool_corrupt().join(format!("{damaged}.1")).exists());
    assert!(!spool.content_path(&damaged).exists());

    // Delivered: every file of the message goes.
    let m = spool.db().lock().unwrap().message(&whole).unwrap().unwrap();
    spool.remove_message(&m);
    assert!(!spool.content_path(&whole).exists());
    assert!(!spool.artifact_path(&whole, 1).exists());
}

fn held(qid: &str, queue_id: &str, c: &SpooledContent, expires_at: i64) -> NewQuarantine {
    NewQuarantine {
        id: qid.into(),
        queue_id: queue_id.into(),
        received_at: now(),
        expires_at,
        sender: "s@example.org".into(),
        recipients: vec![HeldRecipient {
            address: "q@example.test".into(),
            route: "maildir".into(),
            notify: Some("FAILURE".parse().unwrap()),
            orcpt: Some("rfc822;q@example.test".into()),
        }],
        reason: "spam score 12.5".into(),
        explanations: Some(serde_json::json!([{"stage": "antispam", "score": 12.5}])),
        size: c.size,
        sha256: c.sha256.clone(),
        smtputf8: true,
        body: Some(Body::EightBitMime),
        envid: Some("ENV1".into()),
        ret: Some(Ret::Hdrs),
        origin: Origin {
            listener: "smtp".into(),
            client_ip: "192.0.2.7".into(),
            ..Default::default()
        },
        subject: Some("Cheap pills".into()),
        ..Default::default()
    }
}

/// What the engine does for a message whose every recipient is quarantined: the original
/// goes to `DIR/quarantine/`, tracking only in the queue.
async fn quarantine_one(spool: &Spool, body: &[u8], expires_at: i64) -> (String, String) {
    let queue_id = Spool::new_id();
    let qid = Spool::new_id();
    let c = write(spool.create_quarantine(&qid).unwrap(), body).await;
    assert_eq!(c.path, spool.quarantine_path(&qid));
    spool
        .commit(Batch {
            accepted: vec![NewMessage {
                id: queue_id.clone(),
                sender: "s@example.org".into(),
                size: c.size,
                sha256: c.sha256.clone(),
                recipients: vec![],
                status: Some("quarantined".into()),
                ..Default::default()
            }],
            quarantined: vec![held(&qid, &queue_id, &c, expires_at)],
            ..Default::default()
        })
        .await
        .unwrap();
    (queue_id, qid)
}

#[tokio::test]
async fn quarantine_release_delete_and_purge() {
    use crate::admin::Requester;
    use crate::quarantine;
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, _) = Spool::open(&data).unwrap();
    let body = b"Subject: Cheap pills\r\n\r\nbytes \xff as they came\r\n".to_vec();
    let (orig, a) = quarantine_one(&spool, &body, now() + 3600).await;
    let (_, b) = quarantine_one(&spool, b"Subject: b\r\n\r\nb\r\n", now() + 3600).await;
    let (_, c) = quarantine_one(&spool, b"Subject: c\r\n\r\nc\r\n", now() - 1).await;
    let (_, e) = quarantine_one(&spool, b"Subject: e\r\n\r\ne\r\n", now() + 3600).await;
    assert_eq!(spool.db().lock().unwrap().queue_len().unwrap(), (0, 0));
    let by = Requester {
        actor: "alice",
        source: "10.0.0.9",
    };

    let held_list = quarantine::list(&data, Some(QuarantineState::Held), None, 100).unwrap();
    assert_eq!(held_list.len(), 4);
    assert_eq!(
        quarantine::list(&data, None, Some("pills"), 100)
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        quarantine::list(&data, None, Some(&b), 100).unwrap().len(),
        1
    );

    // Release to the original recipients: byte-identical under a new queue id.
    let r = quarantine::release(&data, &a, None, by).unwrap();
    assert_eq!(
        std::fs::read(spool.content_path(&r.queue_id)).unwrap(),
        body
    );
    assert!(!spool.quarantine_path(&a).exists());
    let m = spool
        .db()
        .lock()
        .unwrap()
        .message(&r.queue_id)
        .unwrap()
        .unwrap();
    assert_eq!(m.sender, "s@example.org");
    assert_eq!((m.body, m.ret), (Some(Body::EightBitMime), Some(Ret::Hdrs)));
    assert_eq!(m.envid.as_deref(), Some("ENV1"));
    assert!(m.smtputf8);
    assert_eq!(m.kind, MessageKind::Mail);
    assert_eq!(m.recipients[0].address, "q@example.test");
    assert_eq!(
        m.recipients[0].orcpt.as_deref(),
        Some("rfc822;q@example.test")
    );
    assert!(m.recipients[0].notify.unwrap().failure);
    spool.verify(&m, 0).unwrap();
    let entry = quarantine::get(&data, &a).unwrap().unwrap();
    assert_eq!(entry.state, QuarantineState::Released);
    assert_eq!(entry.released_as.as_deref(), Some(r.queue_id.as_str()));
    {
        let db = spool.db().lock().unwrap();
        let ev = db.track_events(&orig).unwrap();
        let released = ev.iter().find(|e| e.event == "released").unwrap();
        assert!(released.detail.as_deref().unwrap().contains(&r.queue_id));
        assert_eq!(db.track_status(&orig).unwrap().as_deref(), Some("released"));
    }

    // Twice: refused, nothing changes.
    assert!(matches!(
        quarantine::release(&data, &a, None, by),
        Err(SpoolError::NotHeld {
            state: QuarantineState::Released,
            ..
        })
    ));
    assert!(matches!(
        quarantine::release(&data, "NOSUCHID", None, by),
        Err(SpoolError::NotQuarantined(_))
    ));

    // Release to chosen recipients.
    let to = vec![NewRecipient {
        address: "admin@example.test".into(),
        route: "maildir".into(),
        ..Default::default()
    }];
    let r2 = quarantine::release(&data, &e, Some(to), by).unwrap();
    let m = spool
        .db()
        .lock()
        .unwrap()
        .message(&r2.queue_id)
        .unwrap()
        .unwrap();
    assert_eq!(m.recipients.len(), 1);
    assert_eq!(m.recipients[0].address, "admin@example.test");

    // A held file that changed is not released, and stays held.
    let (_, f) = quarantine_one(&spool, b"Subject: f\r\n\r\nf\r\n", now() + 3600).await;
    let mut bytes = std::fs::read(spool.quarantine_path(&f)).unwrap();
    bytes[3] ^= 1;
    std::fs::write(spool.quarantine_path(&f), bytes).unwrap();
    assert!(matches!(
        quarantine::release(&data, &f, None, by),
        Err(SpoolError::Damaged { .. })
    ));
    assert_eq!(
        quarantine::get(&data, &f).unwrap().unwrap().state,
        QuarantineState::Held
    );
    assert_eq!(spool.db().lock().unwrap().queue_len().unwrap().0, 2);

    // Delete.
    quarantine::delete(&data, &b, by).unwrap();
    assert!(!spool.quarantine_path(&b).exists());
    assert_eq!(
        quarantine::get(&data, &b).unwrap().unwrap().state,
        QuarantineState::Deleted
    );
    assert!(matches!(
        quarantine::delete(&data, &b, by),
        Err(SpoolError::NotHeld { .. })
    ));

    // Purge: only the expired held entry.
    let purged: Vec<String> = quarantine::purge(&data, now())
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(purged, vec![c.clone()]);
    assert!(!spool.quarantine_path(&c).exists());
    assert_eq!(
        quarantine::get(&data, &c).unwrap().unwrap().state,
        QuarantineState::Deleted
    );
    assert!(quarantine::purge(&data, now()).unwrap().is_empty());

    let entries = palisade_store::AuditLog::open(&data.audit_db())
        .unwrap()
        .list(&Default::default())
        .unwrap();
    let count = |action: &str, target: &str| {
        entries
            .iter()
            .filter(|e| e.action == action && e.target == target)
            .count()
    };
    assert_eq!(count("quarantine.release", &a), 1);
    assert_eq!(count("quarantine.release", &e), 1);
    assert_eq!(count("quarantine.delete", &b), 1);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().all(|e| e.actor == "alice"));
}

#[tokio::test]
async fn quarantine_files_without_held_rows_are_removed_at_start() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let (spool, _) = Spool::open(&data).unwrap();
    let (_, kept) = quarantine_one(&spool, b"Subject: k\r\n\r\nk\r\n", now() + 3600).await;
    let (_, lost) = quarantine_one(&spool, b"Subject: l\r\n\r\nl\r\n", now() + 3600).await;
    // Written but never committed (crash before the commit).
    let orphan = Spool::new_id();
    std::fs::write(spool.quarantine_path(&orphan), b"x").unwrap();
    std::fs::remove_file(spool.quarantine_path(&lost)).unwrap();
    drop(spool);
    let (spool, report) = Spool::open(&data).unwrap();
    assert!(spool.quarantine_path(&kept).exists());
    assert!(!spool.quarantine_path(&orphan).exists());
    assert_eq!(report.quarantine_damaged.len(), 1);
    assert_eq!(report.quarantine_damaged[0].0, lost);
}

/// A peer in the same process: every committed group is copied into another unit's
/// replica store, as the engine's replicator does over the wire.
struct CopyTo {
    from: std::path::PathBuf,
    store: replica::ReplicaStore,
    groups: Mutex<usize>,
}

impl replica::Replicate for CopyTo {
    fn replicate(&self, batches: &[&Batch]) {
        let g = replica::GroupChanges::of(batches);
        if g.is_empty() {
            return;
        }
        let mut kept = Vec::new();
        for r in &g.records {
            for a in &r.artifacts {
                let mut f = self.store.create_file(&r.id, a.n).unwrap();
                f.write(&std::fs::read(artifact_path(&self.from, &r.id, a.n)).unwrap())
                    .unwrap();
                f.finish(a.size, &a.sha256).unwrap();
            }
            kept.push(r);
        }
        self.store
            .commit(&palisade_store::mail::ReplicaChanges {
                records: kept,
                done: g.done.clone(),
                remove: g.remove.clone(),
            })
            .unwrap();
        *self.groups.lock().unwrap() += 1;
    }
}

#[tokio::test]
async fn replicas_follow_the_queue_and_are_adopted_with_their_finished_recipients_left_out() {
    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let (a, b) = (DataDir::new(da.path()), DataDir::new(db.path()));
    let copy = Arc::new(CopyTo {
        from: a.spool(),
        store: replica::ReplicaStore::open(&b).unwrap(),
        groups: Mutex::new(0),
    });
    let (spool_a, _) = Spool::open_replicated(&a, Some(copy.clone())).unwrap();

    // Two recipients; one is delivered on A before A dies.
    let id = Spool::new_id();
    let mut f = spool_a.create(&id).unwrap();
    f.write(b"Subject: replicated\r\n\r\nbody\r\n")
        .await
        .unwrap();
    let c = f.finish().await.unwrap();
    let mut m = message(&id, &c);
    m.recipients.push(NewRecipient {
        address: "c@example.test".into(),
        route: "maildir".into(),
        ..Default::default()
    });
    m.subject = Some("replicated".into());
    spool_a
        .commit(Batch {
            accepted: vec![m],
            ..Default::default()
        })
        .await
        .unwrap();
    // A second message, finished and removed on A: its replica goes too.
    let gone = accept(&spool_a, b"Subject: gone\r\n\r\nx\r\n").await;
    spool_a
        .commit(Batch {
            outcomes: vec![Outcome {
                message_id: id.clone(),
                idx: 0,
                rcpt: "b@example.test".into(),
                kind: OutcomeKind::Delivered,
                remote: None,
                tls: None,
                reply: "250 ok".into(),
            }],
            remove: vec![gone.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(*copy.groups.lock().unwrap(), 3);
    assert_eq!(
        copy.store.count(),
        1,
        "the removed message left the replicas"
    );
    assert!(!b.replica().join(&gone).exists());
    assert!(b.replica().join(&id).exists());

    // A stray file in the replica directory (a group never acknowledged) goes at open.
    let stray = Spool::new_id();
    std::fs::write(b.replica().join(&stray), b"half").unwrap();
    let store_b = replica::ReplicaStore::open(&b).unwrap();
    assert!(!b.replica().join(&stray).exists());

    // B takes over: the replica is queued with the recipient A had not finished.
    let (spool_b, _) = Spool::open(&b).unwrap();
    assert_eq!(spool_b.adopt_replicas(&store_b).await.unwrap(), 1);
    let q = spool_b.db().lock().unwrap().message(&id).unwrap().unwrap();
    let rcpts: Vec<&str> = q.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["c@example.test"]);
    assert!(
        spool_b.verify(&q, 0).is_ok(),
        "the content came across intact"
    );
    assert_eq!(store_b.count(), 0);
    assert!(
        !b.replica().join(&id).exists(),
        "the replica's files went after the commit"
    );
    let track = spool_b.db().lock().unwrap().track_events(&id).unwrap();
    assert!(track.iter().any(|e| e.event == "adopted"), "{track:?}");
    // Adopting again does nothing.
    assert_eq!(spool_b.adopt_replicas(&store_b).await.unwrap(), 0);

    // A comes back with its inventory: B names what it adopted (A drops it) and what it lacks.
    let other = Spool::new_id();
    let (missing, adopted) = store_b.inventory(&[id.clone(), other.clone()]).unwrap();
    assert_eq!(missing, vec![other]);
    assert_eq!(adopted, vec![id]);
}

#[test]
fn a_damaged_replica_file_is_refused_on_arrival() {
    let d = tempfile::tempdir().unwrap();
    let store = replica::ReplicaStore::open(&DataDir::new(d.path())).unwrap();
    let id = Spool::new_id();
    let mut f = store.create_file(&id, 0).unwrap();
    f.write(b"not what was recorded").unwrap();
    let err = f.finish(3, &"00".repeat(32)).unwrap_err();
    assert!(err.contains("the record says"), "{err}");
    assert!(!d.path().join("replica").join(&id).exists());
    assert!(
        store.create_file("../etc/passwd", 0).is_err(),
        "only queue ids name files"
    );
}
