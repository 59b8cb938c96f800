//! Protection: the settings of the inbound checks — antivirus (`[antivirus]`, with the state
//! of the signature databases and of clamd), attachment rules (`[attachments]`), sender
//! authentication (`[authentication]`), spam scoring (`[spam]`, with what the Bayes
//! classifier has learned), and the recipients' quarantine digest (`[digest]`).
//!
//! Each section is one form saved as one configuration revision, exactly like the mail-flow
//! forms (`forms::edit_config`: the revision the page was drawn from, validated as a whole,
//! audited, the engine asked to reload). Signature files are uploaded here too (or installed
//! with `palisade av update`): `DIR/clamav` is writable by the `palisade` group, the console
//! checks each file as the CLI does (`clamav::inspect`), installs it beside and renamed, audits
//! `antivirus.signatures` and asks clamd to `RELOAD`.

use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use palisade_store::config::{
    AttachmentAction, DmarcQuarantineAction, DmarcRejectAction, Dnsbl, DnsblKind, InfectedAction,
    UnscannableAction,
};
use palisade_store::{Config, Problem, clamav};

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render_status};
use crate::forms::{
    Choices, Raw, checked, choose, commit_edit, flash, get, parse_strings, revision, select,
    set_num,
};
use crate::state::AppState;
use crate::view::{Field, FormView, Page, Submitted, fmt_duration, fmt_size, lines};

const MIB: u64 = 1024 * 1024;

/// One installed signature database, as the page shows it.
struct DatabaseRow {
    name: String,
    kind: &'static str,
    signatures: u64,
    size: String,
    age: String,
}

/// What the page knows about the antivirus outside the configuration.
struct AvStatus {
    databases: Vec<DatabaseRow>,
    /// Age of the newest signatures, when there are any.
    newest_age: Option<String>,
    stale: bool,
    clamd_address: String,
    /// clamd's `VERSION` answer, or why there is none.
    clamd: Result<String, String>,
    /// Whether a mirror or custom URL is configured, and the last freshclam run.
    fetches: bool,
    last_update: Option<(String, bool, String)>,
}

#[derive(Template)]
#[template(path = "protection.html")]
struct ProtectionPage {
    page: Page,
    editable: bool,
    revision: i64,
    av: AvStatus,
    stale_days: i64,
    antivirus: FormView,
    attachments: FormView,
    authentication: FormView,
    spam: FormView,
    /// What `bayes.db` holds, or why it could not be read.
    bayes: Result<palisade_store::bayes::Totals, String>,
    digest: FormView,
    /// Why the last signature upload was refused.
    upload_error: Option<String>,
    upload_limit: String,
}

const INFECTED: Choices<InfectedAction> = &[
    (
        "reject",
        "Reject (554 5.7.1 during the SMTP session)",
        InfectedAction::Reject,
    ),
    ("quarantine", "Quarantine", InfectedAction::Quarantine),
];

const UNSCANNABLE: Choices<UnscannableAction> = &[
    (
        "tempfail",
        "Defer (451: the sender retries later)",
        UnscannableAction::Tempfail,
    ),
    ("quarantine", "Quarantine", UnscannableAction::Quarantine),
    ("reject", "Reject (554)", UnscannableAction::Reject),
    (
        "deliver",
        "Deliver with an X-Palisade-Antivirus header",
        UnscannableAction::Deliver,
    ),
];

const ATTACHMENT: Choices<AttachmentAction> = &[
    ("allow", "Allow (recorded only)", AttachmentAction::Allow),
    (
        "block",
        "Block (554 5.7.1 during the SMTP session)",
        AttachmentAction::Block,
    ),
    (
        "quarantine",
        "Quarantine the message",
        AttachmentAction::Quarantine,
    ),
    (
        "strip",
        "Strip the attachment (original kept in quarantine)",
        AttachmentAction::Strip,
    ),
];

const DMARC_REJECT: Choices<DmarcRejectAction> = &[
    (
        "reject",
        "Reject (550 5.7.1 during the SMTP session)",
        DmarcRejectAction::Reject,
    ),
    ("quarantine", "Quarantine", DmarcRejectAction::Quarantine),
    (
        "monitor",
        "Monitor (record only)",
        DmarcRejectAction::Monitor,
    ),
];

