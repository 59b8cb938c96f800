//! Protection → DKIM signing: the organisation's signing keys, the TXT record each needs in
//! DNS, whether DNS publishes it, and which keys sign (`[[dkim.sign]]`).
//!
//! The keys live in `DIR/keys/dkim/`, which only the engine's user can read; the console
//! asks the engine (`DkimKeys`, `DkimGenerate` on its control socket) and never sees a
//! private key. Starting and stopping signing is a configuration edit like every other
//! (a revision, audited, applied by the engine). Rotation is: make a key with a new
//! selector, publish its record, start signing with it once DNS shows it, stop signing with
//! the old one, and remove the old record some days later.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use palisade_control::engine::{ControlRequest, DkimKey};
use palisade_store::Problem;
use palisade_store::config::DkimSign;

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render_status};
use crate::forms::{EditOutcome, Raw, committed_message, edit_config, flash, get, revision};
use crate::state::AppState;
use crate::view::{Field, FormView, Page, Submitted};

/// A key as the page shows it.
struct KeyRow {
    key: DkimKey,
    /// `id` of its table row.
    anchor: String,
    /// The record as zone-file text (quoted strings of at most 250 bytes).
    zone: String,
}

#[derive(Template)]
#[template(path = "dkim.html")]
struct DkimPage {
    page: Page,
    editable: bool,
    revision: i64,
    /// The keys, or why the engine could not be asked.
    keys: Result<Vec<KeyRow>, String>,
    /// The form that makes a key.
    generate: FormView,
}

fn zone_text(record: &str) -> String {
    let parts: Vec<String> = record
        .as_bytes()
        .chunks(250)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    parts.join(" ")
}

fn anchor(k: &DkimKey) -> String {
    format!("key-{}-{}", k.selector, k.domain).replace('.', "-")
}

async fn show(
    state: &AppState,
    p: &Principal,
    sub: Option<Submitted>,
) -> Result<Response, AppError> {
    let page = Page::load(state, p, "protection", "DKIM signing").await?;
    let rev = state.current_revision().await?;
    let keys = match state.engine(ControlRequest::DkimKeys { dns: true }).await {
        Ok(r) if r.ok => Ok(r
            .dkim
            .unwrap_or_default()
            .into_iter()
            .map(|k| KeyRow {
                anchor: anchor(&k),
                zone: k.record.as_deref().map(zone_text).unwrap_or_default(),
                key: k,
            })
            .collect()),
        Ok(r) => Err(r.message),
        Err(e) => Err(e),
    };
    // Suggestions: the signing domains and the domains the appliance accepts mail for.
    let mut domains: Vec<String> = rev
        .config
        .dkim
        .sign
        .iter()
        .map(|s| s.domain.clone())
        .chain(rev.config.domains.iter().map(|d| d.name.clone()))
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    domains.sort();
    domains.dedup();
    let domain_help = if domains.is_empty() {
        "The domain of the From addresses it signs for; its subdomains are signed with it too."
            .to_string()
    } else {
        format!(
            "The domain of the From addresses it signs for; its subdomains are signed with it too. This appliance's domains: {}.",
            domains.join(", ")
        )
    };
    let editable = allows(p.user.role, Perm::EditConfig);
    let generate = FormView::new("generate", "/protection/dkim/generate", "", "Make key")
        .hidden("revision", rev.id)
        .field(
            Field::new("domain", "Domain", "text", "")
                .path("domain")
                .help(&domain_help),
        )
        .field(
            Field::new("algorithm", "Algorithm", "select", "rsa")
                .options(&[
                    ("rsa", "RSA-2048 (rsa-sha256: every receiver verifies it)"),
                    ("ed25519", "Ed25519 (RFC 8463: short; sign with an RSA key as well)"),
                ])
                .path("algorithm"),
        )
        .field(
            Field::new("selector", "Selector (optional)", "text", "")
                .path("selector")
                .help("Letters, digits and hyphens. Empty: pal, the year and month, and r or e (e.g. pal202612r)."),
        )
        .field(
            Field::checkbox("sign", "Sign outbound mail with it at once (only if its record is already in DNS: until it is, receivers cannot verify the signature)", false)
                .path("sign"),
        )
        .editable(editable)
        .finish(sub.as_ref());
    let status = if sub.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render_status(
        status,
        &DkimPage {
            page,
            editable,
            revision: rev.id,
            keys,
            generate,
        },
    )
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    show(&state, &p, None).await
}

