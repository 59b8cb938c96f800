use super::*;
use palisade_spool::{NewArtifact, NewRecipient, Spool};
use palisade_store::{Config, DataDir, Revision};

async fn write(spool: &Spool, id: &str, n: u32, body: &[u8]) -> NewArtifact {
    let mut f = spool.create_artifact(id, n).unwrap();
    f.write(body).await.unwrap();
    let c = f.finish().await.unwrap();
    NewArtifact {
        n,
        size: c.size,
        sha256: c.sha256,
    }
}

/// A message with an edited copy: each recipient is sent its own artifact (one job per
/// artifact), and when the message is done every file it owned is gone.
#[tokio::test(flavor = "multi_thread")]
async fn each_recipient_gets_its_artifact_and_every_file_goes() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let config =
        Config::from_toml("[[domain]]\nname = \"local.test\"\nroute = \"maildir\"\n").unwrap();
    let rev = Revision {
        id: 1,
        created_at: 0,
        author: "test".into(),
        comment: String::new(),
        config,
    };
    let (spool, _) = Spool::open(&data).unwrap();
    let shared = Arc::new(crate::state::Shared::new(
        data.clone(),
        rev,
        spool.clone(),
        None,
    ));
    let runner = Runner::start(shared.clone());
    shared.set_runner(runner.clone());

    let id = Spool::new_id();
    let original = write(&spool, &id, 0, b"Subject: s\r\n\r\noriginal body\r\n").await;
    let edited = write(
        &spool,
        &id,
        1,
        b"X-Edited: yes\r\nSubject: s\r\n\r\noriginal body\r\n",
    )
    .await;
    let now = palisade_store::now_unix();
    let rcpt = |address: &str, artifact| NewRecipient {
        address: address.into(),
        route: route::MAILDIR.into(),
        artifact,
        ..Default::default()
    };
    let msg = NewMessage {
        id: id.clone(),
        received_at: now,
        expires_at: now + 3600,
        sender: "s@example.org".into(),
        size: original.size,
        sha256: original.sha256.clone(),
        recipients: vec![rcpt("a@local.test", 0), rcpt("b@local.test", 1)],
        artifacts: vec![original, edited],
        ..Default::default()
    };
    let queued = queued_from_new(&msg);
    spool
        .commit(Batch {
            accepted: vec![msg],
            ..Default::default()
        })
        .await
        .unwrap();
    runner.submit(queued);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while spool.db().lock().unwrap().queue_len().unwrap() != (0, 0) {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delivered: Vec<String> = std::fs::read_dir(data.mailbox().join("new"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    delivered.sort_by_key(|c| c.contains("X-Edited"));
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(!delivered[0].contains("X-Edited") && delivered[0].contains("original body"));
    assert!(delivered[1].contains("X-Edited: yes"));
    assert!(delivered[1].contains("b@local.test"), "{}", delivered[1]);
    assert!(!spool.content_path(&id).exists());
    assert!(!spool.artifact_path(&id, 1).exists());
    let status = spool.db().lock().unwrap().track_status(&id).unwrap();
    assert_eq!(status.as_deref(), Some("delivered"));
    shared.begin_shutdown();
}