const DMARC_QUARANTINE: Choices<DmarcQuarantineAction> = &[
    (
        "quarantine",
        "Quarantine",
        DmarcQuarantineAction::Quarantine,
    ),
    (
        "monitor",
        "Monitor (record only)",
        DmarcQuarantineAction::Monitor,
    ),
];

/// The attachment categories: form name (= configuration key) and label.
const CATEGORIES: &[(&str, &str)] = &[
    (
        "executable",
        "Programs (PE, ELF, Mach-O, MSI; also inside archives)",
    ),
    (
        "script",
        "Scripts and shortcuts (by name: .js, .vbs, .ps1, .lnk, …)",
    ),
    ("macro_document", "Office documents with macros"),
    ("disk_image", "Disk images (ISO, UDF, VHD, VHDX, DMG)"),
    ("encrypted_archive", "Encrypted archives"),
    (
        "double_extension",
        "Disguised names (invoice.pdf.exe, right-to-left overrides)",
    ),
];

fn category<'a>(
    a: &'a mut palisade_store::config::Attachments,
    name: &str,
) -> &'a mut AttachmentAction {
    match name {
        "executable" => &mut a.executable,
        "script" => &mut a.script,
        "macro_document" => &mut a.macro_document,
        "disk_image" => &mut a.disk_image,
        "encrypted_archive" => &mut a.encrypted_archive,
        _ => &mut a.double_extension,
    }
}

fn antivirus_form(cfg: &Config) -> FormView {
    let av = &cfg.antivirus;
    FormView::new("antivirus", "/protection/antivirus", "", "Save antivirus settings")
        .field(
            Field::checkbox("enabled", "Scan every message with clamd", av.enabled)
                .path("antivirus.enabled")
                .help("With scanning on and clamd unreachable, mail is deferred (451), never passed unscanned."),
        )
        .field(
            Field::new("clamd", "clamd address", "text", &av.clamd)
                .path("antivirus.clamd")
                .help("unix:/path/to/clamd.sock, or host:port of clamd's TCP socket."),
        )
        .field(select(
            "infected",
            "A message with a virus",
            INFECTED,
            &av.infected,
            "antivirus.infected",
        ))
        .field(
            select(
                "unscannable",
                "A message clamd could not fully scan",
                UNSCANNABLE,
                &av.unscannable,
                "antivirus.unscannable",
            )
            .help("Larger than the limit below, refused by clamd for a size or depth limit, or an encrypted archive."),
        )
        .field(
            Field::new(
                "max_scan_mib",
                "Largest message or part scanned (MiB)",
                "number",
                (av.max_scan_bytes / MIB).to_string(),
            )
            .path("antivirus.max_scan_bytes")
            .help("Keep it at or below clamd's StreamMaxLength (25 MiB by default)."),
        )
        .field(
            Field::checkbox(
                "scan_parts",
                "Also scan each attachment as Palisade decoded it",
                av.scan_parts,
            )
            .path("antivirus.scan_parts"),
        )
        .field(
            Field::new("mirror", "Private signature mirror (freshclam)", "text", &av.mirror)
                .path("antivirus.mirror")
                .help("http(s)://host[:port][/path] of a mirror of ClamAV's official databases on your network (e.g. cvdupdate). Empty: the official databases are uploaded instead."),
        )
        .field(
            Field::new("custom_urls", "Further signature files to fetch", "textarea", lines(&av.custom_urls))
                .path("antivirus.custom_urls")
                .rows(3)
                .help("One http(s) address per line, each ending in a database file name (hospital.ndb)."),
        )
        .field(
            Field::new(
                "update_interval_minutes",
                "Fetch every (minutes)",
                "number",
                av.update_interval_minutes.to_string(),
            )
            .path("antivirus.update_interval_minutes")
            .help("15 to 10080; 0: only when asked (Fetch now, or palisade av fetch)."),
        )
}

