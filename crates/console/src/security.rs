//! Response headers every answer carries, the host-name check every request passes, and the
//! same-origin check for state changes.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_store::Config;
use palisade_store::config::ConsoleHost;
use subtle::ConstantTimeEq;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;

/// No script at all, styles only from our own stylesheet, no plugins, no framing, no `<base>`
/// tricks, forms only to ourselves.
pub const CSP: &str = "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; \
     font-src 'none'; connect-src 'none'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// What every answer carries, set (overriding whatever a handler put there) by one
/// `SetResponseHeaderLayer` each around the whole router (see `routes::router`), so errors,
/// redirects and the host check's 421 carry them too.
pub const RESPONSE_HEADERS: [(HeaderName, &str); 8] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    ),
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    // Same-origin requests keep their Referer and Origin (the CSRF check uses them); nothing
    // leaks to other sites.
    (header::REFERRER_POLICY, "same-origin"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
];

/// `Cache-Control` of the static files (set on their routes).
pub const CACHE_STATIC: &str = "public, max-age=3600";
/// `Cache-Control` of everything else (set around the whole router where a route set none):
/// pages show queue contents, audit entries, one-time passwords: never keep them.
pub const CACHE_NEVER: &str = "no-store";

/// `router` wrapped in one overriding [`SetResponseHeaderLayer`] per [`RESPONSE_HEADERS`]
/// entry, and `Cache-Control: no-store` where no route set its own.
pub fn with_response_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_NEVER),
    ));
    RESPONSE_HEADERS
        .into_iter()
        .fold(router, |router, (name, value)| {
            router.layer(SetResponseHeaderLayer::overriding(
                name,
                HeaderValue::from_static(value),
            ))
        })
}

/// The layer the static-file routes carry: they may be cached for an hour.
pub fn cache_static() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_STATIC),
    )
}

/// The names the console answers to (`console.hostnames`, see `palisade_store::Config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    names: Vec<ConsoleHost>,
    /// Default mode (no `console.hostnames`): any IP address is accepted too. A request can
    /// only carry an address as its `Host` if the browser was pointed at that address, so it
    /// cannot be a rebound name; and the origin check still wants `Origin` equal to `Host`.
    any_ip: bool,
    /// `console.trusted_networks` of the same revision (the login throttle's familiar sources).
    pub trusted_networks: Vec<ipnet::IpNet>,
}

impl HostPolicy {
    pub fn from_config(cfg: &Config) -> HostPolicy {
        if cfg.console.hostnames.is_empty() {
            let mut names = vec![ConsoleHost {
                host: "localhost".into(),
                port: None,
            }];
            names.extend(ConsoleHost::parse(&cfg.system.hostname));
            HostPolicy {
                names,
                any_ip: true,
                trusted_networks: cfg.console.trusted_networks.clone(),
            }
        } else {
            HostPolicy {
                names: cfg
                    .console
                    .hostnames
                    .iter()
                    .filter_map(|h| ConsoleHost::parse(h))
                    .collect(),
                any_ip: false,
                trusted_networks: cfg.console.trusted_networks.clone(),
            }
        }
    }

    /// `authority` (`host[:port]`, as in `Host`) is one of the console's names.
    pub fn allows(&self, authority: &str) -> bool {
        let Some(h) = ConsoleHost::parse(authority) else {
            return false;
        };
        (self.any_ip && h.is_ip())
            || self
                .names
                .iter()
                .any(|n| n.host == h.host && n.port.is_none_or(|p| p == h.port.unwrap_or(443)))
    }

    /// The names a console certificate should cover: the configured ones (or
    /// `system.hostname`), without `localhost` and loopback addresses.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &self.names {
            let loopback = n.host == "localhost"
                || n.host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback && !out.contains(&n.host) {
                out.push(n.host.clone());
            }
        }
        out
    }
}

/// `host[:port]` of a request: its `Host` header.
pub fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// `Host` and `https://Host` compared as scheme, host and port (443 when absent).
fn same_authority(a: &str, b: &str) -> bool {
    match (ConsoleHost::parse(a), ConsoleHost::parse(b)) {
        (Some(a), Some(b)) => a.host == b.host && a.port.unwrap_or(443) == b.port.unwrap_or(443),
        _ => false,
    }
}

