//! Mail flow: inbound domains and their internal routes, outbound routing (smarthosts and
//! static routes), trusted networks, limits, listeners, and the SMTP certificate.
//!
//! Each section is its own form carrying the revision it was rendered from; a save edits
//! that revision, so a concurrent change by someone else is a conflict, not a silent undo.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use palisade_store::config::{
    DomainRoute, HostPort, InboundDomain, OutboundTls, StaticRoute, TlsPolicy,
};
use palisade_store::{Config, Problem};

use super::{CertInfo, cert_info_file};
use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render_status};
use crate::forms::{Raw, commit_edit, flash, get, parse_list, revision, set_num};
use crate::state::AppState;
use crate::view::{Field, FormView, Page, Submitted, lines};

struct DomainView {
    name: String,
    summary: String,
    update: FormView,
    remove: FormView,
}

#[derive(Template)]
#[template(path = "mailflow.html")]
struct MailflowPage {
    page: Page,
    editable: bool,
    revision: i64,
    domains: Vec<DomainView>,
    new_domain: FormView,
    routes: Vec<DomainView>,
    new_route: FormView,
    tls_policies: Vec<DomainView>,
    new_tls_policy: FormView,
    outbound: FormView,
    network: FormView,
    limits: FormView,
    listeners: FormView,
    cert: CertInfo,
    cert_form: FormView,
}

const ROUTES: &[(&str, &str)] = &[
    ("smarthosts", "Relay to internal mail servers"),
    ("maildir", "Keep in the appliance's local mailbox"),
];

fn route_str(r: DomainRoute) -> &'static str {
    match r {
        DomainRoute::Maildir => "maildir",
        DomainRoute::Smarthosts => "smarthosts",
    }
}

fn tls_str(t: OutboundTls) -> &'static str {
    match t {
        OutboundTls::Opportunistic => "opportunistic",
        OutboundTls::Required => "required",
        OutboundTls::Verified => "verified",
        OutboundTls::None => "none",
    }
}

const TLS_MODES: &[(&str, &str)] = &[
    (
        "opportunistic",
        "Opportunistic: encrypt when the server offers it",
    ),
    ("required", "Required: defer unless encrypted"),
    (
        "verified",
        "Verified: defer unless encrypted to a certificate that names the server",
    ),
    ("none", "Never (internal hops that cannot)"),
];

fn parse_tls(v: &str, path: &str, p: &mut Vec<Problem>) -> Option<OutboundTls> {
    match v {
        "opportunistic" => Some(OutboundTls::Opportunistic),
        "required" => Some(OutboundTls::Required),
        "verified" => Some(OutboundTls::Verified),
        "none" => Some(OutboundTls::None),
        other => {
            p.push(Problem::new(path, format!("unknown TLS mode '{other}'")));
            None
        }
    }
}

fn tls_policy_form(id: &str, i: usize, t: &TlsPolicy, submit: &str, action: &str) -> FormView {
    FormView::new(id, "/mailflow/tls-policies", "", submit)
        .hidden("index", i)
        .action_value(action)
        .field(
            Field::new("destination", "Destination", "text", &t.destination)
                .path(format!("tls_policy[{i}].destination"))
                .help("A recipient domain (delivered to its MX hosts), a static route's domain, or a smarthost's host name; .example.org covers every subdomain."),
        )
        .field(
            Field::new("mode", "TLS", "select", tls_str(t.mode))
                .options(TLS_MODES)
                .path(format!("tls_policy[{i}].mode")),
        )
        .field(
            Field::new("names", "Certificate names also accepted", "textarea", t.names.join("\n"))
                .path(format!("tls_policy[{i}].names"))
                .rows(2)
                .help("Verified only: names besides the server's own host name, one per line (e.g. the provider hosting the partner's mail)."),
        )
        .field(
            Field::new("ca", "Trusted certificate authorities (PEM)", "textarea", &t.ca)
                .path(format!("tls_policy[{i}].ca"))
                .rows(4)
                .help("Verified only: a partner's private CA, in addition to the public ones of delivery.ca_file."),
        )
}