fn attachments_form(cfg: &Config) -> FormView {
    let a = &cfg.attachments;
    let mut form = FormView::new(
        "attachments",
        "/protection/attachments",
        "",
        "Save attachment rules",
    )
    .intro("Attachments are recognised by what they are (their content), not by their declared type; only scripts, which have no recognisable content, are recognised by name.")
    .field(
        Field::checkbox("enabled", "Apply attachment rules", a.enabled)
            .path("attachments.enabled"),
    );
    let mut a = a.clone();
    for (name, label) in CATEGORIES {
        let current = *category(&mut a, name);
        form = form.field(select(
            name,
            label,
            ATTACHMENT,
            &current,
            &format!("attachments.{name}"),
        ));
    }
    form.field(
        Field::new(
            "script_extensions",
            "Script file name extensions",
            "textarea",
            a.script_extensions.join(" "),
        )
        .path("attachments.script_extensions")
        .rows(3)
        .help(
            "Without the dot, separated by spaces or commas. This list replaces the built-in one.",
        ),
    )
}

fn authentication_form(cfg: &Config) -> FormView {
    let a = &cfg.authentication;
    FormView::new(
        "authentication",
        "/protection/authentication",
        "",
        "Save authentication settings",
    )
    .field(
        Field::checkbox("enabled", "Check SPF, DKIM, DMARC and ARC of inbound mail", a.enabled)
            .path("authentication.enabled")
            .help("Mail from trusted networks and authenticated senders is not checked. A DNS failure is recorded, never held against the message."),
    )
    .field(select(
        "dmarc_reject",
        "DMARC failure where the sender's domain publishes p=reject",
        DMARC_REJECT,
        &a.dmarc_reject,
        "authentication.dmarc_reject",
    ))
    .field(select(
        "dmarc_quarantine",
        "DMARC failure where the sender's domain publishes p=quarantine",
        DMARC_QUARANTINE,
        &a.dmarc_quarantine,
        "authentication.dmarc_quarantine",
    ))
    .field(
        Field::new(
            "dmarc_overrides",
            "Domains whose DMARC failures are only recorded",
            "textarea",
            lines(&a.dmarc_overrides),
        )
        .path("authentication.dmarc_overrides")
        .rows(4)
        .help("One domain per line; its subdomains are included. For senders known to break their own DMARC (mailing lists, forwarders)."),
    )
    .field(
        Field::new(
            "trusted_arc_sealers",
            "Forwarders trusted to vouch for DMARC (ARC sealers)",
            "textarea",
            lines(&a.trusted_arc_sealers),
        )
        .path("authentication.trusted_arc_sealers")
        .rows(3)
        .help("One sealing domain per line (the d= of their ARC-Seal), exactly. A DMARC failure is only recorded when the message's ARC chain verifies, its newest seal is one of these, and that hop saw dmarc=pass."),
    )
    .field(
        Field::new(
            "arc_seal_domain",
            "Seal inbound mail with ARC as this domain",
            "text",
            a.arc_seal.as_ref().map(|s| s.domain.clone()).unwrap_or_default(),
        )
        .path("authentication.arc_seal.domain")
        .help("Empty: not sealed. Sealed, the mail servers behind the appliance (Exchange, Microsoft 365 with this domain as a trusted ARC sealer) can rely on the results recorded here even after the appliance changed the message."),
    )
    .field(
        Field::new(
            "arc_seal_selector",
            "ARC sealing key (selector)",
            "text",
            a.arc_seal.as_ref().map(|s| s.selector.clone()).unwrap_or_default(),
        )
        .path("authentication.arc_seal.selector")
        .help("A DKIM key of that domain (DKIM signing page); its TXT record must be published, as for signing."),
    )
}

