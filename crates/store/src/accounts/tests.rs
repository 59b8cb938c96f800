//! Accounts: logins, throttling, sessions, TOTP, tokens.
use super::*;

fn stores() -> (tempfile::TempDir, Accounts, AuditLog) {
    let d = tempfile::tempdir().unwrap();
    let a = Accounts::open(&d.path().join("config.db"))
        .unwrap()
        .with_totp_key(TotpKey::generate());
    let l = AuditLog::open(&d.path().join("audit.db")).unwrap();
    (d, a, l)
}

fn raw_totp(acc: &Accounts, id: i64) -> Vec<u8> {
    acc.conn
        .query_row(
            "SELECT totp_secret FROM console_user WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn totp_secrets_are_sealed_and_legacy_ones_resealed() {
    let (_d, mut acc, mut audit) = stores();
    let (bob, pw) = acc
        .create_user(&mut audit, "bob", Role::Operator, "admin", "x")
        .unwrap();
    let newpw = "correct horse battery";
    acc.change_password(&mut audit, bob.id, &pw, newpw, "x")
        .unwrap();
    let (b32, _) = acc.totp_begin(bob.id, "Palisade").unwrap();
    let secret = totp::base32_decode(&b32).unwrap();
    let pending: Vec<u8> = acc
        .conn
        .query_row(
            "SELECT totp_pending FROM console_user WHERE id = ?1",
            [bob.id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!pending.windows(secret.len()).any(|w| w == secret));
    let code = totp::code_at(&secret, now_unix() / 30 - 1);
    acc.totp_confirm(&mut audit, bob.id, &code, "x").unwrap();
    let stored = raw_totp(&acc, bob.id);
    assert_ne!(stored, secret);
    assert!(stored.len() > secret.len());
    assert!(!stored.windows(secret.len()).any(|w| w == secret));
    let t = Throttle::default();
    let code = totp::code_at(&secret, now_unix() / 30);
    let r = acc
        .login(&mut audit, "bob", newpw, Some(&code), "192.0.2.2", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }));

    // Without the key (the engine, the CLI) the sealed secret cannot be used.
    let path = acc.conn.path().unwrap().to_string();
    let mut keyless = Accounts::open(Path::new(&path)).unwrap();
    let code = totp::code_at(&secret, now_unix() / 30 + 1);
    let r = keyless
        .login(&mut audit, "bob", newpw, Some(&code), "192.0.2.2", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Refused));
    assert!(matches!(
        keyless.totp_begin(bob.id, "P"),
        Err(AccountError::NoTotpKey)
    ));

    // A clear secret from before sealing still works, and is sealed once it is used.
    acc.conn
        .execute(
            "UPDATE console_user SET totp_secret = ?2, totp_last_step = 0 WHERE id = ?1",
            params![bob.id, secret],
        )
        .unwrap();
    let code = totp::code_at(&secret, now_unix() / 30 + 1);
    let r = acc
        .login(&mut audit, "bob", newpw, Some(&code), "192.0.2.2", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }));
    let stored = raw_totp(&acc, bob.id);
    assert_ne!(stored, secret);
    assert!(!stored.windows(secret.len()).any(|w| w == secret));
    assert!(
        acc.totp_key
            .as_ref()
            .unwrap()
            .open(bob.id, &stored)
            .is_some()
    );

    // And the console seals the ones nobody used.
    acc.conn
        .execute(
            "UPDATE console_user SET totp_secret = ?2 WHERE id = ?1",
            params![bob.id, secret],
        )
        .unwrap();
    assert_eq!(acc.seal_legacy_totp().unwrap(), 1);
    assert_ne!(raw_totp(&acc, bob.id), secret);
    assert_eq!(acc.seal_legacy_totp().unwrap(), 0);
}

#[test]
fn tokens_expire() {
    let (_d, mut acc, mut audit) = stores();
    let (u, pw) = acc
        .create_user(&mut audit, "ci", Role::Auditor, "admin", "x")
        .unwrap();
    acc.change_password(&mut audit, u.id, &pw, "correct horse battery", "x")
        .unwrap();
    assert!(matches!(
        acc.create_token(&mut audit, u.id, "t", 0, "x"),
        Err(AccountError::BadTokenLifetime(0))
    ));
    let (t, secret) = acc.create_token(&mut audit, u.id, "t", 30, "x").unwrap();
    assert_eq!(t.expires_at - t.created_at, 30 * 86400);
    assert!(acc.token_user(&secret).unwrap().is_some());
    let listed = acc.tokens(u.id).unwrap();
    assert!(listed[0].last_used_at.is_some());
    assert!(!listed[0].expired(now_unix()));
    acc.conn
        .execute(
            "UPDATE console_api_token SET expires_at = ?2 WHERE id = ?1",
            params![t.id, now_unix() - 1],
        )
        .unwrap();
    assert!(acc.token_user(&secret).unwrap().is_none());
    assert!(acc.tokens(u.id).unwrap()[0].expired(now_unix()));
}

