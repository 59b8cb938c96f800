//! The pages, one module each. Every handler reads through `AppState::db` and renders an
//! askama template; every POST ends in a redirect with a flash message (or the form again,
//! with its problems, status 422).

pub mod account;
pub mod audit;
pub mod confirm;
pub mod dashboard;
pub mod digest;
pub mod dkim;
pub mod dlp;
pub mod ha;
pub mod incidents;
pub mod mailflow;
pub mod protection;
pub mod quarantine;
pub mod queue;
pub mod system;
pub mod tracking;
pub mod users;

use std::path::Path;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use palisade_control::supervisor as sup;

use crate::auth::Principal;
use crate::error::AppError;
use crate::server::server_config;
use crate::state::AppState;

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/console.css"),
    )
        .into_response()
}

pub async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../../static/favicon.svg"),
    )
        .into_response()
}

pub async fn not_found() -> AppError {
    AppError::NotFound("There is no such page.".into())
}

/// What the pages show about a certificate file.
#[derive(Debug, Clone, Default)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    /// Unix time from which it is valid.
    pub not_before_ts: i64,
    pub days_left: i64,
    pub fingerprint: String,
    pub self_signed: bool,
    pub error: Option<String>,
}

pub fn cert_info_pem(pem: &[u8]) -> CertInfo {
    let parsed = x509_parser::pem::parse_x509_pem(pem);
    let (_, pem) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return CertInfo {
                error: Some(format!("not a PEM certificate: {e}")),
                ..Default::default()
            };
        }
    };
    let cert = match pem.parse_x509() {
        Ok(c) => c,
        Err(e) => {
            return CertInfo {
                error: Some(format!("not a valid certificate: {e}")),
                ..Default::default()
            };
        }
    };
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(ip);
                        std::net::Ipv6Addr::from(a).to_string()
                    }
                    _ => "?".into(),
                },
                other => format!("{other}"),
            })
            .collect(),
        _ => vec![],
    };
    let not_after = cert.validity().not_after.timestamp();
    let fp = ring::digest::digest(&ring::digest::SHA256, &pem.contents);
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_before: crate::view::fmt_time(cert.validity().not_before.timestamp()),
        not_before_ts: cert.validity().not_before.timestamp(),
        not_after: crate::view::fmt_time(not_after),
        days_left: (not_after - palisade_store::now_unix()) / 86400,
        fingerprint: fp
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        self_signed: cert.subject() == cert.issuer(),
        error: None,
    }
}

pub fn cert_info_file(path: &Path) -> CertInfo {
    match std::fs::read(path) {
        Ok(b) => cert_info_pem(&b),
        Err(e) => CertInfo {
            error: Some(format!("{}: {e}", path.display())),
            ..Default::default()
        },
    }
}

/// Checks that a certificate chain and key (PEM) belong together and can serve TLS; the
/// supervisor checks again before installing them.
pub fn validate_pair(cert_pem: &str, key_pem: &str) -> Result<CertInfo, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file cannot be read: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the key file cannot be read: {e}"))?;
    server_config(certs, key)
        .map_err(|e| format!("{e} (does the key belong to the certificate?)"))?;
    let info = cert_info_pem(cert_pem.as_bytes());
    if let Some(e) = &info.error {
        return Err(e.clone());
    }
    if info.days_left < 0 {
        return Err(format!("the certificate expired on {}", info.not_after));
    }
    Ok(info)
}

/// Whether a certificate name (subjectAltName entry) covers `host`: exact, case-insensitive,
/// or a `*.` wildcard for exactly one leftmost label (RFC 6125); addresses only exactly.
pub fn name_covers(san: &str, host: &str) -> bool {
    let (san, host) = (san.to_ascii_lowercase(), host.to_ascii_lowercase());
    let (san, host) = (san.trim_end_matches('.'), host.trim_end_matches('.'));
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return san.parse::<std::net::IpAddr>().is_ok_and(|s| s == ip);
    }
    if san == host {
        return true;
    }
    match (san.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && rest == suffix,
        _ => false,
    }
}

