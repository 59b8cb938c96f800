//! `palisade queue` with no engine running: the CLI makes each change with the same
//! `palisade_spool::admin` call the engine makes, and each is audited exactly once.

use std::process::Command;

use palisade_store::mail::{
    Batch, HeldRecipient, MailDb, MessageKind, NewMessage, NewQuarantine, NewRecipient,
    QuarantineState, RcptState,
};
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
                recipients: vec![NewRecipient {
                    address: "bob@example.test".into(),
                    route: "maildir".into(),
                    ..Default::default()
                }],
                ..Default::default()
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
    assert_eq!(msg.recipients[0].state, RcptState::Failed);

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

fn hold(data: &DataDir, qid: &str, content: &[u8]) {
    std::fs::create_dir_all(data.quarantine()).unwrap();
    std::fs::write(data.quarantine().join(qid), content).unwrap();
    let sha = sha256(content);
    MailDb::open(&data.mail_db())
        .unwrap()
        .apply(&Batch {
            quarantined: vec![NewQuarantine {
                id: qid.into(),
                queue_id: format!("{qid}-orig"),
                received_at: palisade_store::now_unix(),
                expires_at: palisade_store::now_unix() + 3600,
                sender: "alice@partner.test".into(),
                recipients: vec![HeldRecipient {
                    address: "bob@example.test".into(),
                    route: "maildir".into(),
                    notify: None,
                    orcpt: None,
                }],
                reason: "virus found".into(),
                explanations: Some(serde_json::json!([{"stage": "antivirus", "rule": "eicar"}])),
                size: content.len() as u64,
                sha256: sha,
                subject: Some("hello".into()),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
}

fn sha256(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // The CLI is the only thing under test here: let sha256sum compute the digest.
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn quarantine_commands_without_an_engine() {
    let d = tempfile::tempdir().unwrap();
    let data = DataDir::new(d.path());
    let mut audit = AuditLog::open(&data.audit_db()).unwrap();
    ConfigStore::open(&data.config_db())
        .unwrap()
        .init(&mut audit, &Config::default())
        .unwrap();
    std::fs::create_dir_all(data.spool()).unwrap();
    let content = b"Subject: hello\r\nFrom: alice@partner.test\r\n\r\nbody\r\n";
    let (a, b) = ("0000000000000000001a", "0000000000000000001b");
    hold(&data, a, content);
    hold(&data, b, content);

    let (ok, out) = cli(&data, &["quarantine", "list", "--json"]);
    assert!(ok, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["state"], "held");
    let (ok, out) = cli(&data, &["quarantine", "show", a]);
    assert!(
        ok && out.contains("virus found") && out.contains("\"rule\": \"eicar\""),
        "{out}"
    );
    assert!(out.contains("Subject: hello"), "{out}");

    let (ok, out) = cli(
        &data,
        &[
            "quarantine",
            "release",
            a,
            "--to",
            "carol@elsewhere.test",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let queue_id = r["queue_id"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read(data.spool().join(&queue_id)).unwrap(),
        content
    );
    let m = MailDb::open(&data.mail_db())
        .unwrap()
        .message(&queue_id)
        .unwrap()
        .unwrap();
    assert_eq!(m.recipients[0].address, "carol@elsewhere.test");
    assert_eq!(m.recipients[0].route, "mx:elsewhere.test");
    let (ok, out) = cli(&data, &["quarantine", "release", a]);
    assert!(!ok && out.contains("not held"), "{out}");

    let (ok, out) = cli(&data, &["quarantine", "delete", b]);
    assert!(ok && out.contains("deleted"), "{out}");
    assert!(!data.quarantine().join(b).exists());
    let (ok, out) = cli(
        &data,
        &["quarantine", "list", "--state", "deleted", "--json"],
    );
    assert!(ok, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["id"], b);
    let e = MailDb::open(&data.mail_db())
        .unwrap()
        .quarantine_get(a)
        .unwrap()
        .unwrap();
    assert_eq!(e.state, QuarantineState::Released);

    let entries = audit.list(&Default::default()).unwrap();
    let count = |action: &str| entries.iter().filter(|e| e.action == action).count();
    assert_eq!(count("quarantine.release"), 1, "{entries:?}");
    assert_eq!(count("quarantine.delete"), 1, "{entries:?}");
}