#[test]
fn tokens_from_before_expiry_get_ninety_days() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.db");
    {
        let mut conn = crate::open_db(&path).unwrap();
        migrate::migrate(&mut conn, &config_store::MIGRATIONS[..2]).unwrap();
        conn.execute(
            "INSERT INTO console_user (name, role, password_hash, created_at,
             password_changed_at) VALUES ('old', 'auditor', 'x', 1, 1)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO console_api_token (user_id, name, token_hash, created_at)
             VALUES (1, 'old', x'00', 1)",
            [],
        )
        .unwrap();
    }
    let acc = Accounts::open(&path).unwrap();
    let t = &acc.tokens(1).unwrap()[0];
    assert!((t.expires_at - (now_unix() + 90 * 86400)).abs() < 60);
}

#[test]
fn submission_accounts_send_mail_and_console_accounts_do_not() {
    let (_d, mut a, mut log) = stores();
    let t = Throttle::default();
    let (u, pw) = a
        .create_user(&mut log, "scanner", Role::Submission, "admin", "local")
        .unwrap();
    assert!(
        !u.must_change_password,
        "an SMTP client cannot change its password"
    );
    let (_, admin_pw) = a
        .create_user(&mut log, "alice", Role::Administrator, "admin", "local")
        .unwrap();
    assert!(matches!(
        a.login(&mut log, "scanner", &pw, None, "10.0.0.1", &t)
            .unwrap(),
        LoginResult::Refused
    ));
    assert!(matches!(
        a.authenticate_submission(&mut log, "scanner", &pw, "10.0.0.1", &t).unwrap(),
        Credentials::Valid(u) if u.name == "scanner"
    ));
    assert!(matches!(
        a.authenticate_submission(&mut log, "alice", &admin_pw, "10.0.0.1", &t)
            .unwrap(),
        Credentials::Refused
    ));
    let actions: Vec<String> = log
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"login.failed".to_string()));
    assert!(actions.contains(&"smtp_auth.success".to_string()));
    assert!(actions.contains(&"smtp_auth.failed".to_string()));
}

#[test]
fn rfc6238_vectors() {
    // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    let secret = b"12345678901234567890";
    for (t, code) in [
        (59, "287082"),
        (1111111109, "081804"),
        (1111111111, "050471"),
        (1234567890, "005924"),
        (2000000000, "279037"),
        (20000000000, "353130"),
    ] {
        assert_eq!(totp::code_at(secret, t / 30), code, "t={t}");
    }
    assert_eq!(totp::verify(secret, "287082", 59, 0), Some(1));
    // Replay of the same step is refused.
    assert_eq!(totp::verify(secret, "287082", 59, 1), None);
    assert_eq!(totp::verify(secret, "28708", 59, 0), None);
    let b = totp::base32(secret);
    assert_eq!(b, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_eq!(totp::base32_decode(&b).unwrap(), secret);
    assert!(totp::uri("Palisade gw", "a b", &b).starts_with(
        "otpauth://totp/Palisade%20gw:a%20b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Palisade%20gw"
    ));
}

#[test]
fn first_admin_login_change_and_sessions() {
    let (_d, mut acc, mut audit) = stores();
    let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
    assert!(acc.ensure_initial_admin(&mut audit).unwrap().is_none());
    let t = Throttle::default();
    let LoginResult::Success { user, session } = acc
        .login(&mut audit, "admin", &pw, None, "192.0.2.1", &t)
        .unwrap()
    else {
        panic!("login failed")
    };
    assert!(user.must_change_password);
    let p = SessionPolicy::default();
    assert!(acc.session(&session.id, &p).unwrap().is_some());
    assert!(matches!(
        acc.change_password(
            &mut audit,
            user.id,
            "wrong",
            "a much better passphrase",
            "x"
        ),
        Err(AccountError::WrongPassword)
    ));
    assert!(matches!(
        acc.change_password(&mut audit, user.id, &pw, "short", "x"),
        Err(AccountError::WeakPassword(_))
    ));
    let u = acc
        .change_password(&mut audit, user.id, &pw, "a much better passphrase", "x")
        .unwrap();
    assert!(!u.must_change_password);
    // The password change ended the session.
    assert!(acc.session(&session.id, &p).unwrap().is_none());
    let actions: Vec<_> = audit
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "user.password_changed",
            "user.password_change_failed",
            "login.success",
            "user.create"
        ]
    );
}