fn spam_form(cfg: &Config) -> FormView {
    let s = &cfg.spam;
    let lists: Vec<String> = s
        .dnsbl
        .iter()
        .map(|z| {
            let kind = match z.kind {
                DnsblKind::Ip => "ip",
                DnsblKind::Domain => "domain",
            };
            let answers: Vec<String> = z.answers.iter().map(|a| a.to_string()).collect();
            format!("{} {kind} {} {}", z.zone, z.weight, answers.join(" "))
                .trim_end()
                .to_string()
        })
        .collect();
    let weights: Vec<String> = s.weights.iter().map(|(k, v)| format!("{k} {v}")).collect();
    FormView::new("spam", "/protection/spam", "", "Save spam settings")
        .field(
            Field::checkbox("enabled", "Score inbound mail for spam", s.enabled)
                .path("spam.enabled")
                .help("One score from explained rules (header and HELO sanity, links, authentication results, DNS lists) and the Bayes classifier. Every rule that applied is shown with its weight in message tracking."),
        )
        .field(
            Field::new("add_header", "Mark with X-Spam-Flag / X-Spam-Status from score", "text", s.add_header.to_string())
                .path("spam.add_header"),
        )
        .field(
            Field::new("tag_subject", "Also tag the subject from score", "text", s.tag_subject.to_string())
                .path("spam.tag_subject"),
        )
        .field(
            Field::new("subject_tag", "Subject tag", "text", s.subject_tag.clone())
                .path("spam.subject_tag"),
        )
        .field(
            Field::new("quarantine", "Quarantine from score", "text", s.quarantine.to_string())
                .path("spam.quarantine"),
        )
        .field(
            Field::new("reject", "Reject during the SMTP session (550) from score", "text", s.reject.to_string())
                .path("spam.reject")
                .help("A threshold above the next one never applies; a rejected message is not kept and no bounce is sent."),
        )
        .field(
            Field::checkbox("outbound", "Also score outbound mail (trusted networks, authenticated users)", s.outbound)
                .path("spam.outbound"),
        )
        .field(
            Field::checkbox("bayes", "Use the Bayes classifier", s.bayes)
                .path("spam.bayes")
                .help("Trained from the quarantine (\"Learn as spam\", \"Not spam\") and with palisade learn --spam|--ham FILE|DIR."),
        )
        .field(
            Field::new("bayes_min_spam", "Spam messages learned before Bayes scores", "number", s.bayes_min_spam.to_string())
                .path("spam.bayes_min_spam"),
        )
        .field(
            Field::new("bayes_min_ham", "Wanted messages learned before Bayes scores", "number", s.bayes_min_ham.to_string())
                .path("spam.bayes_min_ham"),
        )
        .field(
            Field::new("allow_senders", "Senders never scored as spam", "textarea", lines(&s.allow_senders))
                .path("spam.allow_senders")
                .rows(3)
                .help("One per line: an address, @domain, domain, or *.domain (with subdomains)."),
        )
        .field(
            Field::new("block_senders", "Senders always scored as spam", "textarea", lines(&s.block_senders))
                .path("spam.block_senders")
                .rows(3),
        )
        .field(
            Field::new("dnsbl", "DNS lists", "textarea", lists.join("\n"))
                .path("spam.dnsbl")
                .rows(4)
                .help("One per line: ZONE ip|domain WEIGHT [ANSWER…], e.g. zen.spamhaus.org ip 3.5 127.0.0.2 127.0.0.3. A negative weight makes an allowlist. ip: the client's address; domain: the registered domains of links and of the sender."),
        )
        .field(
            Field::new("weights", "Rule weights", "textarea", weights.join("\n"))
                .path("spam.weights")
                .rows(3)
                .help("One per line: RULE WEIGHT, replacing the built-in weight (0 turns the rule off), e.g. RDNS_NONE 0.5."),
        )
}

/// Learned message counts of `bayes.db` (at most one read).
async fn bayes_totals(state: &AppState) -> Result<palisade_store::bayes::Totals, String> {
    let path = state.data().bayes_db();
    tokio::task::spawn_blocking(move || {
        if !path.exists() {
            return Ok(Default::default());
        }
        palisade_store::bayes::Bayes::open(&path)
            .and_then(|b| b.totals())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A decimal score; `None` (with a problem at `path`) when it is not one.
fn parse_score(text: &str, path: &str, problems: &mut Vec<Problem>) -> Option<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        _ => {
            problems.push(Problem::new(
                path,
                format!("'{}' is not a number such as 5 or 6.5", text.trim()),
            ));
            None
        }
    }
}

/// The DNS list lines of the form.
fn parse_dnsbl(text: &str, problems: &mut Vec<Problem>) -> Vec<Dnsbl> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let kind = match words.get(1).copied() {
            Some("ip") => Some(DnsblKind::Ip),
            Some("domain") => Some(DnsblKind::Domain),
            _ => None,
        };
        let weight = words.get(2).and_then(|w| w.parse::<f64>().ok());
        let answers: Option<Vec<std::net::Ipv4Addr>> =
            words.iter().skip(3).map(|a| a.parse().ok()).collect();
        match (kind, weight, answers) {
            (Some(kind), Some(weight), Some(answers)) => out.push(Dnsbl {
                zone: words[0].trim_end_matches('.').to_ascii_lowercase(),
                kind,
                weight,
                answers,
            }),
            _ => problems.push(Problem::new(
                "spam.dnsbl",
                format!("'{line}' is not ZONE ip|domain WEIGHT [ANSWER…]"),
            )),
        }
    }
    out
}

