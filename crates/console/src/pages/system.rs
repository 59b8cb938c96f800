//! System: host name and time servers, configuration backup and restore (with a preview of
//! the difference before anything is applied), revision history and rollback, services and
//! their restart, the console's own certificate.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use palisade_control::supervisor as sup;
use palisade_store::{Config, Problem, now_unix};
use serde::Deserialize;

use super::dashboard::{ServiceView, services};
use super::{CertInfo, cert_info_file};
use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render_status};
use crate::forms::{EditOutcome, Raw, committed_message, edit_config, flash, get, parse_strings};
use crate::state::AppState;
use crate::view::{Field, FormView, Page, Submitted, datetime_local, fmt_time, lines};

pub struct RevisionView {
    pub id: i64,
    pub time: String,
    pub author: String,
    pub comment: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "system.html")]
struct SystemPage {
    page: Page,
    manage: bool,
    revision: i64,
    identity: FormView,
    history: Vec<RevisionView>,
    services: Vec<ServiceView>,
    services_error: String,
    cert: CertInfo,
    cert_form: FormView,
    restore_form: FormView,
}

async fn show(
    state: &AppState,
    p: &Principal,
    sub: Option<Submitted>,
) -> Result<Response, AppError> {
    let page = Page::load(state, p, "system", "System").await?;
    let (rev, history) = state
        .db(|s| {
            let rev = s
                .config
                .current()?
                .ok_or_else(|| AppError::internal("no configuration"))?;
            Ok((rev, s.config.history(30)?))
        })
        .await?;
    let manage = allows(p.user.role, Perm::ManageSystem);
    let cfg = &rev.config;
    let identity = FormView::new("identity", "/system/identity", "", "Save")
        .field(
            Field::new("hostname", "Host name", "text", &cfg.system.hostname)
                .path("system.hostname")
                .help("Used in the SMTP greeting, Received headers and bounces."),
        )
        .field(
            Field::new(
                "ntp_servers",
                "Time servers (NTP)",
                "textarea",
                lines(&cfg.system.ntp_servers),
            )
            .path("system.ntp_servers")
            .rows(3)
            .help("One host name or address per line."),
        )
        .hidden("revision", rev.id)
        .editable(manage)
        .finish(sub.as_ref());
    let cert_form = FormView::new("console-cert", "/system/certificate", "", "Install certificate")
        .intro("PEM files: the certificate (with its chain) and its unencrypted private key. The console uses it for new connections at once.")
        .field(Field::new("cert", "Certificate chain", "file", ""))
        .field(Field::new("key", "Private key", "file", ""))
        .field(
            Field::new("confirm", "Install even with the warnings above", "checkbox", "yes")
                .help("The console checks that the certificate covers its host names (console.hostnames, or system.hostname) and is already valid, and asks before installing one that does not."),
        )
        .multipart()
        .editable(manage)
        .finish(sub.as_ref());
    let restore_form = FormView::new("restore", "/system/restore", "", "Preview")
        .intro("Choose a configuration file exported from this page (or made with \"palisade config export\"). You will see the difference before anything is changed.")
        .field(Field::new("file", "Configuration file (TOML)", "file", ""))
        .multipart()
        .editable(manage)
        .finish(sub.as_ref());
    let (services, services_error) = match services(state).await {
        Ok(s) => (s, String::new()),
        Err(e) => (vec![], e),
    };
    let status = if sub.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render_status(
        status,
        &SystemPage {
            page,
            manage,
            revision: rev.id,
            identity,
            history: history
                .into_iter()
                .map(|(id, ts, author, comment)| RevisionView {
                    id,
                    time: fmt_time(ts),
                    author,
                    comment,
                    current: id == rev.id,
                })
                .collect(),
            services,
            services_error,
            cert: cert_info_file(&state.data().resolve(&cfg.console.cert)),
            cert_form,
            restore_form,
        },
    )
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    show(&state, &p, None).await
}