fn quick_throttle() -> Throttle {
    Throttle {
        window_secs: 600,
        free_per_account_source: 3,
        free_per_source: 6,
        free_per_account: 5,
        first_delay_secs: 2,
        max_delay_secs: 4,
        ..Throttle::default()
    }
}

fn actions(audit: &AuditLog, prefix: &str) -> Vec<String> {
    audit
        .list(&crate::audit::AuditFilter {
            action_prefix: Some(prefix.into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[test]
fn a_stranger_guessing_is_slowed_down_but_never_locks_the_owner_out() {
    let (_d, mut acc, mut audit) = stores();
    let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
    let t = quick_throttle();
    let (mut refused, mut throttled) = (0, 0);
    for i in 0..20 {
        match acc
            .login(
                &mut audit,
                "admin",
                &format!("guess {i}"),
                None,
                "198.51.100.7",
                &t,
            )
            .unwrap()
        {
            LoginResult::Refused => refused += 1,
            LoginResult::Throttled { retry_after_secs } => {
                assert!((1..=2).contains(&retry_after_secs), "{retry_after_secs}");
                throttled += 1;
            }
            r => panic!("{r:?}"),
        }
    }
    // Three free failures, then the fourth must wait 2 s: the rest were not checked.
    assert_eq!((refused, throttled), (3, 17));
    // The owner, from elsewhere, is not affected.
    let r = acc
        .login(&mut audit, "admin", &pw, None, "192.0.2.99", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
    // Each real failure is audited; the one that started a wait is audited as a throttle;
    // refused attempts are not audited one by one.
    assert_eq!(actions(&audit, "login.failed").len(), 3);
    assert_eq!(actions(&audit, "login.throttled").len(), 1);
    // After the wait the stranger may try again (and waits longer after that failure).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = acc
        .login(&mut audit, "admin", "again", None, "198.51.100.7", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Refused), "{r:?}");
    let r = acc
        .login(&mut audit, "admin", &pw, None, "198.51.100.7", &t)
        .unwrap();
    assert!(
        matches!(
            r,
            LoginResult::Throttled {
                retry_after_secs: 3..=4
            }
        ),
        "{r:?}"
    );
}

#[test]
fn a_distributed_attack_holds_back_unfamiliar_sources_only() {
    let (_d, mut acc, mut audit) = stores();
    let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
    let t = Throttle {
        trusted_networks: vec!["10.20.0.0/16".parse().unwrap()],
        first_delay_secs: 60,
        max_delay_secs: 120,
        ..quick_throttle()
    };
    // The owner signs in once from their desk: that source becomes familiar.
    let r = acc
        .login(&mut audit, "admin", &pw, None, "192.0.2.10", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }));
    // Ten addresses, one guess each: the account scope (5 free) holds back strangers.
    for i in 0..10 {
        acc.login(
            &mut audit,
            "admin",
            "guess",
            None,
            &format!("203.0.113.{i}"),
            &t,
        )
        .unwrap();
    }
    let r = acc
        .login(&mut audit, "admin", &pw, None, "203.0.113.200", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Throttled { .. }), "{r:?}");
    // The familiar source and the management network get in at once.
    let r = acc
        .login(&mut audit, "admin", &pw, None, "192.0.2.10", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
    let r = acc
        .login(&mut audit, "admin", &pw, None, "10.20.3.4", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
    // The owner's success did not wipe the attackers' count.
    let r = acc
        .login(&mut audit, "admin", &pw, None, "203.0.113.201", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Throttled { .. }), "{r:?}");
}

#[test]
fn one_source_guessing_names_is_throttled_as_a_source() {
    let (_d, mut acc, mut audit) = stores();
    let pw = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
    let t = quick_throttle();
    // One /64 counts as one source.
    for i in 0..6 {
        let r = acc
            .login(
                &mut audit,
                &format!("user{i}"),
                "x",
                None,
                &format!("2001:db8::{i}"),
                &t,
            )
            .unwrap();
        assert!(matches!(r, LoginResult::Refused), "{r:?}");
    }
    let r = acc
        .login(&mut audit, "admin", &pw, None, "2001:db8::ffff", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Throttled { .. }), "{r:?}");
    let r = acc
        .login(&mut audit, "admin", &pw, None, "2001:db9::1", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }), "{r:?}");
}

