//! Response headers every answer carries, and the same-origin check for state changes.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// No script at all, styles only from our own stylesheet, no plugins, no framing, no `<base>`
/// tricks, forms only to ourselves.
pub const CSP: &str = "default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; \
     font-src 'none'; connect-src 'none'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub async fn headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, v: &'static str| {
        h.insert(name, HeaderValue::from_static(v));
    };
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // Same-origin requests keep their Referer and Origin (the CSRF check uses them); nothing
    // leaks to other sites.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    );
    if is_static {
        set(h, header::CACHE_CONTROL, "public, max-age=3600");
    } else {
        // Pages show queue contents, audit entries, one-time passwords: never keep them.
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// The request comes from a page of this console: its `Origin` (or, failing that, its
/// `Referer`) is `https://<Host>`. Browsers send `Origin` with every POST; a request with
/// neither header is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let expected = format!("https://{host}");
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| o == expected);
    }
    if let Some(referer) = headers.get(header::REFERER).and_then(|r| r.to_str().ok()) {
        return referer == expected
            || referer
                .strip_prefix(&expected)
                .is_some_and(|rest| rest.starts_with('/'));
    }
    false
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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

    #[test]
    fn origin_rules() {
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
        assert!(!same_origin(&h(&[
            ("host", "gw"),
            ("referer", "https://gw.evil/queue")
        ])));
        assert!(!same_origin(&h(&[("host", "gw")])));
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("", ""));
    }
}
