//! Every URL, and the permission it needs. Reading this file is reading the access policy;
//! `tests/routes.rs` checks it for every role.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};

use crate::auth::{self, BODY_LIMIT, Perm, with_perm};
use crate::pages::{
    account, audit, dashboard, dkim, dlp, ha, incidents, mailflow, protection, quarantine, queue,
    system, tracking, users,
};
use crate::state::AppState;
use crate::{api, pages, security};

fn pages(state: &AppState) -> Router<AppState> {
    use Perm::*;
    Router::new()
        .merge(with_perm(
            Dashboard,
            Router::new().route("/", get(dashboard::page)),
        ))
        .merge(with_perm(
            ViewConfig,
            Router::new()
                .route("/mailflow", get(mailflow::page))
                .route("/protection", get(protection::page))
                .route("/protection/dkim", get(dkim::page))
                .route("/dlp", get(dlp::page))
                .route("/dlp/rules/new", get(dlp::new))
                .route("/dlp/rules/{index}", get(dlp::edit)),
        ))
        .merge(with_perm(
            EditConfig,
            Router::new()
                .route("/mailflow/domains", post(mailflow::domains))
                .route("/mailflow/routes", post(mailflow::routes))
                .route("/mailflow/tls-policies", post(mailflow::tls_policies))
                .route("/mailflow/outbound", post(mailflow::outbound))
                .route("/mailflow/network", post(mailflow::network))
                .route("/mailflow/limits", post(mailflow::limits))
                .route("/mailflow/listeners", post(mailflow::listeners))
                .route("/mailflow/certificate", post(mailflow::certificate))
                .route("/protection/antivirus", post(protection::antivirus))
                .route("/protection/antivirus/fetch", post(protection::fetch))
                .route(
                    auth::SIGNATURE_UPLOAD_PATH,
                    post(protection::signatures)
                        .layer(DefaultBodyLimit::max(auth::SIGNATURE_UPLOAD_LIMIT)),
                )
                .route("/protection/attachments", post(protection::attachments))
                .route("/protection/spam", post(protection::spam))
                .route(
                    "/protection/authentication",
                    post(protection::authentication),
                )
                .route("/protection/digest", post(protection::digest))
                .route("/protection/dkim/generate", post(dkim::generate))
                .route("/protection/dkim/sign", post(dkim::sign))
                .route("/dlp/detectors", post(dlp::detectors))
                .route("/dlp/rules/order", post(dlp::order))
                .route(
                    auth::DRY_RUN_PATH,
                    post(dlp::save).layer(DefaultBodyLimit::max(auth::DRY_RUN_LIMIT)),
                ),
        ))
        .merge(with_perm(
            ViewQueue,
            Router::new()
                .route("/queue", get(queue::list))
                .route("/queue/{id}", get(queue::message)),
        ))
        .merge(with_perm(
            ManageQueue,
            Router::new()
                .route("/queue/flush", post(queue::flush))
                .route("/queue/{id}", post(queue::action)),
        ))
        .merge(with_perm(
            ViewQuarantine,
            Router::new()
                .route("/quarantine", get(quarantine::list))
                .route("/quarantine/{id}", get(quarantine::message))
                .route("/quarantine/{id}/message.eml", get(quarantine::download)),
        ))
        .merge(with_perm(
            ManageQuarantine,
            Router::new()
                .route("/quarantine/bulk", post(quarantine::bulk))
                .route("/quarantine/{id}", post(quarantine::action)),
        ))
        .merge(with_perm(
            ViewTracking,
            Router::new()
                .route("/tracking", get(tracking::search))
                .route("/tracking/{id}", get(tracking::trace)),
        ))
        .merge(with_perm(
            ViewAudit,
            Router::new()
                .route("/audit", get(audit::list))
                .route("/audit/verify", get(audit::verify))
                .route("/audit.csv", get(audit::csv))
                .route("/dlp/incidents", get(incidents::list))
                .route("/dlp/report", get(incidents::report))
                .route("/dlp/report.csv", get(incidents::report_csv))
                .route("/dlp/report.html", get(incidents::report_html)),
        ))
        .merge(with_perm(
            ViewUsers,
            Router::new().route("/users", get(users::list)),
        ))
        .merge(with_perm(
            ManageUsers,
            Router::new()
                .route("/users", post(users::create))
                .route("/users/{id}", post(users::action)),
        ))
        .merge(with_perm(
            ViewSystem,
            Router::new()
                .route("/system", get(system::page))
                .route("/system/ha", get(ha::page))
                .route("/system/backup.toml", get(system::backup)),
        ))
        .merge(with_perm(
            ManageSystem,
            Router::new()
                .route("/system/identity", post(system::identity))
                .route("/system/restore", post(system::restore_preview))
                .route("/system/restore/apply", post(system::restore_apply))
                .route("/system/rollback", post(system::rollback))
                .route("/system/restart", post(system::restart))
                .route("/system/certificate", post(system::certificate))
                .route("/system/ha/create", post(ha::create))
                .route("/system/ha/join", post(ha::join))
                .route("/system/ha/failover", post(ha::failover))
                .route("/system/ha/unpair", post(ha::unpair)),
        ))
        .merge(with_perm(
            OwnAccount,
            Router::new()
                .route("/account", get(account::page))
                .route("/account/totp/begin", post(account::totp_begin))
                .route("/account/totp/confirm", post(account::totp_confirm))
                .route("/account/totp/disable", post(account::totp_disable))
                .route("/account/tokens", post(account::token_create))
                .route("/account/tokens/{id}/revoke", post(account::token_revoke)),
        ))
        // Reachable while a password change is forced.
        .route(
            "/password",
            get(auth::password_page).post(auth::password_submit),
        )
        .route("/logout", post(auth::logout))
        .layer(from_fn_with_state(state.clone(), auth::session_layer))
}