/// The request comes from a page of this console: its `Origin` (or, failing that, its
/// `Referer`) is `https://` one of the console's names ([`HostPolicy`]), the same one the
/// request was sent to (`Host`, itself one of those names). Browsers send `Origin` with
/// every POST; a request with neither header is refused.
pub fn same_origin(headers: &HeaderMap, policy: &HostPolicy) -> bool {
    let Some(host) = request_host(headers).filter(|h| policy.allows(h)) else {
        return false;
    };
    let origin_ok = |authority: &str| policy.allows(authority) && same_authority(authority, host);
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("https://"))
            .is_some_and(|a| !a.contains('/') && origin_ok(a));
    }
    if let Some(referer) = headers.get(header::REFERER).and_then(|r| r.to_str().ok()) {
        let Some(rest) = referer.strip_prefix("https://") else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        return !authority.contains('@') && origin_ok(authority);
    }
    false
}

/// Every request: its `Host` must be one of the console's names, else 421 and nothing else
/// (a page of another site whose name was rebound to this address gets no answer it could
/// read, and never reaches the login form or the API).
pub async fn host_check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let policy = match state.host_policy().await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match request_host(req.headers()) {
        Some(h) if policy.allows(h) => next.run(req).await,
        host => {
            tracing::warn!(event = "console.host_refused", host = host.unwrap_or("-"));
            (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "421 Misdirected Request: this console does not answer to that host name. \
                 Use one of the names in console.hostnames.\n",
            )
                .into_response()
        }
    }
}

/// Constant-time comparison of two tokens (an empty token never matches). Only the length
/// may leak, as it did before: `subtle` answers unequal lengths at once.
pub fn same_token(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn policy(names: &[&str]) -> HostPolicy {
        let mut cfg = Config::default();
        cfg.system.hostname = "gw".into();
        cfg.console.hostnames = names.iter().map(|s| s.to_string()).collect();
        HostPolicy::from_config(&cfg)
    }

    #[test]
    fn origin_rules() {
        let p = policy(&[]);
        let same_origin = |h: &HeaderMap| same_origin(h, &p);
        assert!(same_origin(&h(&[
            ("host", "gw:8443"),
            ("origin", "https://gw:8443")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "gw:8443"),
            ("origin", "https://evil:8443")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "gw:8443"),
            ("origin", "http://gw:8443")
        ])));
        assert!(!same_origin(&h(&[("host", "gw:8443"), ("origin", "null")])));
        assert!(same_origin(&h(&[
            ("host", "gw"),
            ("referer", "https://gw/queue")
        ])));
        assert!(same_origin(&h(&[
            ("host", "gw"),
            ("origin", "https://gw:443")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "gw"),
            ("referer", "https://gw.evil/queue")
        ])));
        assert!(!same_origin(&h(&[("host", "gw")])));
        // DNS rebinding: evil.example now resolves to the console; the browser sends its
        // own name as Host and as Origin. Formerly accepted (Origin == https://Host).
        assert!(!same_origin(&h(&[
            ("host", "evil.example:8443"),
            ("origin", "https://evil.example:8443")
        ])));
        // Addresses (the listen address, a port forward) in the default mode, when Origin is
        // the same address; never another site's address.
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "https://127.0.0.1:8443")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "https://198.51.100.7:8443")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "https://127.0.0.1:9443")
        ])));
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("", ""));
    }

    #[test]
    fn configured_host_names() {
        let p = policy(&["console.example", "10.0.0.5:8443"]);
        assert!(p.allows("console.example"));
        assert!(p.allows("CONSOLE.example:9443"));
        assert!(p.allows("10.0.0.5:8443"));
        assert!(!p.allows("10.0.0.5"), "the port is part of that entry");
        assert!(!p.allows("gw"), "system.hostname is only the default");
        assert!(
            !p.allows("127.0.0.1:8443"),
            "no addresses beyond the listed ones"
        );
        assert!(!p.allows("evil.example"));
        assert!(same_origin(
            &h(&[
                ("host", "console.example"),
                ("origin", "https://console.example")
            ]),
            &p
        ));
        assert!(!same_origin(
            &h(&[
                ("host", "evil.example"),
                ("origin", "https://console.example")
            ]),
            &p
        ));
        assert_eq!(p.certificate_names(), vec!["console.example", "10.0.0.5"]);
        let d = policy(&[]);
        assert!(d.allows("localhost:8443") && d.allows("[::1]:8443") && d.allows("gw"));
        assert!(!d.allows("gw.evil"));
        assert_eq!(d.certificate_names(), vec!["gw"]);
    }
}
