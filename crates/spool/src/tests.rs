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
            notify: None,
            orcpt: None,
        }],
        origin: Origin::default(),
        message_id: None,
        subject: None,
        from_header: None,
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
        spool.verify(m).unwrap();
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
    assert!(spool.verify(&due[0]).unwrap_err().contains("checksum"));
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
    assert_eq!(msg.recipients[0].state, "failed");
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