#[test]
fn totp_login_users_tokens() {
    let (_d, mut acc, mut audit) = stores();
    acc.ensure_initial_admin(&mut audit).unwrap();
    let (bob, pw) = acc
        .create_user(&mut audit, "bob", Role::Operator, "admin", "x")
        .unwrap();
    assert!(matches!(
        acc.create_user(&mut audit, "BOB", Role::Auditor, "admin", "x"),
        Err(AccountError::Exists(_))
    ));
    assert!(matches!(
        acc.create_user(&mut audit, "bad name", Role::Auditor, "admin", "x"),
        Err(AccountError::BadName(_))
    ));
    let (b32, _) = acc.totp_begin(bob.id, "Palisade").unwrap();
    let secret = totp::base32_decode(&b32).unwrap();
    assert!(matches!(
        acc.totp_confirm(&mut audit, bob.id, "000000x", "x"),
        Err(AccountError::BadCode)
    ));
    let code = totp::code_at(&secret, now_unix() / 30 - 1);
    acc.totp_confirm(&mut audit, bob.id, &code, "x").unwrap();
    assert!(acc.user(bob.id).unwrap().totp_enabled);
    let t = Throttle::default();
    let r = acc
        .login(&mut audit, "bob", &pw, None, "192.0.2.2", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Refused));
    let code = totp::code_at(&secret, now_unix() / 30);
    let r = acc
        .login(&mut audit, "bob", &pw, Some(&code), "192.0.2.2", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Success { .. }));
    // The same code cannot be used twice.
    let r = acc
        .login(&mut audit, "bob", &pw, Some(&code), "192.0.2.2", &t)
        .unwrap();
    assert!(matches!(r, LoginResult::Refused));

    let admin = acc.user_by_name("admin").unwrap().unwrap();
    assert!(matches!(
        acc.delete_user(&mut audit, admin.id, "admin", "x"),
        Err(AccountError::LastAdministrator)
    ));
    assert!(matches!(
        acc.set_role(&mut audit, admin.id, Role::Auditor, "admin", "x"),
        Err(AccountError::LastAdministrator)
    ));

    // Tokens work once the password is no longer a one-time one.
    let (tok, secret_token) = acc
        .create_token(&mut audit, admin.id, "ci", 90, "x")
        .unwrap();
    assert!(acc.token_user(&secret_token).unwrap().is_none());
    let newpw = acc
        .reset_password(&mut audit, "admin", "cli:root", "local")
        .unwrap();
    acc.change_password(&mut audit, admin.id, &newpw, "correct horse battery", "x")
        .unwrap();
    assert_eq!(
        acc.token_user(&secret_token).unwrap().unwrap().name,
        "admin"
    );
    assert!(acc.token_user("pal_0000").unwrap().is_none());
    acc.revoke_token(&mut audit, admin.id, tok.id, "x").unwrap();
    assert!(acc.token_user(&secret_token).unwrap().is_none());
    acc.delete_user(&mut audit, bob.id, "admin", "x").unwrap();
    assert_eq!(acc.users().unwrap().len(), 1);
}

#[test]
fn session_timeouts() {
    let (_d, mut acc, mut audit) = stores();
    acc.ensure_initial_admin(&mut audit).unwrap();
    let admin = acc.user_by_name("admin").unwrap().unwrap();
    let s = acc.open_session(admin.id, "x").unwrap();
    let p = SessionPolicy {
        idle_secs: 1,
        absolute_secs: 100,
    };
    acc.set_flash(&s.id, "saved").unwrap();
    assert_eq!(acc.take_flash(&s.id).unwrap().as_deref(), Some("saved"));
    assert_eq!(acc.take_flash(&s.id).unwrap(), None);
    assert!(acc.session(&s.id, &p).unwrap().is_some());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(acc.session(&s.id, &p).unwrap().is_none());
    let s = acc.open_session(admin.id, "x").unwrap();
    acc.close_session(&s.id).unwrap();
    assert!(acc.session(&s.id, &p).unwrap().is_none());
    assert_eq!(one_time_password().len(), 23);
}