fn domain_form(id: &str, i: usize, d: &InboundDomain, submit: &str, action: &str) -> FormView {
    FormView::new(id, "/mailflow/domains", "", submit)
        .hidden("index", i)
        .action_value(action)
        .field(
            Field::new("name", "Domain", "text", &d.name)
                .path(format!("domain[{i}].name"))
                .help("Mail for this domain is accepted from anyone on the internet."),
        )
        .field(
            Field::new("route", "Deliver to", "select", route_str(d.route))
                .options(ROUTES)
                .path(format!("domain[{i}].route")),
        )
        .field(
            Field::new(
                "smarthosts",
                "Internal mail servers",
                "textarea",
                lines(&d.smarthosts),
            )
            .path(format!("domain[{i}].smarthosts"))
            .rows(2)
            .help("host or host:port, one per line, tried in order (port 25 if omitted)."),
        )
}

fn route_form(id: &str, i: usize, r: &StaticRoute, submit: &str, action: &str) -> FormView {
    FormView::new(id, "/mailflow/routes", "", submit)
        .hidden("index", i)
        .action_value(action)
        .field(
            Field::new("domain", "Destination domain", "text", &r.domain)
                .path(format!("route[{i}].domain")),
        )
        .field(
            Field::new(
                "smarthosts",
                "Send through",
                "textarea",
                lines(&r.smarthosts),
            )
            .path(format!("route[{i}].smarthosts"))
            .rows(2)
            .help("host or host:port, one per line, tried in order."),
        )
}

fn remove_form(id: &str, action: &str, i: usize, what: &str) -> FormView {
    FormView::new(id, action, "", &format!("Remove {what}"))
        .hidden("index", i)
        .action_value("delete")
        .danger()
}

