//! `palisade queue` with no engine running: the CLI makes each change with the same
//! `palisade_spool::admin` call the engine makes, and each is audited exactly once.

use std::process::Command;

use palisade_store::mail::{Batch, MailDb, MessageKind, NewMessage, NewRecipient, Origin};
use palisade_store::{AuditLog, Config, ConfigStore, DataDir};

fn queue_one(data: &DataDir, id: &str) {
    std::fs::create_dir_all(data.spool()).unwrap();
    std::fs::write(data.spool().join(id), "Subject: x\r\n\r\nbody\r\n").unwrap();
    let now = palisade_store::now_unix();
    MailDb::open(&data.mail_db())
        .unwrap()
        .apply(&Batch {
            accepted: vec![NewMessage {
                id: id.into(),
                received_at: now,
                expires_at: now + 3600,
                sender: "alice@partner.test".into(),
                size: 21,
                sha256: vec![0; 32],
                kind: MessageKind::Mail,
                smtputf8: false,
                body: None,
                envid: None,
                ret: None,
                recipients: vec![NewRecipient {
                    address: "bob@example.test".into(),
                    route: "maildir".into(),
                    notify: None,
                    orcpt: None,
                }],
                origin: Origin::default(),
                message_id: None,
                subject: None,
                from_header: None,
            }],
            ..Default::default()
        })
        .unwrap();
}

fn cli(data: &DataDir, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("--data")
        .arg(data.root())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn each_queue_change_is_made_and_audited_once_without_an_engine() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let mut audit = AuditLog::open(&data.audit_db()).unwrap();
    ConfigStore::open(&data.config_db())
        .unwrap()
        .init(&mut audit, &Config::default())
        .unwrap();
    let (a, b, c) = (
        "0000000000000000000a",
        "0000000000000000000b",
        "0000000000000000000c",
    );
    for id in [a, b, c] {
        queue_one(&data, id);
    }

    let (ok, out) = cli(&data, &["queue", "retry", a]);
    assert!(ok && out.contains("1 recipient(s) due now"), "{out}");
    let (ok, out) = cli(&data, &["queue", "retry", "--all"]);
    assert!(ok && out.contains("3 recipient(s) due now"), "{out}");
    let (ok, out) = cli(&data, &["queue", "delete", b]);
    assert!(ok && out.contains(&format!("{b} deleted")), "{out}");
    assert!(!data.spool().join(b).exists());
    let (ok, out) = cli(&data, &["queue", "delete", b]);
    assert!(!ok && out.contains("no longer queued"), "{out}");
    let (ok, out) = cli(&data, &["queue", "bounce", c]);
    assert!(ok && out.contains("returned to the sender"), "{out}");
    let (ok, out) = cli(&data, &["queue", "bounce", b]);
    assert!(!ok && out.contains("is not queued"), "{out}");

    // The bounced message's recipient is final; the engine sends the bounce when it starts.
    let msg = MailDb::open(&data.mail_db())
        .unwrap()
        .message(c)
        .unwrap()
        .unwrap();
    assert_eq!(msg.recipients[0].state, "failed");

    let entries = audit.list(&Default::default()).unwrap();
    for (action, target) in [
        ("queue.retry", a),
        ("queue.flush", "*"),
        ("queue.delete", b),
        ("queue.bounce", c),
    ] {
        let found: Vec<_> = entries.iter().filter(|e| e.action == action).collect();
        assert_eq!(found.len(), 1, "{action}: {entries:?}");
        assert_eq!(found[0].target, target);
        assert!(found[0].actor.starts_with("cli:"), "{:?}", found[0]);
        assert_eq!(found[0].source, "local");
    }
    let queue_entries = entries
        .iter()
        .filter(|e| e.action.starts_with("queue."))
        .count();
    assert_eq!(queue_entries, 4, "{entries:?}");
}
