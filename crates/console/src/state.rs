//! What every handler shares: the open databases, the policies, and the ways to reach the
//! engine and the supervisor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use palisade_control::engine::{ControlRequest, ControlResponse};
use palisade_control::supervisor as sup;
use palisade_store::accounts::{Accounts, SessionPolicy, Throttle};
use palisade_store::totp_key::TotpKey;
use palisade_store::{AuditLog, Config, ConfigStore, DataDir, MailDb};

use crate::error::AppError;
use crate::security::HostPolicy;

/// Policies a deployment (or a test) may tune.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub throttle: Throttle,
    pub sessions: SessionPolicy,
}

/// The databases, behind one lock: the console is used by a handful of people, and one lock
/// makes every handler's read-modify-write obviously atomic within this process (SQLite's
/// `BEGIN IMMEDIATE` and revision checks take care of other processes).
pub struct Stores {
    pub accounts: Accounts,
    pub config: ConfigStore,
    pub audit: AuditLog,
    pub mail: MailDb,
}

/// Logins hash passwords (tens of milliseconds by design): each attempt gets its own
/// connections, so that a burst of attempts neither stalls every page nor queues the owner
/// behind a stranger's guesses; how many run at once is bounded by [`MAX_LOGIN_CHECKS`] and
/// the hashing budget (`store::password`).
pub struct LoginStores {
    pub accounts: Accounts,
    pub audit: AuditLog,
}

/// Login attempts checked at once; beyond this a stranger gets 503 at once, before any thread,
/// connection or memory is spent on the attempt. Sources in the console's trusted networks
/// have [`TRUSTED_LOGIN_CHECKS`] more of their own.
pub const MAX_LOGIN_CHECKS: usize = 16;
pub const TRUSTED_LOGIN_CHECKS: usize = 2;

struct Inner {
    data: DataDir,
    stores: Mutex<Stores>,
    login_checks: tokio::sync::Semaphore,
    trusted_login_checks: tokio::sync::Semaphore,
    /// Seals and opens TOTP secrets; only the console role can read it.
    totp_key: TotpKey,
    settings: Settings,
    /// Set by the server so that a replaced certificate takes effect without a restart.
    tls_reload: ArcSwapOption<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
    /// The supervisor's last status snapshot and when it was taken, for the banner every page
    /// shows (see [`AppState::supervisor_status_cached`]).
    sup_status: tokio::sync::Mutex<Option<(Instant, Option<sup::Status>)>>,
    /// The engine's degraded features, cached like `sup_status`.
    engine_degraded: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
    /// The host names of the configuration revision they were read from.
    hosts: Mutex<Option<(i64, Arc<HostPolicy>)>>,
}

