//! A console on a temporary data directory, driven with `oneshot` requests as a browser would
//! send them (Host, Origin, cookies, client address).

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use palisade_console::{AppState, ClientAddr, LOGIN_COOKIE, SESSION_COOKIE, Settings, router};
use palisade_store::accounts::{Accounts, Role, SessionPolicy, Throttle};
use palisade_store::{AuditLog, Config, ConfigStore, DataDir};
use tower::ServiceExt;

pub const HOST: &str = "console.test:8443";
pub const ORIGIN: &str = "https://console.test:8443";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Console {
    pub dir: tempfile::TempDir,
    pub data: DataDir,
    pub state: AppState,
    pub app: Router,
    /// The first-start administrator's one-time password.
    pub admin_otp: String,
}

pub fn settings(window_secs: i64) -> Settings {
    Settings {
        throttle: Throttle {
            window_secs,
            free_per_account_source: 5,
            free_per_source: 10,
            free_per_account: 10,
            first_delay_secs: 2,
            max_delay_secs: 60,
            ..Throttle::default()
        },
        sessions: SessionPolicy::default(),
    }
}

impl Console {
    pub fn new() -> Console {
        Console::with(Settings::default())
    }

    pub fn with(settings: Settings) -> Console {
        let mut cfg = Config::default();
        cfg.console.hostnames = vec![HOST.into()];
        Console::with_config(settings, cfg)
    }

    /// A console whose first revision is `cfg`.
    pub fn with_config(settings: Settings, cfg: Config) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        for d in [data.spool(), data.run(), data.tls()] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut store = ConfigStore::open(&data.config_db()).unwrap();
        let mut audit = AuditLog::open(&data.audit_db()).unwrap();
        store.init(&mut audit, &cfg).unwrap();
        let mut acc = Accounts::open(&data.config_db()).unwrap();
        let admin_otp = acc.ensure_initial_admin(&mut audit).unwrap().unwrap();
        let state = AppState::open(&data, settings).unwrap();
        let app = router(state.clone());
        Console {
            dir,
            data,
            state,
            app,
            admin_otp,
        }
    }

    pub fn accounts(&self) -> Accounts {
        Accounts::open(&self.data.config_db()).unwrap()
    }

    pub fn audit(&self) -> AuditLog {
        AuditLog::open(&self.data.audit_db()).unwrap()
    }

    /// A user with `role` and the password [`PASSWORD`] (already changed from the one-time
    /// one); returns a logged-in session (cookie, csrf) opened directly in the store.
    pub fn user(&self, name: &str, role: Role) -> Session {
        let mut acc = self.accounts();
        let mut audit = self.audit();
        let user = match acc.user_by_name(name).unwrap() {
            Some(u) => u,
            None => {
                let (u, otp) = acc
                    .create_user(&mut audit, name, role, "test", "test")
                    .unwrap();
                acc.change_password(&mut audit, u.id, &otp, PASSWORD, "test")
                    .unwrap();
                u
            }
        };
        let s = acc.open_session(user.id, "192.0.2.1").unwrap();
        Session {
            cookie: s.id,
            csrf: s.csrf,
        }
    }

    /// The first-start administrator, with a password of its own.
    pub fn admin(&self) -> Session {
        let mut acc = self.accounts();
        let mut audit = self.audit();
        let admin = acc.user_by_name("admin").unwrap().unwrap();
        if admin.must_change_password {
            acc.change_password(&mut audit, admin.id, &self.admin_otp, PASSWORD, "test")
                .unwrap();
        }
        let s = acc.open_session(admin.id, "192.0.2.1").unwrap();
        Session {
            cookie: s.id,
            csrf: s.csrf,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        Reply::from(resp).await
    }

    pub async fn get(&self, path: &str, s: Option<&Session>) -> Reply {
        self.send(req(Method::GET, path, s, None, "192.0.2.1"))
            .await
    }

    /// A same-origin form POST carrying the session's CSRF token.
    pub async fn post(&self, path: &str, s: &Session, fields: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", s.csrf.as_str())];
        all.extend_from_slice(fields);
        self.send(req(
            Method::POST,
            path,
            Some(s),
            Some(&form(&all)),
            "192.0.2.1",
        ))
        .await
    }

    /// The login form as a browser fills it in: GET for the token cookie, then POST.
    pub async fn login(&self, user: &str, password: &str, ip: &str) -> Reply {
        let page = self.send(req(Method::GET, "/login", None, None, ip)).await;
        let token = page.cookie(LOGIN_COOKIE).expect("login token cookie");
        let body = form(&[("user", user), ("password", password), ("csrf", &token)]);
        let mut r = req(Method::POST, "/login", None, Some(&body), ip);
        r.headers_mut().insert(
            header::COOKIE,
            format!("{LOGIN_COOKIE}={token}").parse().unwrap(),
        );
        self.send(r).await
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn req(
    method: Method,
    path: &str,
    s: Option<&Session>,
    body: Option<&str>,
    ip: &str,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, HOST);
    if method != Method::GET {
        b = b.header(header::ORIGIN, ORIGIN);
    }
    if let Some(s) = s {
        b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={}", s.cookie));
    }
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    b.extension(ClientAddr(addr))
        .body(Body::from(body.unwrap_or("").to_string()))
        .unwrap()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    async fn from(resp: Response<Body>) -> Reply {
        let (parts, body) = resp.into_parts();
        let bytes = to_bytes(body, 16 * 1024 * 1024).await.unwrap();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value a Set-Cookie gives `name` (None if not set or cleared).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let v = c.strip_prefix(&format!("{name}="))?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}