pub async fn identity(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let rev: i64 = get(&raw, "revision").parse().map_err(|_| {
        AppError::BadRequest("The form did not say which revision it edits.".into())
    })?;
    let raw2 = raw.clone();
    let outcome = edit_config(&state, &p, rev, move |cfg| {
        cfg.system.hostname = get(&raw2, "hostname").trim().to_ascii_lowercase();
        cfg.system.ntp_servers = parse_strings(get(&raw2, "ntp_servers"));
        ("host name and time servers changed".into(), vec![])
    })
    .await?;
    match outcome {
        EditOutcome::Committed { revision, engine } => {
            flash(&state, &p, committed_message(revision, &engine)).await?
        }
        EditOutcome::Unchanged => flash(&state, &p, "Nothing changed.".into()).await?,
        EditOutcome::Invalid(problems) => {
            return show(
                &state,
                &p,
                Some(Submitted {
                    form: "identity".into(),
                    raw,
                    problems,
                }),
            )
            .await;
        }
    }
    Ok(Redirect::to("/system").into_response())
}

/// The configuration in force as TOML (a read: no state changes).
pub async fn backup(State(state): State<AppState>, _p: Principal) -> Result<Response, AppError> {
    let rev = state.current_revision().await?;
    let body = format!(
        "# Palisade configuration, revision {} ({} by {}: {})\n{}",
        rev.id,
        fmt_time(rev.created_at),
        rev.author,
        rev.comment.replace('\n', " "),
        rev.config.to_toml()
    );
    let name = format!(
        "attachment; filename=\"palisade-config-r{}-{}.toml\"",
        rev.id,
        datetime_local(now_unix()).replace(':', "")
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/toml; charset=utf-8".to_string(),
            ),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "restore.html")]
struct RestorePage {
    page: Page,
    base: i64,
    toml: String,
    diff: String,
    problems: Vec<Problem>,
}

/// Step one of a restore: parse, validate, show the difference. Nothing is changed.
pub async fn restore_preview(
    State(state): State<AppState>,
    p: Principal,
    mut mp: Multipart,
) -> Result<Response, AppError> {
    let mut text = None;
    while let Some(f) = mp
        .next_field()
        .await
        .map_err(|e| AppError::BadRequest(format!("the upload was incomplete: {e}")))?
    {
        if f.name() == Some("file") {
            let b = f
                .bytes()
                .await
                .map_err(|e| AppError::BadRequest(format!("the upload was incomplete: {e}")))?;
            text = Some(
                String::from_utf8(b.to_vec())
                    .map_err(|_| AppError::BadRequest("The file is not UTF-8 text.".into()))?,
            );
        }
    }
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return show(
            &state,
            &p,
            Some(Submitted {
                form: "restore".into(),
                raw: Default::default(),
                problems: vec![Problem::new("", "Choose a configuration file first.")],
            }),
        )
        .await;
    };
    preview(&state, &p, text).await
}

async fn preview(state: &AppState, p: &Principal, text: String) -> Result<Response, AppError> {
    let current = state.current_revision().await?;
    let (diff, problems) = match Config::from_toml(&text) {
        Ok(cfg) => (
            palisade_store::config_store::diff(&current.config, &cfg),
            vec![],
        ),
        Err(problems) => (String::new(), problems),
    };
    let page = Page::load(state, p, "system", "Restore configuration").await?;
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_status(
        status,
        &RestorePage {
            page,
            base: current.id,
            toml: text,
            diff,
            problems,
        },
    )
}

#[derive(Deserialize)]
pub struct ApplyForm {
    toml: String,
    base: i64,
}

/// Step two: the same text, validated again, committed on top of the revision the preview
/// was made against.
pub async fn restore_apply(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<ApplyForm>,
) -> Result<Response, AppError> {
    let text = f.toml.clone();
    match edit_config(&state, &p, f.base, move |cfg| {
        match Config::from_toml(&text) {
            Ok(new) => {
                *cfg = new;
                ("restored from a backup file".into(), vec![])
            }
            Err(problems) => (String::new(), problems),
        }
    })
    .await?
    {
        EditOutcome::Committed { revision, engine } => {
            flash(&state, &p, committed_message(revision, &engine)).await?;
            Ok(Redirect::to("/system").into_response())
        }
        EditOutcome::Unchanged => {
            flash(
                &state,
                &p,
                "The file is the configuration already in force.".into(),
            )
            .await?;
            Ok(Redirect::to("/system").into_response())
        }
        EditOutcome::Invalid(_) => preview(&state, &p, f.toml).await,
    }
}