fn api(state: &AppState) -> Router<AppState> {
    use Perm::*;
    Router::new()
        .merge(with_perm(
            Dashboard,
            Router::new()
                .route("/status", get(api::status))
                .route("/flow", get(api::flow))
                .route("/protection", get(api::protection)),
        ))
        .merge(with_perm(
            ViewConfig,
            Router::new()
                .route("/config", get(api::config_get))
                .route("/config/toml", get(api::config_toml))
                .route("/config/history", get(api::config_history)),
        ))
        .merge(with_perm(
            EditConfig,
            Router::new()
                .route("/config", post(api::config_put))
                .route("/config/rollback", post(api::config_rollback)),
        ))
        .merge(with_perm(
            ViewQueue,
            Router::new()
                .route("/queue", get(api::queue_list))
                .route("/queue/{id}", get(api::queue_get)),
        ))
        .merge(with_perm(
            ManageQueue,
            Router::new()
                .route("/queue/flush", post(api::queue_flush))
                .route("/queue/{id}/{action}", post(api::queue_action)),
        ))
        .merge(with_perm(
            ViewQuarantine,
            Router::new()
                .route("/quarantine", get(api::quarantine_list))
                .route("/quarantine/{id}", get(api::quarantine_get)),
        ))
        .merge(with_perm(
            ManageQuarantine,
            Router::new().route("/quarantine/{id}/{action}", post(api::quarantine_action)),
        ))
        .merge(with_perm(
            ViewTracking,
            Router::new()
                .route("/tracking", get(api::tracking_search))
                .route("/tracking/{id}", get(api::tracking_get)),
        ))
        .merge(with_perm(
            ViewAudit,
            Router::new()
                .route("/audit", get(api::audit_list))
                .route("/audit/verify", get(api::audit_verify)),
        ))
        .merge(with_perm(
            ViewUsers,
            Router::new().route("/users", get(api::users_list)),
        ))
        .merge(with_perm(
            ManageUsers,
            Router::new()
                .route("/users", post(api::users_create))
                .route("/users/{id}/role", post(api::users_role))
                .route("/users/{id}/reset-password", post(api::users_reset))
                .route("/users/{id}", delete(api::users_delete)),
        ))
        .merge(with_perm(
            ViewSystem,
            Router::new()
                .route("/services", get(api::services_list))
                .route("/ha", get(api::ha_status)),
        ))
        .merge(with_perm(
            ManageSystem,
            Router::new()
                .route("/services/{name}/restart", post(api::services_restart))
                .route("/ha/create", post(api::ha_create))
                .route("/ha/join", post(api::ha_join))
                .route("/ha/failover", post(api::ha_failover))
                .route("/ha/unpair", post(api::ha_unpair)),
        ))
        .fallback(api::not_found)
        .layer(from_fn_with_state(state.clone(), api::token_layer))
}

/// The whole console. Security headers wrap everything, including errors and redirects; no
/// request reaches a handler unless its `Host` is one of the console's names.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .route(
            "/static/console.css",
            get(pages::stylesheet).layer(security::cache_static()),
        )
        .route(
            "/static/favicon.svg",
            get(pages::favicon).layer(security::cache_static()),
        )
        .route("/favicon.ico", get(pages::favicon))
        // No login: the signed, expiring, single-use token in the path is the credential
        // (quarantine digest release links; see `pages::digest`).
        .route(
            "/digest/release/{token}",
            get(pages::digest::confirm).post(pages::digest::release),
        )
        // The same for senders' confirmation links (`pages::confirm`).
        .route(
            "/confirm/{token}",
            get(pages::confirm::show).post(pages::confirm::answer),
        )
        .nest("/api/v1", api(&state))
        .merge(pages(&state))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), security::host_check));
    security::with_response_headers(router).with_state(state)
}