fn digest_form(cfg: &Config) -> FormView {
    let d = &cfg.digest;
    // What the empty fields stand for.
    let defaults = Config {
        digest: Default::default(),
        ..cfg.clone()
    };
    FormView::new(
        "digest",
        "/protection/digest",
        "",
        "Save digest settings",
    )
    .intro("Once a day each recipient in your domains with newly held mail gets a list of it, with a link per message that releases it to them (no login; the link is signed, expires and works once). Mail held by the checks excluded below is never offered.")
    .field(
        Field::checkbox("enabled", "Send quarantine digests to recipients", d.enabled)
            .path("digest.enabled"),
    )
    .field(
        Field::new("hour", "Hour it is sent (UTC, 0-23)", "number", d.hour.to_string())
            .path("digest.hour"),
    )
    .field(
        Field::new("from", "From address", "text", &d.from)
            .path("digest.from")
            .help(&format!("Empty: {}.", defaults.digest_from())),
    )
    .field(
        Field::new("link_base_url", "Console address recipients reach", "text", &d.link_base_url)
            .path("digest.link_base_url")
            .help(&format!("https://host[:port]. Empty: {}. Its host must be one of the console's names.", defaults.digest_link_base())),
    )
    .field(
        Field::new("link_valid_hours", "Links work for (hours)", "number", d.link_valid_hours.to_string())
            .path("digest.link_valid_hours"),
    )
    .field(
        Field::new("max_entries", "Messages listed in one digest", "number", d.max_entries.to_string())
            .path("digest.max_entries"),
    )
    .field(
        Field::new("domains", "Only recipients in these domains", "textarea", lines(&d.domains))
            .path("digest.domains")
            .rows(3)
            .help("One inbound domain per line. Empty: all of them."),
    )
    .field(
        Field::new("exclude_checks", "Never offer mail held by these checks", "textarea", lines(&d.exclude_checks))
            .path("digest.exclude_checks")
            .rows(3)
            .help("One check name per line (antivirus, attachments, mime, rules, authentication)."),
    )
}

/// The signature databases in `DIR/clamav` and clamd's `VERSION` (at most 2 s).
async fn av_status(state: &AppState, cfg: &Config) -> AvStatus {
    let dir = clamav::directory(state.data());
    let address = cfg.antivirus.address();
    let clamd_address = cfg.antivirus.clamd.clone();
    let (dbs, clamd) = tokio::task::spawn_blocking(move || {
        let dbs = clamav::installed(&dir);
        let clamd =
            address.and_then(|a| clamav::clamd_command(&a, "VERSION", Duration::from_secs(2)));
        (dbs, clamd)
    })
    .await
    .unwrap_or_else(|e| (Vec::new(), Err(format!("could not ask clamd: {e}"))));
    let now = palisade_store::now_unix();
    let age = |t: i64| fmt_duration(now.saturating_sub(t).max(0) as u64);
    let newest = clamav::newest(&dbs);
    AvStatus {
        databases: dbs
            .iter()
            .map(|d| DatabaseRow {
                name: d.name.clone(),
                kind: d.kind,
                signatures: d.signatures,
                size: fmt_size(d.bytes),
                age: d.built.map(age).unwrap_or_else(|| "—".into()),
            })
            .collect(),
        newest_age: newest.map(age),
        stale: newest.is_none_or(|t| now - t > clamav::STALE_AFTER_SECS),
        clamd_address,
        clamd,
        fetches: cfg.antivirus.fetches(),
        last_update: clamav::last_update(state.data())
            .map(|u| (format!("{} ago", age(u.at)), u.ok, u.message)),
    }
}

/// Runs freshclam now, through the engine (which then asks clamd to reload).
pub async fn fetch(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let msg = match state
        .engine(palisade_control::engine::ControlRequest::AvUpdate {
            actor: p.actor(),
            source: p.source.clone(),
        })
        .await
    {
        Ok(r) if r.ok => format!("Signatures fetched: {}.", r.message),
        Ok(r) => format!("Fetching signatures failed: {}", r.message),
        Err(e) => format!("Fetching signatures needs the engine: {e}"),
    };
    flash(&state, &p, msg).await?;
    Ok(Redirect::to("/protection#av-status").into_response())
}