#[derive(Deserialize)]
pub struct RollbackForm {
    revision: i64,
}

pub async fn rollback(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<RollbackForm>,
) -> Result<Response, AppError> {
    crate::forms::refuse_if_passive(&state)?;
    let (actor, source) = (p.actor(), p.source.clone());
    let rev = state
        .db(move |s| {
            Ok(s.config
                .rollback(&mut s.audit, f.revision, &actor, &source)?)
        })
        .await?;
    let engine = state.reload_engine().await;
    flash(
        &state,
        &p,
        format!(
            "Revision {} is in force again as revision {}; {engine}.",
            f.revision, rev.id
        ),
    )
    .await?;
    Ok(Redirect::to("/system").into_response())
}

#[derive(Deserialize)]
pub struct RestartForm {
    service: String,
}

pub async fn restart_service(
    state: &AppState,
    p: &Principal,
    service: &str,
) -> Result<String, AppError> {
    if !["engine", "console"].contains(&service) {
        return Err(AppError::BadRequest(format!(
            "no service named '{service}'"
        )));
    }
    let (actor, source, svc) = (p.actor(), p.source.clone(), service.to_string());
    // Audited before asking: restarting the console ends this very request's process.
    state
        .db(move |s| {
            s.audit.append(
                &actor,
                &source,
                "service.restart",
                &svc,
                &serde_json::json!({}),
            )?;
            Ok(())
        })
        .await?;
    match state
        .supervisor(sup::Request::Restart {
            child: service.to_string(),
        })
        .await
        .map_err(AppError::Unavailable)?
    {
        sup::Response::Ok { message } => Ok(format!("{message}.")),
        sup::Response::Error { message } => Err(AppError::BadRequest(message)),
        sup::Response::Status(_) | sup::Response::Paired { .. } => {
            Err(AppError::internal("unexpected reply"))
        }
    }
}

pub async fn restart(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<RestartForm>,
) -> Result<Response, AppError> {
    let msg = restart_service(&state, &p, &f.service).await?;
    flash(&state, &p, msg).await?;
    Ok(Redirect::to("/system#services").into_response())
}

pub async fn certificate(
    State(state): State<AppState>,
    p: Principal,
    mp: Multipart,
) -> Result<Response, AppError> {
    let u = super::read_cert_upload(mp).await?;
    let hosts = state.host_policy().await?.certificate_names();
    let warnings =
        super::console_cert_warnings(&super::cert_info_pem(u.cert.as_bytes()), &hosts, now_unix());
    let refuse = |problems: Vec<Problem>| Submitted {
        form: "console-cert".into(),
        raw: Default::default(),
        problems,
    };
    // A certificate that cannot be installed at all says so first.
    if let Err(msg) = super::validate_pair(&u.cert, &u.key) {
        return show(&state, &p, Some(refuse(vec![Problem::new("", msg)]))).await;
    }
    if !warnings.is_empty() && !u.confirm {
        let mut problems: Vec<Problem> = warnings.iter().map(|w| Problem::new("", w)).collect();
        problems.push(Problem::new(
            "",
            "Nothing was installed. To install it anyway, choose the files again and tick \"Install even with the warnings above\".",
        ));
        return show(&state, &p, Some(refuse(problems))).await;
    }
    match super::install_certificate(&state, &p, "console", u.cert, u.key).await {
        Ok(msg) => {
            let msg = if warnings.is_empty() {
                msg
            } else {
                format!("{msg} Warning: {}", warnings.join(" "))
            };
            flash(&state, &p, msg).await?;
            Ok(Redirect::to("/system#certificate").into_response())
        }
        Err(AppError::BadRequest(msg)) => {
            show(&state, &p, Some(refuse(vec![Problem::new("", msg)]))).await
        }
        Err(e) => Err(e),
    }
}