fn build(
    state: &AppState,
    cfg: &Config,
    revision: i64,
    editable: bool,
    sub: Option<&Submitted>,
    page: Page,
) -> MailflowPage {
    let fin = |f: FormView| {
        f.hidden("revision", revision)
            .editable(editable)
            .finish(sub)
    };
    let domains = cfg
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| DomainView {
            name: d.name.clone(),
            summary: match d.route {
                DomainRoute::Maildir => "local mailbox".into(),
                DomainRoute::Smarthosts => lines(&d.smarthosts).replace('\n', ", "),
            },
            update: fin(domain_form(
                &format!("domain-{i}"),
                i,
                d,
                "Save domain",
                "update",
            )),
            remove: fin(remove_form(
                &format!("domain-{i}-remove"),
                "/mailflow/domains",
                i,
                "domain",
            )),
        })
        .collect();
    let n = cfg.domains.len();
    let new_domain = fin(domain_form(
        "domain-new",
        n,
        &InboundDomain {
            route: DomainRoute::Smarthosts,
            ..Default::default()
        },
        "Add domain",
        "add",
    ));
    let routes = cfg
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| DomainView {
            name: r.domain.clone(),
            summary: lines(&r.smarthosts).replace('\n', ", "),
            update: fin(route_form(
                &format!("route-{i}"),
                i,
                r,
                "Save route",
                "update",
            )),
            remove: fin(remove_form(
                &format!("route-{i}-remove"),
                "/mailflow/routes",
                i,
                "route",
            )),
        })
        .collect();
    let new_route = fin(route_form(
        "route-new",
        cfg.routes.len(),
        &StaticRoute::default(),
        "Add route",
        "add",
    ));
    let tls_policies = cfg
        .tls_policies
        .iter()
        .enumerate()
        .map(|(i, t)| DomainView {
            name: t.destination.clone(),
            summary: match (t.names.is_empty(), t.ca.trim().is_empty()) {
                (true, true) => tls_str(t.mode).to_string(),
                (false, true) => format!("{} (also {})", tls_str(t.mode), t.names.join(", ")),
                (names, false) => format!(
                    "{} with its own CA{}",
                    tls_str(t.mode),
                    if names {
                        String::new()
                    } else {
                        format!(" (also {})", t.names.join(", "))
                    }
                ),
            },
            update: fin(tls_policy_form(
                &format!("tls-policy-{i}"),
                i,
                t,
                "Save TLS policy",
                "update",
            )),
            remove: fin(remove_form(
                &format!("tls-policy-{i}-remove"),
                "/mailflow/tls-policies",
                i,
                "TLS policy",
            )),
        })
        .collect();
    let new_tls_policy = fin(tls_policy_form(
        "tls-policy-new",
        cfg.tls_policies.len(),
        &TlsPolicy::default(),
        "Add TLS policy",
        "add",
    ));
    let d = &cfg.delivery;
    let outbound = fin(FormView::new(
        "outbound",
        "/mailflow/outbound",
        "",
        "Save outbound routing",
    )
    .field(
        Field::new(
            "smarthosts",
            "Smarthosts for all other outbound mail",
            "textarea",
            lines(&cfg.outbound.smarthosts),
        )
        .path("outbound.smarthosts")
        .rows(3)
        .help("Empty: deliver directly to each recipient domain's MX hosts."),
    )
    .field(
        Field::new("tls", "TLS when delivering", "select", tls_str(d.tls))
            .options(TLS_MODES)
            .path("delivery.tls")
            .help("For destinations without a TLS policy of their own (below)."),
    )
    .field(
        Field::new(
            "remote_port",
            "Port for MX delivery",
            "number",
            d.remote_port.to_string(),
        )
        .path("delivery.remote_port"),
    ));
    let network = fin(FormView::new("network", "/mailflow/network", "", "Save trusted networks")
        .field(
            Field::new("trusted_networks", "Trusted networks", "textarea", lines(&cfg.smtp.trusted_networks))
                .path("smtp.trusted_networks")
                .rows(4)
                .help("Clients in these networks (address/prefix, one per line) may send to any domain: your own mail servers. Everything else may only send to the inbound domains."),
        ));
    let s = &cfg.smtp;
    let num = |name: &str, label: &str, v: u64, path: &str| {
        Field::new(name, label, "number", v.to_string()).path(path)
    };
    let limits = fin(
        FormView::new("limits", "/mailflow/limits", "", "Save limits")
            .field(num(
                "max_message_size_mib",
                "Largest message (MiB)",
                s.max_message_size / (1024 * 1024),
                "smtp.max_message_size",
            ))
            .field(num(
                "max_recipients",
                "Recipients per message",
                s.max_recipients.into(),
                "smtp.max_recipients",
            ))
            .field(num(
                "max_connections",
                "Simultaneous connections",
                s.max_connections.into(),
                "smtp.max_connections",
            ))
            .field(num(
                "max_connections_per_ip",
                "Connections per client address",
                s.max_connections_per_ip.into(),
                "smtp.max_connections_per_ip",
            ))
            .field(num(
                "command_timeout_secs",
                "Command timeout (s)",
                s.command_timeout_secs,
                "smtp.command_timeout_secs",
            ))
            .field(num(
                "data_timeout_secs",
                "Message transfer timeout (s)",
                s.data_timeout_secs,
                "smtp.data_timeout_secs",
            ))
            .field(num(
                "min_free_disk_mb",
                "Refuse new mail below this free space (MB)",
                s.min_free_disk_mb,
                "smtp.min_free_disk_mb",
            ))
            .field(num(
                "max_lifetime_hours",
                "Bounce undeliverable mail after (hours)",
                d.max_lifetime_secs / 3600,
                "delivery.max_lifetime_secs",
            ))
            .field(num(
                "retry_initial_secs",
                "First retry after (s)",
                d.retry_initial_secs,
                "delivery.retry_initial_secs",
            ))
            .field(num(
                "retry_max_secs",
                "Longest retry interval (s)",
                d.retry_max_secs,
                "delivery.retry_max_secs",
            ))
            .field(num(
                "max_per_destination",
                "Connections per destination",
                d.max_per_destination.into(),
                "delivery.max_per_destination",
            ))
            .field(num(
                "max_concurrent",
                "Outgoing connections in total",
                d.max_concurrent.into(),
                "delivery.max_concurrent",
            ))
            .field(num(
                "connect_timeout_secs",
                "Connect timeout (s)",
                d.connect_timeout_secs,
                "delivery.connect_timeout_secs",
            ))
            .field(num(
                "delivery_command_timeout_secs",
                "Delivery command timeout (s)",
                d.command_timeout_secs,
                "delivery.command_timeout_secs",
            )),
    );
    let listeners = fin(
        FormView::new("listeners", "/mailflow/listeners", "", "Save listeners")
            .intro("Addresses (address:port, one per line). Changes take effect when the appliance restarts.")
            .field(Field::new("smtp_listen", "SMTP (inbound, port 25)", "textarea", lines(&s.listen)).path("smtp.listen").rows(2))
            .field(Field::new("submission_listen", "Submission (your mail servers, port 587)", "textarea", lines(&s.submission_listen)).path("smtp.submission_listen").rows(2))
            .field(Field::new("console_listen", "This console (HTTPS)", "textarea", lines(&cfg.console.listen)).path("console.listen").rows(2)),
    );
    let cert = cert_info_file(&state.data().resolve(&cfg.tls.cert));
    let cert_form = FormView::new("smtp-cert", "/mailflow/certificate", "", "Install certificate")
        .intro("PEM files: the certificate (with its chain) and its unencrypted private key. They are checked, then installed by the supervisor for the mail engine only.")
        .field(Field::new("cert", "Certificate chain", "file", ""))
        .field(Field::new("key", "Private key", "file", ""))
        .multipart()
        .editable(editable)
        .finish(sub);
    MailflowPage {
        page,
        editable,
        revision,
        domains,
        new_domain,
        routes,
        new_route,
        tls_policies,
        new_tls_policy,
        outbound,
        network,
        limits,
        listeners,
        cert,
        cert_form,
    }
}