async fn show(
    state: &AppState,
    p: &Principal,
    sub: Option<Submitted>,
) -> Result<Response, AppError> {
    show_with(state, p, sub, None).await
}

async fn show_with(
    state: &AppState,
    p: &Principal,
    sub: Option<Submitted>,
    upload_error: Option<String>,
) -> Result<Response, AppError> {
    let page = Page::load(state, p, "protection", "Protection").await?;
    let rev = state.current_revision().await?;
    let editable = allows(p.user.role, Perm::EditConfig);
    let fin = |f: FormView| {
        f.hidden("revision", rev.id)
            .editable(editable)
            .finish(sub.as_ref())
    };
    let cfg = &rev.config;
    let body = ProtectionPage {
        page,
        editable,
        revision: rev.id,
        av: av_status(state, cfg).await,
        stale_days: clamav::STALE_AFTER_SECS / 86400,
        antivirus: fin(antivirus_form(cfg)),
        attachments: fin(attachments_form(cfg)),
        authentication: fin(authentication_form(cfg)),
        spam: fin(spam_form(cfg)),
        bayes: bayes_totals(state).await,
        digest: fin(digest_form(cfg)),
        upload_error: upload_error.clone(),
        upload_limit: fmt_size(crate::auth::SIGNATURE_UPLOAD_LIMIT as u64),
    };
    let status = if sub.is_some() || upload_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render_status(status, &body)
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    show(&state, &p, None).await
}

/// Saves one form (`form` is its id and its section's anchor), then redirects back with a
/// message, or shows the page again with the problems by their fields and the values typed.
async fn save<F>(
    state: &AppState,
    p: &Principal,
    raw: Raw,
    form: &str,
    edit: F,
) -> Result<Response, AppError>
where
    F: FnOnce(&mut Config, &Raw) -> (String, Vec<Problem>) + Send + 'static,
{
    let rev = revision(&raw)?;
    let raw2 = raw.clone();
    let back = format!("/protection#{form}");
    match commit_edit(state, p, rev, &back, move |cfg| edit(cfg, &raw2)).await? {
        Ok(done) => Ok(done),
        Err(problems) => {
            let sub = Submitted {
                form: form.into(),
                raw,
                problems,
            };
            show(state, p, Some(sub)).await
        }
    }
}

/// At most this many files in one upload.
const MAX_UPLOAD_FILES: usize = 16;

