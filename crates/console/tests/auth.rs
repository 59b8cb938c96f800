//! Logins, sessions, cookies, CSRF, headers, throttling.

mod common;

use axum::http::{Method, StatusCode, header};
use common::*;
use palisade_console::{LOGIN_COOKIE, SESSION_COOKIE};
use palisade_store::audit::AuditFilter;

fn assert_security_headers(r: &Reply, what: &str) {
    let h = |n: &str| {
        r.headers
            .get(n)
            .unwrap_or_else(|| panic!("{what}: no {n} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let csp = h("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "style-src 'self'",
    ] {
        assert!(csp.contains(part), "{what}: CSP lacks {part}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(
        h("strict-transport-security").starts_with("max-age="),
        "{what}"
    );
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let c = Console::new();
    let admin = c.admin();
    let cases = [
        ("login page", c.get("/login", None).await),
        ("redirect to login", c.get("/", None).await),
        ("stylesheet", c.get("/static/console.css", None).await),
        ("not found", c.get("/no/such/page", None).await),
        ("dashboard", c.get("/", Some(&admin)).await),
        ("api without token", c.get("/api/v1/status", None).await),
        (
            "refused post",
            c.send(req(
                Method::POST,
                "/logout",
                Some(&admin),
                Some("x=1"),
                "192.0.2.1",
            ))
            .await,
        ),
    ];
    for (what, r) in &cases {
        assert_security_headers(r, what);
    }
    assert_eq!(cases[1].1.status, StatusCode::SEE_OTHER);
    assert_eq!(cases[3].1.status, StatusCode::NOT_FOUND);
    assert_eq!(cases[4].1.status, StatusCode::OK);
    assert_eq!(cases[5].1.status, StatusCode::UNAUTHORIZED);
    assert_eq!(cases[6].1.status, StatusCode::FORBIDDEN);
    // Pages are never cached; the stylesheet may be.
    assert_eq!(cases[4].1.headers["cache-control"], "no-store");
    // No page carries inline script or style (the CSP would block it anyway).
    for (what, r) in &cases {
        assert!(!r.body.contains("<script"), "{what}");
        assert!(!r.body.contains("style="), "{what}");
    }
}

/// Every header, with its exact value, on a page, an error page, a static file, and the host
/// check's refusal (set around the whole router, so nothing escapes them).
#[tokio::test]
async fn every_security_header_with_its_exact_value() {
    let c = Console::new();
    let admin = c.admin();
    let expected = [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        (
            "content-security-policy",
            "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; \
             font-src 'none'; connect-src 'none'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    let mut wrong_host = req(Method::GET, "/", Some(&admin), None, "192.0.2.1");
    wrong_host
        .headers_mut()
        .insert(header::HOST, "evil.example".parse().unwrap());
    let cases = [
        ("page", c.get("/", Some(&admin)).await, "no-store"),
        ("error page", c.get("/no/such/page", None).await, "no-store"),
        (
            "error page (signed in)",
            c.get("/queue/no-such-id", Some(&admin)).await,
            "no-store",
        ),
        (
            "static file",
            c.get("/static/console.css", None).await,
            "public, max-age=3600",
        ),
        (
            "static file",
            c.get("/static/favicon.svg", None).await,
            "public, max-age=3600",
        ),
        ("favicon.ico", c.get("/favicon.ico", None).await, "no-store"),
        ("wrong host", c.send(wrong_host).await, "no-store"),
    ];
    assert_eq!(cases[0].1.status, StatusCode::OK);
    assert_eq!(cases[1].1.status, StatusCode::NOT_FOUND);
    assert!(cases[2].1.status.is_client_error(), "{}", cases[2].1.status);
    assert_eq!(cases[3].1.status, StatusCode::OK);
    assert_eq!(cases[6].1.status, StatusCode::MISDIRECTED_REQUEST);
    for (what, r, cache) in &cases {
        for (name, value) in expected.iter().chain([&("cache-control", *cache)]) {
            let got: Vec<_> = r.headers.get_all(*name).iter().collect();
            assert_eq!(got.len(), 1, "{what}: {name} {got:?}");
            assert_eq!(got[0], value, "{what}: {name}");
        }
    }
}

#[tokio::test]
async fn first_login_forces_a_password_change_and_cookies_are_host_only() {
    let c = Console::new();
    let r = c.login("admin", &c.admin_otp, "192.0.2.10").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), Some("/password"));
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .unwrap();
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    assert!(SESSION_COOKIE.starts_with("__Host-"));
    // The login token cookie is cleared.
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{LOGIN_COOKIE}=;")) && c.contains("Max-Age=0"))
    );
    let id = r.cookie(SESSION_COOKIE).unwrap();
    assert_eq!(id.len(), 64, "256 random bits in hex");

    // Until the password is changed, every page leads to the change form.
    let s = Session {
        cookie: id.clone(),
        csrf: String::new(),
    };
    let r = c.get("/", Some(&s)).await;
    assert_eq!(r.location(), Some("/password"));
    let r = c.get("/queue", Some(&s)).await;
    assert_eq!(r.location(), Some("/password"));
    let page = c.get("/password", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let s = Session { cookie: id, csrf };
    let weak = c
        .post(
            "/password",
            &s,
            &[
                ("current", &c.admin_otp),
                ("new", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.body.contains("at least 12 characters"),
        "{}",
        weak.body
    );
    let r = c
        .post(
            "/password",
            &s,
            &[
                ("current", &c.admin_otp),
                ("new", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), Some("/"));
    // The password change ended the old session and issued a new id.
    let new_id = r.cookie(SESSION_COOKIE).unwrap();
    assert_ne!(new_id, s.cookie);
    assert_eq!(c.get("/", Some(&s)).await.location(), Some("/login"));
    let fresh = Session {
        cookie: new_id,
        csrf: String::new(),
    };
    let dash = c.get("/", Some(&fresh)).await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.body.contains("Your password was changed"));
}

#[tokio::test]
async fn login_issues_a_new_session_id_every_time() {
    let c = Console::new();
    c.admin();
    let a = c.login("admin", PASSWORD, "192.0.2.1").await;
    let b = c.login("admin", PASSWORD, "192.0.2.1").await;
    let (a, b) = (
        a.cookie(SESSION_COOKIE).unwrap(),
        b.cookie(SESSION_COOKIE).unwrap(),
    );
    assert_ne!(a, b);
    let wrong = c.login("admin", "not the password", "192.0.2.1").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie(SESSION_COOKIE).is_none());
    assert!(wrong.body.contains("Wrong user name, password"));
    let unknown = c.login("nobody", "x", "192.0.2.1").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body.replace("value=\"admin\"", ""),
        unknown.body.replace("value=\"nobody\"", "").replace(
            &unknown.cookie(LOGIN_COOKIE).unwrap(),
            &wrong.cookie(LOGIN_COOKIE).unwrap()
        ),
        "a wrong password and an unknown user look the same"
    );
}

#[tokio::test]
async fn missing_or_foreign_csrf_is_refused() {
    let c = Console::new();
    let s = c.admin();
    let path = "/mailflow/network";
    let body_ok = form(&[
        ("csrf", &s.csrf),
        ("revision", "1"),
        ("trusted_networks", "127.0.0.0/8\n10.0.0.0/8"),
    ]);
    let body_none = form(&[("revision", "1"), ("trusted_networks", "10.0.0.0/8")]);
    let other = c.user("other", palisade_store::accounts::Role::Administrator);
    let body_foreign = form(&[
        ("csrf", &other.csrf),
        ("revision", "1"),
        ("trusted_networks", "10.0.0.0/8"),
    ]);

    let r = c
        .send(req(
            Method::POST,
            path,
            Some(&s),
            Some(&body_none),
            "192.0.2.1",
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token");
    let r = c
        .send(req(
            Method::POST,
            path,
            Some(&s),
            Some(&body_foreign),
            "192.0.2.1",
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "another session's token");

    let mut foreign_origin = req(Method::POST, path, Some(&s), Some(&body_ok), "192.0.2.1");
    foreign_origin
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(c.send(foreign_origin).await.status, StatusCode::FORBIDDEN);

    let mut no_origin = req(Method::POST, path, Some(&s), Some(&body_ok), "192.0.2.1");
    no_origin.headers_mut().remove(header::ORIGIN);
    assert_eq!(
        c.send(no_origin).await.status,
        StatusCode::FORBIDDEN,
        "neither Origin nor Referer"
    );

    let mut referer = req(Method::POST, path, Some(&s), Some(&body_ok), "192.0.2.1");
    referer.headers_mut().remove(header::ORIGIN);
    referer.headers_mut().insert(
        header::REFERER,
        format!("{ORIGIN}/mailflow").parse().unwrap(),
    );
    let r = c.send(referer).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "same-origin Referer: {}",
        r.body
    );

    // Nothing the refused requests carried was applied: one new revision only.
    let history = palisade_store::ConfigStore::open(&c.data.config_db())
        .unwrap()
        .history(10)
        .unwrap();
    assert_eq!(history.len(), 2);

    // The login form has its own token (a cookie and a field that must match).
    let page = c.get("/login", None).await;
    let token = page.cookie(LOGIN_COOKIE).unwrap();
    let body = form(&[("user", "admin"), ("password", PASSWORD), ("csrf", &token)]);
    let r = c
        .send(req(Method::POST, "/login", None, Some(&body), "192.0.2.1"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "token without its cookie");
    let mut r = req(Method::POST, "/login", None, Some(&body), "192.0.2.1");
    r.headers_mut().insert(
        header::COOKIE,
        format!("{LOGIN_COOKIE}={token}").parse().unwrap(),
    );
    r.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(
        c.send(r).await.status,
        StatusCode::FORBIDDEN,
        "foreign origin"
    );
}

#[tokio::test]
async fn a_cookie_reused_after_logout_leads_to_the_login_page() {
    let c = Console::new();
    c.admin();
    let r = c.login("admin", PASSWORD, "192.0.2.1").await;
    let cookie = r.cookie(SESSION_COOKIE).unwrap();
    let page = c
        .get(
            "/",
            Some(&Session {
                cookie: cookie.clone(),
                csrf: String::new(),
            }),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let s = Session { cookie, csrf };
    let out = c.post("/logout", &s, &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), Some("/login"));
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION_COOKIE}=;")) && c.contains("Max-Age=0"))
    );
    for path in ["/", "/queue", "/audit", "/system/backup.toml"] {
        let r = c.get(path, Some(&s)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location(), Some("/login"), "{path}");
    }
    let r = c.post("/mailflow/network", &s, &[("revision", "1")]).await;
    assert_eq!(r.location(), Some("/login"));
    let actions: Vec<String> = c
        .audit()
        .list(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"logout".to_string()), "{actions:?}");
}

#[tokio::test]
async fn fifty_wrong_passwords_are_throttled_and_audited_but_never_lock_the_owner_out() {
    let c = Console::with(settings(600));
    c.admin();
    let attacker = "198.51.100.1";
    let (mut refused, mut throttled) = (0, 0);
    for i in 0..50 {
        let r = c.login("admin", &format!("guess {i}"), attacker).await;
        match r.status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                let wait: i64 = r.headers[header::RETRY_AFTER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&wait), "{wait}");
                assert!(r.body.contains("Too many failed attempts"));
            }
            s => panic!("attempt {i}: {s}"),
        }
        assert!(r.cookie(SESSION_COOKIE).is_none());
    }
    // Five free failures, then a wait of 2 s: the other 45 were not even checked.
    assert_eq!((refused, throttled), (5, 45));
    // The attacker's own correct guess would not help either...
    let r = c.login("admin", PASSWORD, attacker).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // ...but the owner, from another address, gets in at once.
    let ok = c.login("admin", PASSWORD, "192.0.2.99").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert!(ok.cookie(SESSION_COOKIE).is_some());

    // Every real failure is audited, and so is the throttle it started; the refused attempts
    // are not (an attacker must not be able to grow the audit log at will).
    let entries = c
        .audit()
        .list(&AuditFilter {
            action_prefix: Some("login.".into()),
            ..Default::default()
        })
        .unwrap();
    let count = |a: &str| entries.iter().filter(|e| e.action == a).count();
    assert_eq!(count("login.failed"), 5);
    assert_eq!(count("login.throttled"), 1);
    assert!(count("login.success") >= 1);
    let throttle = entries
        .iter()
        .find(|e| e.action == "login.throttled")
        .unwrap();
    assert_eq!(throttle.source, attacker);
    let detail: serde_json::Value = serde_json::from_str(&throttle.detail).unwrap();
    assert_eq!(detail["scope"], "account+source");
    assert_eq!(detail["delay_secs"], 2);
}