/// What is wrong with a certificate for a console reached as `hosts` (none: nothing to
/// say): names it does not cover (saying which it does), and a start date in the future.
/// An expired certificate is refused outright by [`validate_pair`].
pub fn console_cert_warnings(info: &CertInfo, hosts: &[String], now: i64) -> Vec<String> {
    let mut w = Vec::new();
    if info.error.is_some() {
        return w;
    }
    let missing: Vec<&str> = hosts
        .iter()
        .filter(|h| !info.names.iter().any(|n| name_covers(n, h)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let covers = if info.names.is_empty() {
            "it has no subjectAltName at all (browsers ignore the subject's common name)"
                .to_string()
        } else {
            format!("it covers only {}", info.names.join(", "))
        };
        w.push(format!(
            "This certificate does not cover {} (the console's host name{}: console.hostnames, or system.hostname); {covers}. Browsers will refuse or warn on connections under {}.",
            missing.join(", "),
            if hosts.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "that name" } else { "those names" },
        ));
    }
    if info.not_before_ts > now {
        w.push(format!(
            "This certificate is not valid yet: only from {} (is this appliance's clock right?).",
            info.not_before
        ));
    }
    w
}

/// The certificate upload form: the certificate and its key (PEM text), and whether the
/// administrator confirmed installing it despite warnings (`confirm=yes`).
pub struct CertUpload {
    pub cert: String,
    pub key: String,
    pub confirm: bool,
}

/// Reads the certificate upload form (`cert` and `key` files, or pasted text).
pub async fn read_cert_upload(mut mp: axum::extract::Multipart) -> Result<CertUpload, AppError> {
    let (mut cert, mut key, mut confirm) = (String::new(), String::new(), false);
    while let Some(f) = mp
        .next_field()
        .await
        .map_err(|e| AppError::BadRequest(format!("the upload was incomplete: {e}")))?
    {
        let name = f.name().unwrap_or("").to_string();
        if name == "confirm" {
            confirm = f.text().await.is_ok_and(|v| v == "yes");
            continue;
        }
        if name != "cert" && name != "key" {
            continue;
        }
        let bytes = f
            .bytes()
            .await
            .map_err(|e| AppError::BadRequest(format!("the upload was incomplete: {e}")))?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| AppError::BadRequest(format!("the {name} file is not PEM text")))?;
        if name == "cert" {
            cert = text;
        } else {
            key = text;
        }
    }
    if cert.trim().is_empty() || key.trim().is_empty() {
        return Err(AppError::BadRequest(
            "Choose both the certificate file and its private key.".into(),
        ));
    }
    Ok(CertUpload { cert, key, confirm })
}

/// Validates and hands a certificate to the supervisor (root) to install for `service`
/// (`smtp` or `console`), then audits it. Returns what to tell the user.
pub async fn install_certificate(
    state: &AppState,
    p: &Principal,
    service: &str,
    cert: String,
    key: String,
) -> Result<String, AppError> {
    let info = validate_pair(&cert, &key).map_err(AppError::BadRequest)?;
    let resp = state
        .supervisor(sup::Request::InstallCertificate {
            service: service.to_string(),
            cert_pem: cert,
            key_pem: key,
        })
        .await
        .map_err(AppError::Unavailable)?;
    match resp {
        sup::Response::Ok { .. } => {}
        sup::Response::Error { message } => return Err(AppError::BadRequest(message)),
        sup::Response::Status(_) | sup::Response::Paired { .. } => {
            return Err(AppError::internal("unexpected reply"));
        }
    }
    let (actor, source, svc) = (p.actor(), p.source.clone(), service.to_string());
    let detail = serde_json::json!({
        "subject": info.subject, "names": info.names, "not_after": info.not_after,
        "sha256": info.fingerprint,
    });
    state
        .db(move |s| {
            s.audit
                .append(&actor, &source, "certificate.install", &svc, &detail)?;
            Ok(())
        })
        .await?;
    let applied = match service {
        "smtp" => state.reload_engine().await,
        _ => match state.reload_tls() {
            Ok(()) => "the console uses it for new connections".into(),
            Err(e) => format!("the console could not load it yet ({e}); restart the console"),
        },
    };
    Ok(format!(
        "Certificate for {} installed (valid until {}); {applied}.",
        info.names.first().cloned().unwrap_or(info.subject),
        info.not_after
    ))
}