/// Makes a key (the engine writes it), and with `sign=yes` starts signing with it at once.
pub async fn generate(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let rev = revision(&raw)?;
    let domain = get(&raw, "domain").trim().to_string();
    let refused = |field: &str, msg: String| Submitted {
        form: "generate".into(),
        raw: raw.clone(),
        problems: vec![Problem::new(field, msg)],
    };
    if domain.is_empty() {
        let sub = refused("domain", "Enter the domain the key signs for.".into());
        return show(&state, &p, Some(sub)).await;
    }
    let algorithm = match get(&raw, "algorithm") {
        "ed25519" => "ed25519",
        _ => "rsa",
    };
    let selector = Some(get(&raw, "selector").trim().to_string()).filter(|s| !s.is_empty());
    let resp = state
        .engine(ControlRequest::DkimGenerate {
            domain,
            selector,
            algorithm: algorithm.into(),
            actor: p.actor(),
            source: p.source.clone(),
        })
        .await
        .map_err(AppError::Unavailable)?;
    if !resp.ok {
        // The engine's reason names what was wrong: the selector, else the domain.
        let field = if resp.message.contains("selector") {
            "selector"
        } else {
            "domain"
        };
        return show(&state, &p, Some(refused(field, resp.message))).await;
    }
    let Some(key) = resp.dkim.and_then(|k| k.into_iter().next()) else {
        return Err(AppError::internal(
            "the engine did not say which key it made",
        ));
    };
    let mut msg = format!(
        "Key {} made ({}). Publish its TXT record below.",
        key.name,
        key.algorithm.as_deref().unwrap_or("?")
    );
    if get(&raw, "sign") == "yes" {
        msg.push(' ');
        msg.push_str(&set_signing(&state, &p, rev, &key.domain, &key.selector, true).await?);
    }
    flash(&state, &p, msg).await?;
    Ok(Redirect::to(&format!("/protection/dkim#{}", anchor(&key))).into_response())
}

/// Starts (`sign=yes`) or stops signing with one key.
pub async fn sign(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let rev = revision(&raw)?;
    let (domain, selector) = (get(&raw, "domain"), get(&raw, "selector"));
    let msg = set_signing(
        &state,
        &p,
        rev,
        domain,
        selector,
        get(&raw, "sign") == "yes",
    )
    .await?;
    flash(&state, &p, msg).await?;
    Ok(Redirect::to("/protection/dkim").into_response())
}

async fn set_signing(
    state: &AppState,
    p: &Principal,
    rev: i64,
    domain: &str,
    selector: &str,
    on: bool,
) -> Result<String, AppError> {
    let (domain, selector) = (
        domain.trim().trim_end_matches('.').to_ascii_lowercase(),
        selector.trim().to_ascii_lowercase(),
    );
    let (d, s) = (domain.clone(), selector.clone());
    let outcome = edit_config(state, p, rev, move |cfg| {
        let same = |k: &DkimSign| {
            k.domain.trim_end_matches('.').eq_ignore_ascii_case(&d)
                && k.selector.eq_ignore_ascii_case(&s)
        };
        if on {
            if !cfg.dkim.sign.iter().any(same) {
                cfg.dkim.sign.push(DkimSign {
                    domain: d.clone(),
                    selector: s.clone(),
                });
            }
            (format!("DKIM: sign {d} with {s}"), vec![])
        } else {
            cfg.dkim.sign.retain(|k| !same(k));
            (format!("DKIM: stop signing {d} with {s}"), vec![])
        }
    })
    .await?;
    Ok(match outcome {
        EditOutcome::Committed { revision, engine } => {
            let what = if on { "Signing" } else { "Stopped signing" };
            format!(
                "{what} {domain}'s outbound mail with {selector}. {}",
                committed_message(revision, &engine)
            )
        }
        EditOutcome::Unchanged => "Nothing changed.".into(),
        EditOutcome::Invalid(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            format!("Not saved: {}", text.join("; "))
        }
    })
}