#[tokio::test]
async fn many_addresses_guessing_one_account_hold_back_strangers_not_the_owner() {
    let c = Console::with(settings(600));
    c.admin();
    // The owner signed in from 192.0.2.10 before (c.admin() did, from its own address).
    let owner = c.login("admin", PASSWORD, "192.0.2.10").await;
    assert_eq!(owner.status, StatusCode::SEE_OTHER);
    for i in 0..20 {
        c.login("admin", "guess", &format!("203.0.113.{i}")).await;
    }
    let stranger = c.login("admin", PASSWORD, "203.0.113.250").await;
    assert_eq!(stranger.status, StatusCode::TOO_MANY_REQUESTS);
    let again = c.login("admin", PASSWORD, "192.0.2.10").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_throttled() {
    let c = Console::with(settings(60));
    c.admin();
    for i in 0..10 {
        let r = c.login(&format!("user{i}"), "x", "203.0.113.7").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // The address is now blocked, even for a correct login...
    let r = c.login("admin", PASSWORD, "203.0.113.7").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // ...but the account is not: the administrator gets in from elsewhere.
    let r = c.login("admin", PASSWORD, "192.0.2.5").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn second_factor_is_required_once_enabled() {
    let c = Console::new();
    let s = c.admin();
    let begin = c.post("/account/totp/begin", &s, &[]).await;
    assert_eq!(begin.status, StatusCode::OK);
    assert!(begin.body.contains("otpauth://totp/"), "{}", begin.body);
    let secret = begin
        .body
        .split("name=\"secret\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let key = palisade_store::accounts::totp::base32_decode(&secret).unwrap();
    let now = palisade_store::now_unix();
    let bad = c
        .post("/account/totp/confirm", &s, &[("code", "123456x")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let code = palisade_store::accounts::totp::code_at(&key, now / 30 - 1);
    let ok = c
        .post("/account/totp/confirm", &s, &[("code", &code)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // config.db (readable by every role) holds a sealed value, not the secret; the key is
    // the console's own file.
    let stored: Vec<u8> = palisade_store::rusqlite::Connection::open(c.data.config_db())
        .unwrap()
        .query_row(
            "SELECT totp_secret FROM console_user WHERE name = 'admin'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!stored.windows(key.len()).any(|w| w == key.as_slice()));
    assert!(stored.len() > key.len());
    let kpath = c.data.totp_key();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kpath).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let without = c.login("admin", PASSWORD, "192.0.2.1").await;
    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    let page = c.get("/login", None).await;
    let token = page.cookie(LOGIN_COOKIE).unwrap();
    let code = palisade_store::accounts::totp::code_at(&key, palisade_store::now_unix() / 30);
    let body = form(&[
        ("user", "admin"),
        ("password", PASSWORD),
        ("code", &code),
        ("csrf", &token),
    ]);
    let mut r = req(Method::POST, "/login", None, Some(&body), "192.0.2.1");
    r.headers_mut().insert(
        header::COOKIE,
        format!("{LOGIN_COOKIE}={token}").parse().unwrap(),
    );
    let with = c.send(r).await;
    assert_eq!(with.status, StatusCode::SEE_OTHER, "{}", with.body);
}

fn with_host(
    mut r: axum::http::Request<axum::body::Body>,
    host: &str,
    origin: Option<&str>,
) -> axum::http::Request<axum::body::Body> {
    r.headers_mut().insert(header::HOST, host.parse().unwrap());
    match origin {
        Some(o) => {
            r.headers_mut().insert(header::ORIGIN, o.parse().unwrap());
        }
        None => {
            r.headers_mut().remove(header::ORIGIN);
        }
    }
    r
}

#[tokio::test]
async fn requests_for_other_host_names_are_refused() {
    let c = Console::new();
    let s = c.admin();
    // DNS rebinding: evil.example now points at the console. Before, Host and Origin were
    // only compared with each other, so this POST was accepted.
    let r = c
        .send(with_host(
            req(
                Method::POST,
                "/logout",
                Some(&s),
                Some(&form(&[("csrf", &s.csrf)])),
                "192.0.2.1",
            ),
            "evil.example:8443",
            Some("https://evil.example:8443"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{}", r.body);
    let r = c
        .send(with_host(
            req(Method::GET, "/login", None, None, "192.0.2.1"),
            "evil.example:8443",
            None,
        ))
        .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(r.body.contains("console.hostnames"));
    assert_security_headers(&r, "421");
    // console.hostnames is set (to console.test:8443): addresses are not accepted.
    let r = c
        .send(with_host(
            req(Method::GET, "/login", None, None, "192.0.2.1"),
            "127.0.0.1:8443",
            None,
        ))
        .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    // The API too.
    let r = c
        .send(with_host(
            req(Method::GET, "/api/v1/status", None, None, "192.0.2.1"),
            "evil.example",
            None,
        ))
        .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    // A listed name with a foreign Origin: refused as before.
    let r = c
        .send(with_host(
            req(
                Method::POST,
                "/logout",
                Some(&s),
                Some(&form(&[("csrf", &s.csrf)])),
                "192.0.2.1",
            ),
            HOST,
            Some("https://evil.example:8443"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn by_default_the_console_answers_to_its_host_name_and_addresses() {
    let mut cfg = palisade_store::Config::default();
    cfg.system.hostname = "gw.example".into();
    let c = Console::with_config(palisade_console::Settings::default(), cfg);
    let s = c.admin();
    for (host, want) in [
        ("127.0.0.1:8443", StatusCode::OK),
        ("gw.example:8443", StatusCode::OK),
        ("localhost:8443", StatusCode::OK),
        ("[::1]:8443", StatusCode::OK),
        ("console.test:8443", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let r = c
            .send(with_host(
                req(Method::GET, "/login", None, None, "192.0.2.1"),
                host,
                None,
            ))
            .await;
        assert_eq!(r.status, want, "{host}");
    }
    // The listen address, as the browser test uses it: a same-origin POST works.
    let r = c
        .send(with_host(
            req(
                Method::POST,
                "/logout",
                Some(&s),
                Some(&form(&[("csrf", &s.csrf)])),
                "192.0.2.1",
            ),
            "127.0.0.1:8443",
            Some("https://127.0.0.1:8443"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Another address as Origin is another site.
    let s = c.admin();
    let r = c
        .send(with_host(
            req(
                Method::POST,
                "/logout",
                Some(&s),
                Some(&form(&[("csrf", &s.csrf)])),
                "192.0.2.1",
            ),
            "127.0.0.1:8443",
            Some("https://198.51.100.7:8443"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