/// Installs uploaded signature databases (all are checked before any is installed), audits
/// each, and asks clamd to reload them.
pub async fn signatures(
    State(state): State<AppState>,
    p: Principal,
    mut mp: axum::extract::Multipart,
) -> Result<Response, AppError> {
    let mut files: Vec<(String, axum::body::Bytes)> = Vec::new();
    let refuse = |msg: String| async { show_with(&state, &p, None, Some(msg)).await };
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return refuse(format!("The upload was incomplete: {e}")).await,
        };
        if field.name() != Some("files") {
            continue;
        }
        let name = field.file_name().unwrap_or_default().to_string();
        let content = match field.bytes().await {
            Ok(b) => b,
            Err(e) => return refuse(format!("The upload was incomplete: {e}")).await,
        };
        if name.is_empty() && content.is_empty() {
            continue;
        }
        if files.len() == MAX_UPLOAD_FILES {
            return refuse(format!("At most {MAX_UPLOAD_FILES} files at once.")).await;
        }
        files.push((name, content));
    }
    if files.is_empty() {
        return refuse("Choose one or more signature files first.".into()).await;
    }
    let data = state.data().clone();
    let dir = clamav::directory(&data);
    let address = state
        .db(|s| Ok(s.config.current()?.map(|r| r.config.antivirus.address())))
        .await?;
    let (actor, source) = (p.actor(), p.source.clone());
    let installed =
        tokio::task::spawn_blocking(move || -> Result<(Vec<String>, String), String> {
            for (name, content) in &files {
                clamav::inspect(name, content)?;
            }
            let mut audit =
                palisade_store::AuditLog::open(&data.audit_db()).map_err(|e| e.to_string())?;
            let mut done = Vec::new();
            for (name, content) in &files {
                let db = clamav::install(&dir, name, content)?;
                audit
                    .append(
                        &actor,
                        &source,
                        "antivirus.signatures",
                        name,
                        &serde_json::json!({
                            "bytes": db.bytes, "kind": db.kind, "version": db.version,
                            "signatures": db.signatures,
                        }),
                    )
                    .map_err(|e| e.to_string())?;
                done.push(format!(
                    "{name} ({} signature{}{})",
                    db.signatures,
                    if db.signatures == 1 { "" } else { "s" },
                    db.version
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                ));
            }
            let clamd = match address {
                Some(Ok(a)) => match clamav::clamd_command(&a, "RELOAD", Duration::from_secs(10)) {
                    Ok(r) if r.starts_with("RELOADING") => "clamd is loading them now".to_string(),
                    Ok(r) => format!("clamd answered the reload with: {r}"),
                    Err(e) => format!(
                        "clamd could not be asked to reload ({e}); it loads them when it starts"
                    ),
                },
                Some(Err(e)) => {
                    format!("clamd's address is wrong ({e}); it loads them when it starts")
                }
                None => "there is no configuration naming clamd".to_string(),
            };
            Ok((done, clamd))
        })
        .await
        .map_err(|e| AppError::internal(e.to_string()))?;
    match installed {
        Ok((done, clamd)) => {
            flash(
                &state,
                &p,
                format!("Installed {}; {clamd}.", done.join(", ")),
            )
            .await?;
            Ok(Redirect::to("/protection#av-status").into_response())
        }
        Err(e) => refuse(e).await,
    }
}

pub async fn antivirus(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "antivirus", |cfg, raw| {
        let mut pr = Vec::new();
        let av = &mut cfg.antivirus;
        av.enabled = checked(raw, "enabled");
        av.clamd = get(raw, "clamd").trim().to_string();
        av.infected = choose(
            INFECTED,
            raw,
            "infected",
            "antivirus.infected",
            av.infected,
            &mut pr,
        );
        av.unscannable = choose(
            UNSCANNABLE,
            raw,
            "unscannable",
            "antivirus.unscannable",
            av.unscannable,
            &mut pr,
        );
        // The page shows whole MiB: the same number sent back keeps a size that is not one.
        if let Some(mib) = crate::forms::parse_num::<u64>(
            get(raw, "max_scan_mib"),
            "antivirus.max_scan_bytes",
            &mut pr,
        ) && mib != av.max_scan_bytes / MIB
        {
            av.max_scan_bytes = mib.saturating_mul(MIB);
        }
        av.scan_parts = checked(raw, "scan_parts");
        if raw.contains_key("mirror") {
            av.mirror = get(raw, "mirror").trim().to_string();
        }
        if raw.contains_key("custom_urls") {
            av.custom_urls = crate::forms::parse_strings(get(raw, "custom_urls"));
        }
        // A form from before the field existed keeps the interval.
        if raw.contains_key("update_interval_minutes")
            && let Some(m) = crate::forms::parse_num::<u32>(
                get(raw, "update_interval_minutes"),
                "antivirus.update_interval_minutes",
                &mut pr,
            )
        {
            av.update_interval_minutes = m;
        }
        ("antivirus settings changed".into(), pr)
    })
    .await
}

pub async fn attachments(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "attachments", |cfg, raw| {
        let mut pr = Vec::new();
        let a = &mut cfg.attachments;
        a.enabled = checked(raw, "enabled");
        for (name, _) in CATEGORIES {
            let slot = category(a, name);
            *slot = choose(
                ATTACHMENT,
                raw,
                name,
                &format!("attachments.{name}"),
                *slot,
                &mut pr,
            );
        }
        a.script_extensions = get(raw, "script_extensions")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        ("attachment rules changed".into(), pr)
    })
    .await
}

