//! The access policy, route by route and role by role, for the pages and the API; and no
//! GET changes anything.

mod common;

use axum::http::{Method, StatusCode, header};
use common::*;
use palisade_console::{Perm, allows};
use palisade_store::accounts::Role;
use palisade_store::audit::AuditFilter;

const QID: &str = "0123456789abcdef0123";

/// Every page route with the permission it needs. A route missing here is a route nobody
/// checked: keep it complete.
fn page_routes() -> Vec<(Method, String, Perm)> {
    use Perm::*;
    let g = |p: &str, perm| (Method::GET, p.to_string(), perm);
    let p = |p: &str, perm| (Method::POST, p.to_string(), perm);
    vec![
        g("/", Dashboard),
        g("/mailflow", ViewConfig),
        p("/mailflow/domains", EditConfig),
        p("/mailflow/routes", EditConfig),
        p("/mailflow/outbound", EditConfig),
        p("/mailflow/network", EditConfig),
        p("/mailflow/limits", EditConfig),
        p("/mailflow/listeners", EditConfig),
        p("/mailflow/certificate", EditConfig),
        g("/protection", ViewConfig),
        p("/protection/antivirus", EditConfig),
        p("/protection/antivirus/signatures", EditConfig),
        p("/protection/antivirus/fetch", EditConfig),
        p("/protection/attachments", EditConfig),
        p("/protection/authentication", EditConfig),
        g("/protection/dkim", ViewConfig),
        p("/protection/dkim/generate", EditConfig),
        p("/protection/dkim/sign", EditConfig),
        p("/protection/spam", EditConfig),
        p("/protection/digest", EditConfig),
        g("/dlp", ViewConfig),
        g("/dlp/rules/new", ViewConfig),
        g("/dlp/rules/0", ViewConfig),
        p("/dlp/detectors", EditConfig),
        p("/dlp/rules/order", EditConfig),
        p("/dlp/rules/save", EditConfig),
        g("/dlp/incidents", ViewAudit),
        g("/dlp/report", ViewAudit),
        g("/dlp/report.csv", ViewAudit),
        g("/dlp/report.html", ViewAudit),
        g("/queue", ViewQueue),
        g(&format!("/queue/{QID}"), ViewQueue),
        p(&format!("/queue/{QID}"), ManageQueue),
        p("/queue/flush", ManageQueue),
        g("/quarantine", ViewQuarantine),
        g(&format!("/quarantine/{QID}"), ViewQuarantine),
        g(&format!("/quarantine/{QID}/message.eml"), ViewQuarantine),
        p(&format!("/quarantine/{QID}"), ManageQuarantine),
        p("/quarantine/bulk", ManageQuarantine),
        g("/tracking", ViewTracking),
        g(&format!("/tracking/{QID}"), ViewTracking),
        g("/audit", ViewAudit),
        g("/audit/verify", ViewAudit),
        g("/audit.csv", ViewAudit),
        g("/users", ViewUsers),
        p("/users", ManageUsers),
        p("/users/9999", ManageUsers),
        g("/system", ViewSystem),
        g("/system/backup.toml", ViewSystem),
        p("/system/identity", ManageSystem),
        p("/system/restore", ManageSystem),
        p("/system/restore/apply", ManageSystem),
        p("/system/rollback", ManageSystem),
        p("/system/restart", ManageSystem),
        p("/system/certificate", ManageSystem),
        g("/account", OwnAccount),
        p("/account/totp/begin", OwnAccount),
        p("/account/totp/confirm", OwnAccount),
        p("/account/totp/disable", OwnAccount),
        p("/account/tokens", OwnAccount),
        p("/account/tokens/9999/revoke", OwnAccount),
    ]
}

fn api_routes() -> Vec<(Method, String, Perm)> {
    use Perm::*;
    let g = |p: &str, perm| (Method::GET, format!("/api/v1{p}"), perm);
    let p = |p: &str, perm| (Method::POST, format!("/api/v1{p}"), perm);
    vec![
        g("/status", Dashboard),
        g("/flow", Dashboard),
        g("/config", ViewConfig),
        g("/config/toml", ViewConfig),
        g("/config/history", ViewConfig),
        p("/config", EditConfig),
        p("/config/rollback", EditConfig),
        g("/queue", ViewQueue),
        g(&format!("/queue/{QID}"), ViewQueue),
        p(&format!("/queue/{QID}/retry"), ManageQueue),
        p("/queue/flush", ManageQueue),
        g("/tracking", ViewTracking),
        g(&format!("/tracking/{QID}"), ViewTracking),
        g("/audit", ViewAudit),
        g("/audit/verify", ViewAudit),
        g("/users", ViewUsers),
        p("/users", ManageUsers),
        p("/users/9999/role", ManageUsers),
        p("/users/9999/reset-password", ManageUsers),
        (Method::DELETE, "/api/v1/users/9999".into(), ManageUsers),
        g("/services", ViewSystem),
        p("/services/engine/restart", ManageSystem),
    ]
}