async fn show(
    state: &AppState,
    p: &Principal,
    sub: Option<Submitted>,
) -> Result<Response, AppError> {
    let page = Page::load(state, p, "mailflow", "Mail flow").await?;
    let rev = state.current_revision().await?;
    let status = if sub.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let editable = allows(p.user.role, Perm::EditConfig);
    render_status(
        status,
        &build(state, &rev.config, rev.id, editable, sub.as_ref(), page),
    )
}

pub async fn page(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    show(&state, &p, None).await
}

fn index(raw: &Raw) -> Result<usize, AppError> {
    get(raw, "index")
        .parse()
        .map_err(|_| AppError::BadRequest("The form did not say which entry it edits.".into()))
}

/// Saves, then redirects back with a message, or shows the form again with its problems.
async fn save<F>(
    state: &AppState,
    p: &Principal,
    raw: Raw,
    form: String,
    anchor: &str,
    edit: F,
) -> Result<Response, AppError>
where
    F: FnOnce(&mut Config, &Raw) -> (String, Vec<Problem>) + Send + 'static,
{
    let rev = revision(&raw)?;
    let raw2 = raw.clone();
    let back = format!("/mailflow#{anchor}");
    match commit_edit(state, p, rev, &back, move |cfg| edit(cfg, &raw2)).await? {
        Ok(done) => Ok(done),
        Err(problems) => {
            show(
                state,
                p,
                Some(Submitted {
                    form,
                    raw,
                    problems,
                }),
            )
            .await
        }
    }
}

fn parse_route(v: &str, path: String, p: &mut Vec<Problem>) -> DomainRoute {
    match v {
        "maildir" => DomainRoute::Maildir,
        "smarthosts" => DomainRoute::Smarthosts,
        other => {
            p.push(Problem::new(path, format!("unknown route '{other}'")));
            DomainRoute::Smarthosts
        }
    }
}

/// What an add/update/delete form of a configuration list did to the list.
enum ListEdit<T> {
    /// The entry was removed; here it is, for the audit message.
    Removed(T),
    /// The entry at this index is to be filled from the form; `true` when it is new.
    Fill(usize, bool),
}

/// The list part of the domain and route forms: removes entry `i`, or names the entry to
/// fill (a new default one for "add"). `None`, with a problem, when entry `i` is gone (the
/// list changed since the page was drawn) or the action is unknown.
fn edit_list<T: Default>(
    list: &mut Vec<T>,
    action: &str,
    i: usize,
    noun: &str,
    problems: &mut Vec<Problem>,
) -> Option<ListEdit<T>> {
    let gone = |problems: &mut Vec<Problem>| {
        problems.push(Problem::new("", format!("that {noun} is no longer listed")));
        None
    };
    match action {
        "delete" if i < list.len() => Some(ListEdit::Removed(list.remove(i))),
        "add" => {
            list.push(T::default());
            Some(ListEdit::Fill(list.len() - 1, true))
        }
        "update" if i < list.len() => Some(ListEdit::Fill(i, false)),
        "delete" | "update" => gone(problems),
        other => {
            problems.push(Problem::new("", format!("unknown action '{other}'")));
            None
        }
    }
}

/// The form id a list form's answer is drawn into.
fn list_form(prefix: &str, action: &str, i: usize) -> String {
    match action {
        "add" => format!("{prefix}-new"),
        "delete" => format!("{prefix}-{i}-remove"),
        _ => format!("{prefix}-{i}"),
    }
}

/// A domain name as the configuration keeps it: lower case, no trailing dot.
fn domain_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