pub async fn authentication(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "authentication", |cfg, raw| {
        let mut pr = Vec::new();
        let a = &mut cfg.authentication;
        a.enabled = checked(raw, "enabled");
        a.dmarc_reject = choose(
            DMARC_REJECT,
            raw,
            "dmarc_reject",
            "authentication.dmarc_reject",
            a.dmarc_reject,
            &mut pr,
        );
        a.dmarc_quarantine = choose(
            DMARC_QUARANTINE,
            raw,
            "dmarc_quarantine",
            "authentication.dmarc_quarantine",
            a.dmarc_quarantine,
            &mut pr,
        );
        // As the configuration keeps domain names: lower case, no trailing dot.
        a.dmarc_overrides = crate::forms::parse_strings(get(raw, "dmarc_overrides"))
            .into_iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        a.trusted_arc_sealers = crate::forms::parse_strings(get(raw, "trusted_arc_sealers"))
            .into_iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let (domain, selector) = (
            get(raw, "arc_seal_domain")
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            get(raw, "arc_seal_selector").trim().to_ascii_lowercase(),
        );
        a.arc_seal = match (domain.is_empty(), selector.is_empty()) {
            (true, true) => None,
            (false, true) => {
                pr.push(Problem::new(
                    "authentication.arc_seal.selector",
                    "Choose the key (selector) to seal with, or leave the domain empty.",
                ));
                None
            }
            (true, false) => {
                pr.push(Problem::new(
                    "authentication.arc_seal.domain",
                    "Enter the sealing domain, or leave the selector empty.",
                ));
                None
            }
            (false, false) => Some(palisade_store::config::ArcSeal { domain, selector }),
        };
        ("authentication settings changed".into(), pr)
    })
    .await
}

pub async fn spam(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "spam", |cfg, raw| {
        let mut pr = Vec::new();
        let s = &mut cfg.spam;
        s.enabled = checked(raw, "enabled");
        s.outbound = checked(raw, "outbound");
        s.bayes = checked(raw, "bayes");
        for (name, slot) in [
            ("add_header", &mut s.add_header),
            ("tag_subject", &mut s.tag_subject),
            ("quarantine", &mut s.quarantine),
            ("reject", &mut s.reject),
        ] {
            if let Some(v) = parse_score(get(raw, name), &format!("spam.{name}"), &mut pr) {
                *slot = v;
            }
        }
        s.subject_tag = get(raw, "subject_tag").trim().to_string();
        if let Some(n) = crate::forms::parse_num::<u64>(
            get(raw, "bayes_min_spam"),
            "spam.bayes_min_spam",
            &mut pr,
        ) {
            s.bayes_min_spam = n;
        }
        if let Some(n) =
            crate::forms::parse_num::<u64>(get(raw, "bayes_min_ham"), "spam.bayes_min_ham", &mut pr)
        {
            s.bayes_min_ham = n;
        }
        s.allow_senders = crate::forms::parse_strings(get(raw, "allow_senders"));
        s.block_senders = crate::forms::parse_strings(get(raw, "block_senders"));
        s.dnsbl = parse_dnsbl(get(raw, "dnsbl"), &mut pr);
        let mut weights = std::collections::BTreeMap::new();
        for line in get(raw, "weights")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                [rule, w] if w.parse::<f64>().is_ok_and(f64::is_finite) => {
                    weights.insert(rule.to_ascii_uppercase(), w.parse::<f64>().unwrap_or(0.0));
                }
                _ => pr.push(Problem::new(
                    "spam.weights",
                    format!("'{line}' is not RULE WEIGHT"),
                )),
            }
        }
        s.weights = weights;
        ("spam settings changed".into(), pr)
    })
    .await
}

pub async fn digest(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "digest", |cfg, raw| {
        let mut pr = Vec::new();
        let d = &mut cfg.digest;
        d.enabled = checked(raw, "enabled");
        set_num(&mut d.hour, raw, "hour", "digest.hour", &mut pr);
        d.from = get(raw, "from").trim().to_string();
        d.link_base_url = get(raw, "link_base_url").trim().to_string();
        set_num(
            &mut d.link_valid_hours,
            raw,
            "link_valid_hours",
            "digest.link_valid_hours",
            &mut pr,
        );
        set_num(
            &mut d.max_entries,
            raw,
            "max_entries",
            "digest.max_entries",
            &mut pr,
        );
        d.domains = parse_strings(get(raw, "domains"))
            .into_iter()
            .map(|x| x.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        d.exclude_checks = parse_strings(get(raw, "exclude_checks"));
        ("quarantine digest settings changed".into(), pr)
    })
    .await
}