#[tokio::test]
async fn page_route_role_matrix() {
    let c = Console::new();
    let sessions = [
        (Role::Administrator, c.admin()),
        (Role::Operator, c.user("olivia", Role::Operator)),
        (Role::Auditor, c.user("arthur", Role::Auditor)),
    ];
    let mut checked = 0;
    for (method, path, perm) in page_routes() {
        for (role, s) in &sessions {
            let r = if method == Method::GET {
                c.get(&path, Some(s)).await
            } else {
                // Only the token: enough to pass CSRF, never enough to change anything.
                c.post(&path, s, &[]).await
            };
            if allows(*role, perm) {
                assert_ne!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path} must be allowed: {}",
                    r.body
                );
                assert_ne!(r.location(), Some("/login"), "{role} {method} {path}");
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path} must be refused"
                );
            }
            checked += 1;
        }
        // Without a session every page leads to the login form.
        let r = if method == Method::GET {
            c.get(&path, None).await
        } else {
            c.send(req(
                method.clone(),
                &path,
                None,
                Some("csrf=x"),
                "192.0.2.1",
            ))
            .await
        };
        assert_eq!(
            r.location(),
            Some("/login"),
            "{method} {path} without a session"
        );
    }
    assert_eq!(checked, page_routes().len() * 3);
    // The matrix changed nothing: still the first revision, and no queue or user actions.
    let history = palisade_store::ConfigStore::open(&c.data.config_db())
        .unwrap()
        .history(10)
        .unwrap();
    assert_eq!(history.len(), 1);
}

#[tokio::test]
async fn api_route_role_matrix() {
    let c = Console::new();
    c.admin();
    let tokens: Vec<(Role, String)> = [
        (Role::Administrator, "admin"),
        (Role::Operator, "olivia"),
        (Role::Auditor, "arthur"),
    ]
    .into_iter()
    .map(|(role, name)| {
        if name != "admin" {
            c.user(name, role);
        }
        let mut acc = c.accounts();
        let id = acc.user_by_name(name).unwrap().unwrap().id;
        let (_, token) = acc
            .create_token(&mut c.audit(), id, "t", 90, "test")
            .unwrap();
        (role, token)
    })
    .collect();
    for (method, path, perm) in api_routes() {
        for (role, token) in &tokens {
            let mut r = req(method.clone(), &path, None, None, "192.0.2.1");
            r.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
            let r = c.send(r).await;
            if allows(*role, perm) {
                assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{role} {method} {path}: {} {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} {method} {path}");
                assert!(r.json()["error"].is_string());
            }
        }
        let r = c
            .send(req(method.clone(), &path, None, None, "192.0.2.1"))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        let mut bad = req(method.clone(), &path, None, None, "192.0.2.1");
        bad.headers_mut()
            .insert(header::AUTHORIZATION, "Bearer pal_0000".parse().unwrap());
        assert_eq!(c.send(bad).await.status, StatusCode::UNAUTHORIZED);
    }
    // A session cookie is not an API credential.
    let s = c.admin();
    let r = c.get("/api/v1/status", Some(&s)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn no_get_changes_state() {
    let c = Console::new();
    let s = c.admin();
    let audit_before = c.audit().list(&AuditFilter::default()).unwrap().len();
    for (method, path, _) in page_routes() {
        if method == Method::POST {
            let r = c.get(&path, Some(&s)).await;
            assert!(
                r.status == StatusCode::METHOD_NOT_ALLOWED
                    || r.status == StatusCode::NOT_FOUND
                    || r.status == StatusCode::OK,
                "GET {path}: {}",
                r.status
            );
        } else {
            c.get(&path, Some(&s)).await;
        }
    }
    // GET /queue/flush reaches the read-only message view, never the flush.
    let after = c.audit().list(&AuditFilter::default()).unwrap();
    assert_eq!(after.len(), audit_before, "{:?}", after.first());
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let c = Console::new();
    c.admin();
    let mut acc = c.accounts();
    let id = acc.user_by_name("admin").unwrap().unwrap().id;
    let (_, token) = acc
        .create_token(&mut c.audit(), id, "t", 90, "test")
        .unwrap();
    for (value, want) in [
        (format!("Bearer {token}"), StatusCode::OK),
        (format!("bearer {token}"), StatusCode::OK),
        (format!("BEARER  {token}"), StatusCode::OK),
        (format!("Basic {token}"), StatusCode::UNAUTHORIZED),
        (format!("Bearer{token}"), StatusCode::UNAUTHORIZED),
        ("bearer ".to_string(), StatusCode::UNAUTHORIZED),
    ] {
        let mut r = req(Method::GET, "/api/v1/status", None, None, "192.0.2.1");
        r.headers_mut()
            .insert(header::AUTHORIZATION, value.parse().unwrap());
        assert_eq!(c.send(r).await.status, want, "{value}");
    }
}