/// How long a supervisor status snapshot serves the page banner.
const SUP_STATUS_TTL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Opens the databases, and reads (or on first use creates) the key that seals TOTP
    /// secrets, `DIR/console/totp.key`; legacy clear secrets are sealed now.
    pub fn open(data: &DataDir, settings: Settings) -> Result<AppState, crate::ConsoleError> {
        let key = TotpKey::load_or_create(&data.totp_key())?;
        let mut accounts = Accounts::open(&data.config_db())?.with_totp_key(key.clone());
        let sealed = accounts.seal_legacy_totp()?;
        if sealed > 0 {
            tracing::info!(event = "console.totp_secrets_sealed", count = sealed);
        }
        let stores = Stores {
            accounts,
            config: ConfigStore::open(&data.config_db())?,
            audit: AuditLog::open(&data.audit_db())?,
            mail: MailDb::open(&data.mail_db())?,
        };
        Ok(AppState(Arc::new(Inner {
            data: data.clone(),
            stores: Mutex::new(stores),
            login_checks: tokio::sync::Semaphore::new(MAX_LOGIN_CHECKS),
            trusted_login_checks: tokio::sync::Semaphore::new(TRUSTED_LOGIN_CHECKS),
            totp_key: key,
            settings,
            tls_reload: ArcSwapOption::empty(),
            sup_status: tokio::sync::Mutex::new(None),
            engine_degraded: tokio::sync::Mutex::new(None),
            hosts: Mutex::new(None),
        })))
    }

    pub fn data(&self) -> &DataDir {
        &self.0.data
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// Runs `f` on the databases on a blocking thread.
    /// The configuration revision in force (an internal error when there is none: the
    /// supervisor writes the first one before the console starts).
    pub async fn current_revision(&self) -> Result<palisade_store::Revision, AppError> {
        self.db(|s| {
            s.config
                .current()?
                .ok_or_else(|| AppError::internal("no configuration"))
        })
        .await
    }

    pub async fn db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut Stores) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut stores = inner.stores.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut stores)
        })
        .await?
    }

    /// The console's host names (`console.hostnames`) in the configuration in force. Read
    /// again whenever there is a new revision, so a change applies to the next request.
    pub async fn host_policy(&self) -> Result<Arc<HostPolicy>, AppError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let stores = inner.stores.lock().unwrap_or_else(|p| p.into_inner());
            let c = stores.config.conn();
            let rev: i64 = c
                .query_row(
                    "SELECT coalesce(max(id), 0) FROM config_revision",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| AppError::internal(format!("config.db: {e}")))?;
            let mut cached = inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((r, p)) = cached.as_ref()
                && *r == rev
            {
                return Ok(p.clone());
            }
            let cfg = stores
                .config
                .current()?
                .map(|r| r.config)
                .unwrap_or_else(Config::default);
            let p = Arc::new(HostPolicy::from_config(&cfg));
            *cached = Some((rev, p.clone()));
            Ok(p)
        })
        .await?
    }

    /// Runs a login check on connections of its own; `None` when too many are running
    /// (the caller answers 503). `trusted`: the source is in the console's trusted networks.
    pub async fn login_db<T, F>(&self, trusted: bool, f: F) -> Option<Result<T, AppError>>
    where
        F: FnOnce(&mut LoginStores) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = match self.0.login_checks.try_acquire() {
            Ok(p) => p,
            Err(_) if trusted => self.0.trusted_login_checks.try_acquire().ok()?,
            Err(_) => return None,
        };
        let (data, key) = (self.0.data.clone(), self.0.totp_key.clone());
        let r = tokio::task::spawn_blocking(move || {
            let mut stores = LoginStores {
                accounts: Accounts::open(&data.config_db())?.with_totp_key(key),
                audit: AuditLog::open(&data.audit_db())?,
            };
            f(&mut stores)
        })
        .await;
        drop(permit);
        Some(r.map_err(AppError::from).and_then(|r| r))
    }

    /// One request to the engine's control socket. `Err` says why it could not be asked
    /// (not running, no permission), in words for the page.
    pub async fn engine(&self, req: ControlRequest) -> Result<ControlResponse, String> {
        let socket = self.0.data.control_socket();
        tokio::task::spawn_blocking(move || {
            palisade_control::engine::control_request(&socket, &req)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            if e.is_not_running() {
                "the engine is not reachable: it is not running".to_string()
            } else {
                format!("the engine is not reachable ({e})")
            }
        })
    }

    /// After a configuration commit: asks the engine to apply it, and says what happened.
    pub async fn reload_engine(&self) -> String {
        match self.engine(ControlRequest::Reload).await {
            Ok(r) if r.ok => format!("engine: {}", r.message),
            Ok(r) => format!("the engine did not apply it: {}", r.message),
            Err(e) => format!("{e}; it applies the change when it starts"),
        }
    }

    pub async fn supervisor(&self, req: sup::Request) -> Result<sup::Response, String> {
        let run = self.0.data.run();
        tokio::task::spawn_blocking(move || sup::request(&run, &req))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the supervisor is not reachable ({e})"))
    }

    /// The supervisor's status, asked at most every two seconds however many pages are
    /// served; `None` when it cannot be asked (the console runs alone, or it is stopping).
    pub async fn supervisor_status_cached(&self) -> Option<sup::Status> {
        let mut cache = self.0.sup_status.lock().await;
        if let Some((at, st)) = cache.as_ref()
            && at.elapsed() < SUP_STATUS_TTL
        {
            return st.clone();
        }
        let st = match self.supervisor(sup::Request::Status).await {
            Ok(sup::Response::Status(st)) => Some(st),
            _ => None,
        };
        *cache = Some((Instant::now(), st.clone()));
        st
    }

    /// What the engine reports as degraded (clamd unreachable, stale signatures), one
    /// sentence each, asked at most every two seconds; empty when the engine cannot be asked
    /// (the service table says why).
    pub async fn engine_degraded_cached(&self) -> Vec<String> {
        let mut cache = self.0.engine_degraded.lock().await;
        if let Some((at, d)) = cache.as_ref()
            && at.elapsed() < SUP_STATUS_TTL
        {
            return d.clone();
        }
        let d = match self.engine(ControlRequest::Stats).await {
            Ok(r) => r.stats.map(|s| s.degraded).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        *cache = Some((Instant::now(), d.clone()));
        d
    }

    pub(crate) fn set_tls_reload(&self, f: Box<dyn Fn() -> Result<(), String> + Send + Sync>) {
        self.0.tls_reload.store(Some(Arc::new(f)));
    }

    /// Re-reads the console's certificate; `Err` if there is no server (tests) or it failed.
    pub(crate) fn reload_tls(&self) -> Result<(), String> {
        match self.0.tls_reload.load_full() {
            Some(f) => f(),
            None => Err("no TLS listener in this process".into()),
        }
    }
}