pub async fn domains(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let action = get(&raw, "action").to_string();
    let i = index(&raw)?;
    let form = list_form("domain", &action, i);
    save(&state, &p, raw, form, "domains", move |cfg, raw| {
        let mut problems = Vec::new();
        match edit_list(&mut cfg.domains, &action, i, "domain", &mut problems) {
            None => (String::new(), problems),
            Some(ListEdit::Removed(d)) => (format!("inbound domain {} removed", d.name), problems),
            Some(ListEdit::Fill(i, new)) => {
                let route = parse_route(
                    get(raw, "route"),
                    format!("domain[{i}].route"),
                    &mut problems,
                );
                let hosts: Vec<HostPort> = parse_list(
                    get(raw, "smarthosts"),
                    &format!("domain[{i}].smarthosts"),
                    &mut problems,
                );
                let d = &mut cfg.domains[i];
                d.name = domain_name(get(raw, "name"));
                d.route = route;
                d.smarthosts = hosts;
                let verb = if new { "added" } else { "changed" };
                (format!("inbound domain {} {verb}", d.name), problems)
            }
        }
    })
    .await
}

pub async fn routes(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let action = get(&raw, "action").to_string();
    let i = index(&raw)?;
    let form = list_form("route", &action, i);
    save(&state, &p, raw, form, "routes", move |cfg, raw| {
        let mut problems = Vec::new();
        match edit_list(&mut cfg.routes, &action, i, "route", &mut problems) {
            None => (String::new(), problems),
            Some(ListEdit::Removed(r)) => {
                (format!("static route for {} removed", r.domain), problems)
            }
            Some(ListEdit::Fill(i, new)) => {
                let hosts: Vec<HostPort> = parse_list(
                    get(raw, "smarthosts"),
                    &format!("route[{i}].smarthosts"),
                    &mut problems,
                );
                let r = &mut cfg.routes[i];
                r.domain = domain_name(get(raw, "domain"));
                r.smarthosts = hosts;
                let verb = if new { "added" } else { "changed" };
                (format!("static route for {} {verb}", r.domain), problems)
            }
        }
    })
    .await
}

pub async fn tls_policies(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    let action = get(&raw, "action").to_string();
    let i = index(&raw)?;
    let form = list_form("tls-policy", &action, i);
    save(&state, &p, raw, form, "tls-policies", move |cfg, raw| {
        let mut problems = Vec::new();
        match edit_list(
            &mut cfg.tls_policies,
            &action,
            i,
            "TLS policy",
            &mut problems,
        ) {
            None => (String::new(), problems),
            Some(ListEdit::Removed(t)) => (
                format!("TLS policy for {} removed", t.destination),
                problems,
            ),
            Some(ListEdit::Fill(i, new)) => {
                let mode = parse_tls(
                    get(raw, "mode"),
                    &format!("tls_policy[{i}].mode"),
                    &mut problems,
                );
                let t = &mut cfg.tls_policies[i];
                t.destination = domain_name(get(raw, "destination"));
                if let Some(m) = mode {
                    t.mode = m;
                }
                t.names = get(raw, "names")
                    .split(['\n', ','])
                    .map(domain_name)
                    .filter(|n| !n.is_empty())
                    .collect();
                t.ca = get(raw, "ca").trim().replace("\r\n", "\n");
                if !t.ca.is_empty() {
                    t.ca.push('\n');
                }
                let verb = if new { "added" } else { "changed" };
                (
                    format!(
                        "TLS policy for {} {verb} ({})",
                        t.destination,
                        tls_str(t.mode)
                    ),
                    problems,
                )
            }
        }
    })
    .await
}

pub async fn outbound(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(
        &state,
        &p,
        raw,
        "outbound".into(),
        "outbound",
        |cfg, raw| {
            let mut problems = Vec::new();
            cfg.outbound.smarthosts =
                parse_list(get(raw, "smarthosts"), "outbound.smarthosts", &mut problems);
            if let Some(t) = parse_tls(get(raw, "tls"), "delivery.tls", &mut problems) {
                cfg.delivery.tls = t;
            }
            set_num(
                &mut cfg.delivery.remote_port,
                raw,
                "remote_port",
                "delivery.remote_port",
                &mut problems,
            );
            ("outbound routing changed".into(), problems)
        },
    )
    .await
}

pub async fn network(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "network".into(), "network", |cfg, raw| {
        let mut problems = Vec::new();
        cfg.smtp.trusted_networks = parse_list(
            get(raw, "trusted_networks"),
            "smtp.trusted_networks",
            &mut problems,
        );
        ("trusted networks changed".into(), problems)
    })
    .await
}

