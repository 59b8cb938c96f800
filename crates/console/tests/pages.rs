//! The pages do what they say: configuration changes become audited revisions, problems
//! appear next to their fields, the queue shows headers but never bodies, tracking finds
//! messages, the audit log verifies and exports, a restore shows its difference first.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use palisade_console::{ClientAddr, SESSION_COOKIE};
use palisade_store::ConfigStore;
use palisade_store::audit::AuditFilter;
use palisade_store::mail::{
    Batch, MailDb, MessageKind, NewMessage, NewRecipient, Origin, Rejection,
};

fn revision(c: &Console) -> (i64, palisade_store::Config) {
    let r = ConfigStore::open(&c.data.config_db())
        .unwrap()
        .current()
        .unwrap()
        .unwrap();
    (r.id, r.config)
}

#[tokio::test]
async fn adding_an_inbound_domain_is_an_audited_revision_and_problems_sit_by_their_fields() {
    let c = Console::new();
    let s = c.admin();
    let page = c.get("/mailflow", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("example.test"));

    // Two problems at once: a bad name and a bad host; both shown by their fields, nothing saved.
    let bad = c
        .post(
            "/mailflow/domains",
            &s,
            &[
                ("revision", "1"),
                ("action", "add"),
                ("index", "1"),
                ("name", "not a domain"),
                ("route", "smarthosts"),
                ("smarthosts", "mx1.hospital.test:25\nbad host:x"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(
        bad.body.contains(
            r#"id="domain-new-name-err">&#39;not a domain&#39; is not a valid domain name"#
        ),
        "{}",
        bad.body
    );
    assert!(bad.body.contains(r#"id="domain-new-smarthosts-err""#));
    assert!(
        bad.body.contains("mx1.hospital.test:25\nbad host:x"),
        "the user's input is kept"
    );
    assert_eq!(revision(&c).0, 1);

    let ok = c
        .post(
            "/mailflow/domains",
            &s,
            &[
                ("revision", "1"),
                ("action", "add"),
                ("index", "1"),
                ("name", "Hospital.Test"),
                ("route", "smarthosts"),
                ("smarthosts", "10.1.2.3:2525\nmx2.hospital.test"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let (rev, cfg) = revision(&c);
    assert_eq!(rev, 2);
    let d = cfg.inbound_domain("hospital.test").unwrap();
    assert_eq!(d.smarthosts.len(), 2);
    assert_eq!(d.smarthosts[0].port, 2525);
    let entry = c
        .audit()
        .list(&AuditFilter {
            action_prefix: Some("config.commit".into()),
            ..Default::default()
        })
        .unwrap()
        .remove(0);
    assert_eq!(entry.actor, "admin");
    assert_eq!(entry.source, "192.0.2.1");
    assert!(entry.detail.contains("hospital.test"), "{}", entry.detail);
    assert!(entry.detail.contains("inbound domain hospital.test added"));
    // The engine is not running here: the page says so instead of failing.
    let after = c.get("/mailflow", Some(&s)).await;
    assert!(
        after.body.contains("Saved as configuration revision 2"),
        "{}",
        after.body
    );
    assert!(after.body.contains("engine is not reachable"));

    // An edit based on an old revision is a conflict, not a silent undo.
    let stale = c
        .post(
            "/mailflow/network",
            &s,
            &[("revision", "1"), ("trusted_networks", "10.0.0.0/8")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(revision(&c).0, 2);

    // The audit page shows the difference.
    let audit = c.get("/audit?action=config.", Some(&s)).await;
    assert!(audit.body.contains("+[[domain]]"), "{}", audit.body);
    assert!(
        audit.body.contains("name = &#34;hospital.test&#34;"),
        "{}",
        audit.body
    );

    // Limits: a value out of range is reported at its field.
    let r = c
        .post(
            "/mailflow/limits",
            &s,
            &[
                ("revision", "2"),
                ("max_message_size_mib", "50"),
                ("max_recipients", "0"),
                ("max_connections", "500"),
                ("max_connections_per_ip", "20"),
                ("command_timeout_secs", "300"),
                ("data_timeout_secs", "600"),
                ("min_free_disk_mb", "100"),
                ("max_lifetime_hours", "120"),
                ("retry_initial_secs", "300"),
                ("retry_max_secs", "3600"),
                ("max_per_destination", "10"),
                ("max_concurrent", "100"),
                ("connect_timeout_secs", "30"),
                ("delivery_command_timeout_secs", "lots"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body
            .contains(r#"id="limits-max_recipients-err">0 is outside 1 .. 10000"#),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(r#"id="limits-delivery_command_timeout_secs-err""#)
    );
}

#[tokio::test]
async fn auditors_read_configuration_without_forms_to_change_it() {
    let c = Console::new();
    let s = c.user("arthur", palisade_store::accounts::Role::Auditor);
    let page = c.get("/mailflow", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("can read these settings but not change them")
    );
    assert!(!page.body.contains("Add domain"));
    assert!(page.body.contains(" disabled"));
    let nav = c.get("/", Some(&s)).await.body;
    assert!(nav.contains("href=\"/audit\""));
    let op = c.user("olivia", palisade_store::accounts::Role::Operator);
    let nav = c.get("/", Some(&op)).await.body;
    assert!(
        !nav.contains("href=\"/mailflow\""),
        "operators do not see configuration"
    );
    assert!(nav.contains("href=\"/queue\""));
}

fn queue_one(c: &Console, id: &str, content: &str) {
    std::fs::write(c.data.spool().join(id), content).unwrap();
    let mut db = MailDb::open(&c.data.mail_db()).unwrap();
    let now = palisade_store::now_unix();
    db.apply(&Batch {
        accepted: vec![NewMessage {
            id: id.into(),
            received_at: now,
            expires_at: now + 3600,
            sender: "alice@partner.test".into(),
            size: content.len() as u64,
            sha256: vec![0; 32],
            kind: MessageKind::Mail,
            smtputf8: false,
            body: None,
            envid: None,
            ret: None,
            recipients: vec![NewRecipient {
                address: "bob@example.test".into(),
                route: "maildir".into(),
                ..Default::default()
            }],
            origin: Origin {
                listener: "smtp".into(),
                client_ip: "192.0.2.50".into(),
                client_helo: "mx.partner.test".into(),
                tls: Some("TLSv1.3 TLS13_AES_128_GCM_SHA256".into()),
                auth_user: None,
            },
            message_id: Some("<m1@partner.test>".into()),
            subject: Some("<script>alert(1)</script> results".into()),
            from_header: Some("Alice <alice@partner.test>".into()),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
}

#[tokio::test]
async fn queue_shows_envelope_and_headers_as_text_never_the_body() {
    let c = Console::new();
    let s = c.admin();
    let id = "00000000000000000000a1";
    let id = &id[..20];
    queue_one(
        &c,
        id,
        "From: Alice <alice@partner.test>\r\nSubject: <script>alert(1)</script> results\r\nMessage-ID: <m1@partner.test>\r\n\r\nSECRET BODY TEXT <b>bold</b>\r\n",
    );
    let list = c.get("/queue", Some(&s)).await;
    assert!(list.body.contains(id));
    assert!(list.body.contains("alice@partner.test"));
    let search = c.get("/queue?q=nomatch", Some(&s)).await;
    assert!(!search.body.contains(id));
    let page = c.get(&format!("/queue/{id}"), Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("Subject: &#60;script&#62;alert(1)&#60;/script&#62; results"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>"));
    assert!(
        !page.body.contains("SECRET BODY TEXT"),
        "the body is never shown"
    );
    // Path traversal never reaches the file system.
    let r = c.get("/queue/..%2F..%2Fconfig.db", Some(&s)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Tracking finds it by subject, sender, Message-ID; the trace page shows the reception.
    for q in [
        "subject=results",
        "sender=alice",
        "message_id=m1%40partner",
        "rcpt=bob",
    ] {
        let r = c.get(&format!("/tracking?{q}"), Some(&s)).await;
        assert!(r.body.contains(id), "{q}");
    }
    let r = c.get("/tracking?status=delivered", Some(&s)).await;
    assert!(!r.body.contains(&format!(">{id}<")));
    let trace = c.get(&format!("/tracking/{id}"), Some(&s)).await;
    assert!(trace.body.contains("mx.partner.test"));
    assert!(trace.body.contains("TLSv1.3"));
    assert!(trace.body.contains("received"));

    // Changes to the queue are the engine's: without it, nothing changes and the page says so.
    for action in ["delete", "retry", "bounce"] {
        let r = c
            .post(&format!("/queue/{id}"), &s, &[("action", action)])
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{action}");
        assert!(r.body.contains("engine is not reachable"), "{}", r.body);
    }
    let r = c.post("/queue/flush", &s, &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(c.data.spool().join(id).exists());
    assert!(
        MailDb::open(&c.data.mail_db())
            .unwrap()
            .message(id)
            .unwrap()
            .is_some()
    );

    // With the engine there, the console asks it, in the user's name; the engine makes the
    // change and audits it (a stand-in engine here), the console writes nothing itself.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let _engine = {
        use palisade_control::engine::{ControlRequest as R, ControlResponse};
        let listener = palisade_control::server::bind(&c.data.control_socket(), 0o660).unwrap();
        let seen = seen.clone();
        palisade_control::server::serve(listener, Default::default(), move |req: R| {
            seen.lock().unwrap().push(req.clone());
            async move {
                match req {
                    R::Delete { id, .. } => ControlResponse::ok(format!("{id} deleted")),
                    R::Retry { .. } => ControlResponse::counted("1 recipient(s) due now", 1),
                    R::Flush { .. } => ControlResponse::counted("3 recipient(s) due now", 3),
                    R::Bounce { id, .. } => ControlResponse::err(format!("{id} is not queued")),
                    _ => ControlResponse::err("unexpected"),
                }
            }
        })
    };
    let r = c
        .post(&format!("/queue/{id}"), &s, &[("action", "retry")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = c
        .post(&format!("/queue/{id}"), &s, &[("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = c.post("/queue/flush", &s, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // What the engine refuses is shown: a message that is gone is a plain 404.
    let r = c
        .post(&format!("/queue/{id}"), &s, &[("action", "bounce")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(r.body.contains("is not queued"), "{}", r.body);
    {
        use palisade_control::engine::ControlRequest as R;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        for req in seen.iter() {
            let (actor, source) = match req {
                R::Retry {
                    id: i,
                    actor,
                    source,
                }
                | R::Delete {
                    id: i,
                    actor,
                    source,
                }
                | R::Bounce {
                    id: i,
                    actor,
                    source,
                } => {
                    assert_eq!(i, id);
                    (actor, source)
                }
                R::Flush { actor, source } => (actor, source),
                other => panic!("{other:?}"),
            };
            assert_eq!(actor, "admin");
            assert_eq!(source, "192.0.2.1");
        }
    }
    let queue_entries = c
        .audit()
        .list(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("queue."))
        .count();
    assert_eq!(
        queue_entries, 0,
        "the console audits no queue change itself"
    );
}

#[tokio::test]
async fn audit_log_verifies_and_exports_csv() {
    let c = Console::new();
    let s = c.admin();
    let r = c.get("/audit/verify", Some(&s)).await;
    assert!(r.body.contains("The chain is intact"), "{}", r.body);
    let csv = c.get("/audit.csv?action=user.", Some(&s)).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let mut lines = csv.body.lines();
    assert_eq!(
        lines.next(),
        Some("seq,time_utc,actor,source,action,target,detail,hash")
    );
    assert!(csv.body.contains("user.create"));
    assert!(!csv.body.contains("config.commit"));
    // Tampering shows.
    let conn = rusqlite_open(&c.data.audit_db());
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1", [])
        .unwrap();
    let r = c.get("/audit/verify", Some(&s)).await;
    assert!(
        r.body.contains("The chain is broken at entry 1"),
        "{}",
        r.body
    );
}

fn rusqlite_open(p: &std::path::Path) -> palisade_store::rusqlite::Connection {
    palisade_store::rusqlite::Connection::open(p).unwrap()
}

fn multipart(csrf: &str, name: &str, filename: &str, content: &str) -> (String, String) {
    let boundary = "XBOUNDARYx7";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn backup_then_restore_shows_the_difference_before_applying() {
    let c = Console::new();
    let s = c.admin();
    let backup = c.get("/system/backup.toml", Some(&s)).await;
    assert_eq!(backup.status, StatusCode::OK);
    assert!(backup.body.contains("[smtp]"));
    let edited = backup
        .body
        .replace("max_recipients = 100", "max_recipients = 42");

    // The upload carries its CSRF token inside the multipart body; without it: 403.
    let (ct, body) = multipart("wrong", "file", "cfg.toml", &edited);
    let mut r = Request::builder()
        .method(Method::POST)
        .uri("/system/restore")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(header::COOKIE, format!("{SESSION_COOKIE}={}", s.cookie))
        .header(header::CONTENT_TYPE, &ct)
        .body(Body::from(body))
        .unwrap();
    r.extensions_mut()
        .insert(ClientAddr("192.0.2.1:1".parse().unwrap()));
    assert_eq!(c.send(r).await.status, StatusCode::FORBIDDEN);

    let (ct, body) = multipart(&s.csrf, "file", "cfg.toml", &edited);
    let mut r = Request::builder()
        .method(Method::POST)
        .uri("/system/restore")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(header::COOKIE, format!("{SESSION_COOKIE}={}", s.cookie))
        .header(header::CONTENT_TYPE, &ct)
        .body(Body::from(body))
        .unwrap();
    r.extensions_mut()
        .insert(ClientAddr("192.0.2.1:1".parse().unwrap()));
    let preview = c.send(r).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains("-max_recipients = 100"));
    assert!(preview.body.contains("+max_recipients = 42"));
    assert_eq!(revision(&c).0, 1, "a preview changes nothing");

    let apply = c
        .post(
            "/system/restore/apply",
            &s,
            &[("base", "1"), ("toml", &edited)],
        )
        .await;
    assert_eq!(apply.status, StatusCode::SEE_OTHER, "{}", apply.body);
    let (rev, cfg) = revision(&c);
    assert_eq!((rev, cfg.smtp.max_recipients), (2, 42));

    // A broken file lists every problem and changes nothing.
    let broken = "[smtp]\nmax_recipients = 0\n[system]\nhostname = \"a b\"\n";
    let r = c
        .post(
            "/system/restore/apply",
            &s,
            &[("base", "2"), ("toml", broken)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("smtp.max_recipients"));
    assert!(r.body.contains("system.hostname"));
    assert_eq!(revision(&c).0, 2);

    // Rollback makes revision 1 current again as revision 3.
    let r = c.post("/system/rollback", &s, &[("revision", "1")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (rev, cfg) = revision(&c);
    assert_eq!((rev, cfg.smtp.max_recipients), (3, 100));
}

#[tokio::test]
async fn users_are_created_with_one_time_passwords_and_the_last_administrator_stays() {
    let c = Console::new();
    let s = c.admin();
    let r = c
        .post("/users", &s, &[("name", "olivia"), ("role", "operator")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let otp = r
        .body
        .split("<p class=\"secret mono\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let login = c.login("olivia", &otp, "192.0.2.3").await;
    assert_eq!(login.location(), Some("/password"));
    let admin_id = c.accounts().user_by_name("admin").unwrap().unwrap().id;
    let r = c
        .post(
            &format!("/users/{admin_id}"),
            &s,
            &[("action", "role"), ("role", "auditor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least one administrator"));
    let r = c
        .post(&format!("/users/{admin_id}"), &s, &[("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_changes_configuration_with_problems_as_json() {
    let c = Console::new();
    c.admin();
    let mut acc = c.accounts();
    let id = acc.user_by_name("admin").unwrap().unwrap().id;
    let (_, token) = acc
        .create_token(&mut c.audit(), id, "ci", 90, "test")
        .unwrap();
    let call = |method: Method, path: &str, body: Option<serde_json::Value>| {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap()
    };
    let st = c.send(call(Method::GET, "/api/v1/status", None)).await;
    assert_eq!(st.status, StatusCode::OK);
    let st = st.json();
    assert_eq!(st["revision"], 1);
    // High availability is not built: the API does not invent a state for it.
    assert!(st.get("ha").is_none(), "{st}");
    let toml = c
        .send(call(Method::GET, "/api/v1/config/toml", None))
        .await
        .body;
    let bad = c
        .send(call(
            Method::POST,
            "/api/v1/config",
            Some(serde_json::json!({ "toml": toml.replace("max_recipients = 100", "max_recipients = 0") })),
        ))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["problems"][0]["path"], "smtp.max_recipients");
    let ok = c
        .send(call(
            Method::POST,
            "/api/v1/config",
            Some(serde_json::json!({ "toml": toml.replace("max_recipients = 100", "max_recipients = 7"),
                                     "revision": 1, "comment": "from CI" })),
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["revision"], 2);
    let stale = c
        .send(call(
            Method::POST,
            "/api/v1/config",
            Some(serde_json::json!({ "toml": toml, "revision": 1 })),
        ))
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let audit = c
        .send(call(Method::GET, "/api/v1/audit?action=config.", None))
        .await;
    let entries = audit.json();
    assert_eq!(entries[0]["actor"], "admin (api)");
    let flow = c
        .send(call(Method::GET, "/api/v1/flow?range=7d", None))
        .await
        .json();
    assert_eq!(flow["buckets"].as_array().unwrap().len(), 28);
}

#[tokio::test]
async fn dashboard_draws_charts_as_svg_without_inline_style() {
    let c = Console::new();
    let s = c.admin();
    queue_one(&c, "00000000000000000001", "Subject: x\r\n\r\nb\r\n");
    let r = c.get("/", Some(&s)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.matches("<svg class=\"chart\"").count(), 2);
    assert!(r.body.contains("class=\"line s-received\""));
    // Not in a pair: the high-availability tile says so (and how to pair).
    assert!(r.body.contains("id=\"ha-tile\""));
    assert!(r.body.contains("Standalone"));
    assert!(r.body.contains("palisade ha create"));
    assert!(r.body.contains("supervisor is not reachable"));
    assert!(!r.body.contains("style="));
}

/// The protection panel shows names strangers chose (a signature name clamd reported for their
/// file, their sender domain) as text, in the SVG and in the tables; the API gives them as
/// they are; both windows answer and another is refused.
#[tokio::test]
async fn dashboard_protection_panel_escapes_what_strangers_named() {
    let c = Console::new();
    let s = c.admin();
    let hostile_sig = "<img src=x onerror=alert(1)>";
    let hostile_domain = "evil.example\"><script>alert(2)</script>";
    let verdict = serde_json::json!({
        "envelope": {"direction": "inbound"},
        "checks": [
            {"name": "antivirus", "status": {"state": "completed"},
             "facts": {"status": "infected", "signatures": [hostile_sig]}},
            {"name": "spam", "status": {"state": "completed"},
             "facts": {"status": "spam", "score": 30.0, "action": "reject",
                       "thresholds": {"quarantine": 8.0, "reject": 15.0}}},
        ],
        "verdict": {"per_recipient": [{
            "index": 0, "address": "bob@example.test",
            "disposition": {"action": "reject", "code": 554, "enhanced": "5.7.1", "text": "no"},
            "decided_by": {"stage": "antivirus", "rule": hostile_sig, "sentence": "found"},
        }]},
    })
    .to_string();
    let mut db = MailDb::open(&c.data.mail_db()).unwrap();
    db.apply(&Batch {
        rejected: vec![Rejection {
            id: "00000000000000000002".into(),
            ts: palisade_store::now_unix(),
            origin: Origin {
                listener: "smtp".into(),
                client_ip: "203.0.113.66".into(),
                client_helo: "h".into(),
                tls: None,
                auth_user: None,
            },
            sender: format!("x@{hostile_domain}"),
            rcpts: vec!["bob@example.test".into()],
            reply: "554 5.7.1 no".into(),
            verdict: Some(verdict),
        }],
        ..Default::default()
    })
    .unwrap();

    let r = c.get("/", Some(&s)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Protection, last 24 hours"));
    for raw in ["<img", "<script>alert(2)", "\"><script"] {
        assert!(!r.body.contains(raw), "{raw} in the page");
    }
    assert!(r.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(r.body.contains("203.0.113.66"));
    assert!(r.body.contains("id=\"virus-signatures\""));
    assert!(r.body.contains("<desc id=\"refused-by-reason-d\">"));
    assert!(!r.body.contains("style="));
    assert_eq!(r.body.matches("<svg class=\"chart bars\"").count(), 6);

    let week = c.get("/?window=7d", Some(&s)).await;
    assert_eq!(week.status, StatusCode::OK);
    assert!(week.body.contains("Protection, last 7 days"));
    assert!(week.body.contains("aria-current=\"true\">Last 7 days"));
    assert_eq!(
        c.get("/?window=1y", Some(&s)).await.status,
        StatusCode::BAD_REQUEST
    );

    let mut acc = c.accounts();
    let id = acc.user_by_name("admin").unwrap().unwrap().id;
    let (_, token) = acc
        .create_token(&mut c.audit(), id, "ci", 90, "test")
        .unwrap();
    let api = |path: &str| {
        Request::builder()
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let p = c.send(api("/api/v1/protection?range=7d")).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let p = p.json();
    assert_eq!(p["rejected"], 1);
    assert_eq!(p["infected"], 1);
    assert_eq!(p["signatures"][0]["name"], hostile_sig);
    assert_eq!(p["spam_domains"][0]["name"], hostile_domain);
    assert_eq!(p["refused_by"][0]["reason"], "antivirus");
    assert_eq!(p["refused_by"][0]["count"], 1);
    assert_eq!(
        c.send(api("/api/v1/protection?range=1y")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn api_tokens_expire_and_the_account_page_says_when() {
    let c = Console::new();
    let s = c.admin();
    let r = c
        .post(
            "/account/tokens",
            &s,
            &[("name", "monitoring"), ("lifetime_days", "30")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("valid until"));
    let token = r
        .body
        .split("pal_")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect::<String>();
    let token = format!("pal_{token}");
    let bad = c
        .post(
            "/account/tokens",
            &s,
            &[("name", "x"), ("lifetime_days", "0")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let status = |token: String| {
        let mut r = req(Method::GET, "/api/v1/status", None, None, "192.0.2.1");
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        r
    };
    assert_eq!(c.send(status(token.clone())).await.status, StatusCode::OK);
    let page = c.get("/account", Some(&s)).await;
    assert!(page.body.contains("<th>Expires</th>"));
    assert!(page.body.contains("<th>Last used</th>"));
    assert!(!page.body.contains("<strong>expired</strong>"));
    assert!(page.body.contains("<option value=\"90\" selected>"));
    // Past its expiry: refused, and listed as expired.
    let db = rusqlite_open(&c.data.config_db());
    db.execute(
        "UPDATE console_api_token SET expires_at = ?1",
        [palisade_store::now_unix() - 1],
    )
    .unwrap();
    let r = c.send(status(token)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let page = c.get("/account", Some(&s)).await;
    assert!(
        page.body.contains("<strong>expired</strong>"),
        "{}",
        page.body
    );
}

fn cert_for(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn cert_upload(csrf: &str, cert: &str, key: &str, confirm: bool) -> (String, String) {
    let boundary = "XBOUNDARYx7";
    let part = |name: &str, v: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.pem\"\r\nContent-Type: application/octet-stream\r\n\r\n{v}\r\n"
        )
    };
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n");
    body += &part("cert", cert);
    body += &part("key", key);
    if confirm {
        body += &format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"confirm\"\r\n\r\nyes\r\n"
        );
    }
    body += &format!("--{boundary}--\r\n");
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn a_console_certificate_for_other_names_needs_confirmation() {
    let c = Console::new();
    let s = c.admin();
    let send = |cert: &str, key: &str, confirm: bool| {
        let (ct, body) = cert_upload(&s.csrf, cert, key, confirm);
        Request::builder()
            .method(Method::POST)
            .uri("/system/certificate")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header(header::COOKIE, format!("{SESSION_COOKIE}={}", s.cookie))
            .header(header::CONTENT_TYPE, ct)
            .extension(ClientAddr("192.0.2.1:4000".parse().unwrap()))
            .body(Body::from(body))
            .unwrap()
    };
    let (cert, key) = cert_for(&["other.example", "www.other.example"]);
    let r = c.send(send(&cert, &key, false)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("does not cover console.test"), "{}", r.body);
    assert!(
        r.body
            .contains("it covers only other.example, www.other.example")
    );
    assert!(r.body.contains("Nothing was installed"));
    // Confirmed: it goes on to the supervisor (not running in this test).
    let r = c.send(send(&cert, &key, true)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("supervisor is not reachable"));
    // A certificate for the console's name needs no confirmation.
    let (cert, key) = cert_for(&["*.test"]);
    let r = c.send(send(&cert, &key, false)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    // Not valid yet: a warning too.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["console.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2099, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let r = c.send(send(&cert.pem(), &key.serialize_pem(), false)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("not valid yet"), "{}", r.body);
}

/// A message held in quarantine as the engine leaves it: the file and its row.
fn hold_one(c: &Console, id: &str, queue_id: &str, content: &str) {
    use palisade_store::mail::{HeldRecipient, NewQuarantine};
    std::fs::create_dir_all(c.data.quarantine()).unwrap();
    std::fs::write(c.data.quarantine().join(id), content).unwrap();
    let now = palisade_store::now_unix();
    let mut db = MailDb::open(&c.data.mail_db()).unwrap();
    db.apply(&Batch {
        accepted: vec![NewMessage {
            id: queue_id.into(),
            received_at: now,
            expires_at: now + 3600,
            sender: "billing@phish.example".into(),
            size: content.len() as u64,
            sha256: vec![0; 32],
            kind: MessageKind::Mail,
            smtputf8: false,
            body: None,
            envid: None,
            ret: None,
            recipients: vec![],
            artifacts: vec![],
            origin: Origin::default(),
            message_id: None,
            subject: Some("Mailbox full".into()),
            from_header: None,
            verdict: None,
            status: Some("quarantined".into()),
        }],
        quarantined: vec![NewQuarantine {
            id: id.into(),
            queue_id: queue_id.into(),
            received_at: now,
            expires_at: now + 30 * 86400,
            sender: "billing@phish.example".into(),
            recipients: vec![HeldRecipient {
                address: "ceo@example.test".into(),
                route: "maildir".into(),
                notify: None,
                orcpt: None,
            }],
            reason: "Suspected phishing".into(),
            size: content.len() as u64,
            sha256: vec![0; 32],
            subject: Some("Mailbox full".into()),
            score: Some(9.5),
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
}

#[tokio::test]
async fn quarantine_shows_held_mail_safely_and_only_operators_act_through_the_engine() {
    let c = Console::new();
    let admin = c.admin();
    let auditor = c.user("arthur", palisade_store::accounts::Role::Auditor);
    let (id, qid) = ("0000000000000000000b", "0000000000000000000c");
    let content = "From: billing@phish.example\r\nSubject: Mailbox full\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/html; charset=utf-8\r\n\r\n\
        <p>Pay <b>now</b></p><script>document.title='PWNED'</script>\
        <img src=\"http://203.0.113.9/x.png\"><a href=\"http://203.0.113.9/login\">here</a>\r\n";
    hold_one(&c, id, qid, content);

    let list = c
        .get("/quarantine?sender=BILLING@phish", Some(&auditor))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(id) && list.body.contains("Suspected phishing"));
    assert!(list.body.contains("kept for 30 day(s)"), "{}", list.body);
    assert!(
        !list.body.contains("value=\"release\""),
        "auditors get no buttons"
    );
    let none = c.get("/quarantine?rcpt=nobody", Some(&auditor)).await;
    assert!(none.body.contains("No quarantined message matches"));
    let far = c.get("/quarantine?page=4294967295", Some(&auditor)).await;
    assert_eq!(far.status, StatusCode::OK);
    let bad = c.get("/quarantine?from=yesterday", Some(&auditor)).await;
    assert!(bad.body.contains("is not a date"), "{}", bad.body);
    // The spam score: shown, and filtered by.
    let scored = c.get("/quarantine?min_score=9", Some(&auditor)).await;
    assert!(
        scored.body.contains(id) && scored.body.contains(">9.5<"),
        "{}",
        scored.body
    );
    let above = c.get("/quarantine?min_score=9.6", Some(&auditor)).await;
    assert!(above.body.contains("No quarantined message matches"));
    let bad = c.get("/quarantine?min_score=lots", Some(&auditor)).await;
    assert!(bad.body.contains("is not a score"), "{}", bad.body);

    // The same through the JSON API: auditors look, operators act (through the engine).
    let mut acc = c.accounts();
    let mut token = |name: &str| {
        let uid = acc.user_by_name(name).unwrap().unwrap().id;
        acc.create_token(&mut c.audit(), uid, "ci", 90, "test")
            .unwrap()
            .1
    };
    let (admin_token, auditor_token) = (token("admin"), token("arthur"));
    let api = |method: Method, path: &str, token: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let listed = c
        .send(api(
            Method::GET,
            "/api/v1/quarantine?min_score=9&sender=phish",
            &auditor_token,
        ))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let listed = listed.json();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["entries"][0]["id"], id);
    assert_eq!(listed["entries"][0]["score"], 9.5);
    let none = c
        .send(api(
            Method::GET,
            "/api/v1/quarantine?min_score=10",
            &auditor_token,
        ))
        .await
        .json();
    assert_eq!(none["total"], 0, "{none}");
    let bad = c
        .send(api(
            Method::GET,
            "/api/v1/quarantine?min_score=x",
            &auditor_token,
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("not a score")
    );
    let one = c
        .send(api(
            Method::GET,
            &format!("/api/v1/quarantine/{id}"),
            &auditor_token,
        ))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["reason"], "Suspected phishing");
    let r = c
        .send(api(
            Method::POST,
            &format!("/api/v1/quarantine/{id}/release"),
            &auditor_token,
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .send(api(
            Method::POST,
            &format!("/api/v1/quarantine/{id}/release"),
            &admin_token,
        ))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let r = c
        .send(api(
            Method::POST,
            &format!("/api/v1/quarantine/{id}/explode"),
            &admin_token,
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    let page = c.get(&format!("/quarantine/{id}"), Some(&auditor)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(page.body.contains("sandbox=\"\""));
    assert!(page.body.contains("srcdoc=\""));
    assert!(!page.body.contains("value=\"release\""));
    // Inside the frame's document (escaped into the attribute): the text, no script, no URL.
    let srcdoc = page.body.split("srcdoc=\"").nth(1).unwrap();
    let srcdoc = &srcdoc[..srcdoc.find('"').unwrap()];
    assert!(srcdoc.contains("Pay &#60;b&#62;now"), "{srcdoc}");
    assert!(!srcdoc.contains("script") && !srcdoc.contains("203.0.113.9"));
    // The link target is listed as text; the raw source is there, escaped.
    assert!(page.body.contains("http://203.0.113.9/login"));
    assert!(page.body.contains("&#60;script&#62;document.title"));
    let page = c.get(&format!("/quarantine/{id}"), Some(&admin)).await;
    assert!(page.body.contains("value=\"release\"") && page.body.contains("value=\"delete\""));

    let dl = c
        .get(&format!("/quarantine/{id}/message.eml"), Some(&auditor))
        .await;
    assert_eq!(dl.status, StatusCode::OK);
    assert_eq!(dl.headers[header::CONTENT_TYPE], "application/octet-stream");
    assert!(
        dl.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(dl.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(dl.body, content);
    let r = c
        .get("/quarantine/..%2F..%2Fconfig.db/message.eml", Some(&admin))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Auditors may not act; operators ask the engine, which is not running here: 503.
    let r = c
        .post(
            &format!("/quarantine/{id}"),
            &auditor,
            &[("action", "release")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (path, fields) in [
        (format!("/quarantine/{id}"), vec![("action", "release")]),
        (format!("/quarantine/{id}"), vec![("action", "delete")]),
        (
            "/quarantine/bulk".to_string(),
            vec![("id", id), ("action", "delete")],
        ),
    ] {
        let r = c.post(&path, &admin, &fields).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(r.body.contains("engine is not reachable"), "{}", r.body);
    }
    assert!(c.data.quarantine().join(id).exists());
    let r = c
        .post("/quarantine/bulk", &admin, &[("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn protection_settings_are_saved_as_revisions_with_problems_by_their_fields() {
    use palisade_store::clamav;
    use palisade_store::config::{
        AttachmentAction, DmarcQuarantineAction, DmarcRejectAction, InfectedAction,
        UnscannableAction,
    };
    let c = Console::new();
    let s = c.admin();

    // Status: no signatures yet, and clamd (not running here) is named with its error.
    let page = c.get("/protection", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("href=\"/protection\""), "in the nav");
    assert!(page.body.contains("No signature databases are installed"));
    assert!(page.body.contains(r#"id="clamd-error""#), "{}", page.body);
    assert!(page.body.contains("palisade av update FILE…"));
    // Signatures installed four days ago are stale.
    let dir = clamav::directory(&c.data);
    clamav::install(
        &dir,
        "old.hdb",
        b"0123456789abcdef0123456789abcdef:68:Old.Test-1\n",
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.join("old.hdb"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(4 * 86400))
        .unwrap();
    let page = c.get("/protection", Some(&s)).await;
    assert!(
        page.body
            .contains("<td>old.hdb</td><td>signatures</td><td>1</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Newest signatures: 4d 0h old."),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(r#"id="av-stale">Stale: older than 3 days."#)
    );
    clamav::install(
        &dir,
        "local.ndb",
        b"Palisade.Test-1:0:*:5041\nPalisade.Test-2:0:*:5042\n",
    )
    .unwrap();
    let page = c.get("/protection", Some(&s)).await;
    assert!(
        page.body
            .contains("<td>local.ndb</td><td>signatures</td><td>2</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Newest signatures:"));
    assert!(!page.body.contains(r#"id="av-stale""#));

    // A bad clamd address: shown by its field with what was typed, nothing stored.
    let av = |clamd: &'static str| {
        vec![
            ("revision", "1"),
            ("enabled", "yes"),
            ("clamd", clamd),
            ("infected", "quarantine"),
            ("unscannable", "deliver"),
            ("max_scan_mib", "10"),
        ]
    };
    let bad = c.post("/protection/antivirus", &s, &av("nonsense")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(
        bad.body.contains(
            r#"id="antivirus-clamd-err">&#39;nonsense&#39; is neither unix:/path nor host:port"#
        ),
        "{}",
        bad.body
    );
    assert!(
        bad.body.contains(r#"value="nonsense""#),
        "the input is kept"
    );
    assert!(
        bad.body.contains(r#"name="enabled" value="yes" checked"#),
        "the ticked box stays ticked"
    );
    assert!(
        !bad.body
            .contains(r#"name="scan_parts" value="yes" checked"#),
        "the unticked box stays unticked"
    );
    assert_eq!(revision(&c).0, 1);

    let ok = c
        .post("/protection/antivirus", &s, &av("127.0.0.1:3310"))
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), Some("/protection#antivirus"));
    let (rev, cfg) = revision(&c);
    assert_eq!(rev, 2);
    let a = &cfg.antivirus;
    assert!(a.enabled && !a.scan_parts);
    assert_eq!(a.clamd, "127.0.0.1:3310");
    assert_eq!(a.infected, InfectedAction::Quarantine);
    assert_eq!(a.unscannable, UnscannableAction::Deliver);
    assert_eq!(a.max_scan_bytes, 10 * 1024 * 1024);
    let entry = c
        .audit()
        .list(&AuditFilter {
            action_prefix: Some("config.commit".into()),
            ..Default::default()
        })
        .unwrap()
        .remove(0);
    assert_eq!(entry.actor, "admin");
    assert!(
        entry.detail.contains("antivirus settings changed"),
        "{}",
        entry.detail
    );
    let after = c.get("/protection", Some(&s)).await;
    assert!(after.body.contains("Saved as configuration revision 2"));
    assert!(after.body.contains("<code>127.0.0.1:3310</code>"));

    // Authentication: a bad override domain is reported at the list, nothing stored.
    let auth = |overrides: &'static str| {
        vec![
            ("revision", "2"),
            ("enabled", "yes"),
            ("dmarc_reject", "quarantine"),
            ("dmarc_quarantine", "monitor"),
            ("dmarc_overrides", overrides),
        ]
    };
    let bad = c
        .post(
            "/protection/authentication",
            &s,
            &auth("lists.example\nnot a domain"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(
        bad.body.contains(
            r#"id="authentication-dmarc_overrides-err">&#39;not a domain&#39; is not a valid domain name"#
        ),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("lists.example\nnot a domain"));
    assert_eq!(revision(&c).0, 2);
    let ok = c
        .post(
            "/protection/authentication",
            &s,
            &auth("Lists.Example.\nforwarder.test"),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let (rev, cfg) = revision(&c);
    assert_eq!(rev, 3);
    let a = &cfg.authentication;
    assert_eq!(a.dmarc_reject, DmarcRejectAction::Quarantine);
    assert_eq!(a.dmarc_quarantine, DmarcQuarantineAction::Monitor);
    assert_eq!(a.dmarc_overrides, ["lists.example", "forwarder.test"]);

    // Attachments: a value that is not offered is a problem; then a valid save.
    let mut fields = vec![("revision", "3"), ("enabled", "yes")];
    fields.extend([
        ("executable", "strip"),
        ("script", "quarantine"),
        ("macro_document", "allow"),
        ("disk_image", "block"),
        ("encrypted_archive", "explode"),
        ("double_extension", "block"),
        ("script_extensions", "js, vbs ps1\nhta"),
    ]);
    let bad = c.post("/protection/attachments", &s, &fields).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains(
            r#"id="attachments-encrypted_archive-err">&#39;explode&#39; is not one of the choices"#
        ),
        "{}",
        bad.body
    );
    fields[6].1 = "strip";
    let ok = c.post("/protection/attachments", &s, &fields).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let (rev, cfg) = revision(&c);
    assert_eq!(rev, 4);
    let a = &cfg.attachments;
    assert_eq!(a.executable, AttachmentAction::Strip);
    assert_eq!(a.script, AttachmentAction::Quarantine);
    assert_eq!(a.macro_document, AttachmentAction::Allow);
    assert_eq!(a.encrypted_archive, AttachmentAction::Strip);
    assert_eq!(a.script_extensions, ["js", "vbs", "ps1", "hta"]);
    // Sent back unchanged: nothing changes, no revision.
    let same = c
        .post(
            "/protection/attachments",
            &s,
            &[
                ("revision", "4"),
                ("enabled", "yes"),
                ("executable", "strip"),
                ("script", "quarantine"),
                ("macro_document", "allow"),
                ("disk_image", "block"),
                ("encrypted_archive", "strip"),
                ("double_extension", "block"),
                ("script_extensions", "js vbs ps1 hta"),
            ],
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
    assert_eq!(revision(&c).0, 4);

    // An auditor reads the page without being able to save; an operator does not see it.
    let auditor = c.user("arthur", palisade_store::accounts::Role::Auditor);
    let page = c.get("/protection", Some(&auditor)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("can read these settings but not change them")
    );
    assert!(!page.body.contains("Save antivirus settings"));
    let refused = c
        .post("/protection/antivirus", &auditor, &av("127.0.0.1:3311"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(revision(&c).0, 4);
    let op = c.user("olivia", palisade_store::accounts::Role::Operator);
    assert_eq!(
        c.get("/protection", Some(&op)).await.status,
        StatusCode::FORBIDDEN
    );
}

/// Signature files uploaded on the Protection page: checked as the CLI checks them (a bad
/// file refuses the whole upload, nothing installed), installed into `DIR/clamav`, audited;
/// larger than the usual 1 MiB body limit; an auditor may not.
#[tokio::test]
async fn signature_files_are_uploaded_checked_installed_and_audited() {
    use palisade_store::clamav;
    let c = Console::new();
    let s = c.admin();
    let upload = |session: &common::Session, files: &[(&str, Vec<u8>)]| {
        let boundary = "XBOUNDARYsig";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n",
            session.csrf
        )
        .into_bytes();
        for (name, content) in files {
            body.extend_from_slice(format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).as_bytes());
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut r = Request::builder()
            .method(Method::POST)
            .uri("/protection/antivirus/signatures")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header(
                header::COOKIE,
                format!("{SESSION_COOKIE}={}", session.cookie),
            )
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        r.extensions_mut()
            .insert(ClientAddr("192.0.2.1:1".parse().unwrap()));
        r
    };
    let dir = clamav::directory(&c.data);
    let good = b"Palisade.Test.EICAR:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n".to_vec();
    // A good file and one that is not a signature database: nothing is installed.
    let page = c
        .send(upload(
            &s,
            &[
                ("local.ndb", good.clone()),
                ("notes.txt", b"hello".to_vec()),
            ],
        ))
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"id="upload-error""#), "{}", page.body);
    assert!(clamav::installed(&dir).is_empty());
    // A bundle that is not one.
    let page = c
        .send(upload(
            &s,
            &[("daily.cvd", b"ClamAV-VDB:nonsense".to_vec())],
        ))
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.body
            .contains("daily.cvd is not a ClamAV signature bundle"),
        "{}",
        page.body
    );

    // Over the console's usual 1 MiB: a 2 MiB hash database (padded with comment-free lines).
    let mut big = good.clone();
    let line = b"0123456789abcdef0123456789abcdef:68:Pad.Test-1\n";
    while big.len() < 2 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    let hdb: Vec<u8> = big
        .split(|&b| b == b'\n')
        .skip(1)
        .flat_map(|l| {
            let mut v = l.to_vec();
            if !v.is_empty() {
                v.push(b'\n');
            }
            v
        })
        .collect();
    let r = c
        .send(upload(&s, &[("local.ndb", good.clone()), ("pad.hdb", hdb)]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let names: Vec<String> = clamav::installed(&dir)
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["local.ndb", "pad.hdb"]);
    assert_eq!(std::fs::read(dir.join("local.ndb")).unwrap(), good);
    let page = c.get("/protection", Some(&s)).await;
    assert!(
        page.body
            .contains("Installed local.ndb (1 signature), pad.hdb"),
        "{}",
        page.body
    );
    let audit = c.audit().list(&Default::default()).unwrap();
    let uploads: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "antivirus.signatures")
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(uploads.len(), 2, "{uploads:?}");

    // An auditor reads the page but may not upload (and sees no upload form).
    let auditor = c.user("ann", palisade_store::accounts::Role::Auditor);
    let page = c.get("/protection", Some(&auditor)).await;
    assert!(!page.body.contains("signature-upload"));
    let r = c.send(upload(&auditor, &[("other.ndb", good)])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!dir.join("other.ndb").exists());
}