pub async fn limits(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(&state, &p, raw, "limits".into(), "limits", |cfg, raw| {
        let mut pr = Vec::new();
        let mut mib = cfg.smtp.max_message_size / (1024 * 1024);
        set_num(
            &mut mib,
            raw,
            "max_message_size_mib",
            "smtp.max_message_size",
            &mut pr,
        );
        cfg.smtp.max_message_size = mib.saturating_mul(1024 * 1024);
        let s = &mut cfg.smtp;
        set_num(
            &mut s.max_recipients,
            raw,
            "max_recipients",
            "smtp.max_recipients",
            &mut pr,
        );
        set_num(
            &mut s.max_connections,
            raw,
            "max_connections",
            "smtp.max_connections",
            &mut pr,
        );
        set_num(
            &mut s.max_connections_per_ip,
            raw,
            "max_connections_per_ip",
            "smtp.max_connections_per_ip",
            &mut pr,
        );
        set_num(
            &mut s.command_timeout_secs,
            raw,
            "command_timeout_secs",
            "smtp.command_timeout_secs",
            &mut pr,
        );
        set_num(
            &mut s.data_timeout_secs,
            raw,
            "data_timeout_secs",
            "smtp.data_timeout_secs",
            &mut pr,
        );
        set_num(
            &mut s.min_free_disk_mb,
            raw,
            "min_free_disk_mb",
            "smtp.min_free_disk_mb",
            &mut pr,
        );
        let d = &mut cfg.delivery;
        let mut hours = d.max_lifetime_secs / 3600;
        set_num(
            &mut hours,
            raw,
            "max_lifetime_hours",
            "delivery.max_lifetime_secs",
            &mut pr,
        );
        d.max_lifetime_secs = hours.saturating_mul(3600);
        set_num(
            &mut d.retry_initial_secs,
            raw,
            "retry_initial_secs",
            "delivery.retry_initial_secs",
            &mut pr,
        );
        set_num(
            &mut d.retry_max_secs,
            raw,
            "retry_max_secs",
            "delivery.retry_max_secs",
            &mut pr,
        );
        set_num(
            &mut d.max_per_destination,
            raw,
            "max_per_destination",
            "delivery.max_per_destination",
            &mut pr,
        );
        set_num(
            &mut d.max_concurrent,
            raw,
            "max_concurrent",
            "delivery.max_concurrent",
            &mut pr,
        );
        set_num(
            &mut d.connect_timeout_secs,
            raw,
            "connect_timeout_secs",
            "delivery.connect_timeout_secs",
            &mut pr,
        );
        set_num(
            &mut d.command_timeout_secs,
            raw,
            "delivery_command_timeout_secs",
            "delivery.command_timeout_secs",
            &mut pr,
        );
        ("limits changed".into(), pr)
    })
    .await
}

pub async fn listeners(
    State(state): State<AppState>,
    p: Principal,
    Form(raw): Form<Raw>,
) -> Result<Response, AppError> {
    save(
        &state,
        &p,
        raw,
        "listeners".into(),
        "listeners",
        |cfg, raw| {
            let mut pr = Vec::new();
            cfg.smtp.listen = parse_list(get(raw, "smtp_listen"), "smtp.listen", &mut pr);
            cfg.smtp.submission_listen = parse_list(
                get(raw, "submission_listen"),
                "smtp.submission_listen",
                &mut pr,
            );
            cfg.console.listen = parse_list(get(raw, "console_listen"), "console.listen", &mut pr);
            if cfg.console.listen.is_empty()
                && !pr.iter().any(|p| p.path.starts_with("console.listen"))
            {
                pr.push(Problem::new(
                    "console.listen",
                    "the console needs at least one address, or nobody can reach it",
                ));
            }
            ("listeners changed (applied at the next restart)".into(), pr)
        },
    )
    .await
}

pub async fn certificate(
    State(state): State<AppState>,
    p: Principal,
    mp: Multipart,
) -> Result<Response, AppError> {
    let u = super::read_cert_upload(mp).await?;
    match super::install_certificate(&state, &p, "smtp", u.cert, u.key).await {
        Ok(msg) => {
            flash(&state, &p, msg).await?;
            Ok(Redirect::to("/mailflow#certificate").into_response())
        }
        Err(AppError::BadRequest(msg)) => {
            show(
                &state,
                &p,
                Some(Submitted {
                    form: "smtp-cert".into(),
                    raw: Default::default(),
                    problems: vec![Problem::new("", msg)],
                }),
            )
            .await
        }
        Err(e) => Err(e),
    }
}
