//! `[antivirus]`: every message scanned by a real `clamd` over its socket.
//!
//! ```toml
//! [antivirus]
//! enabled = true
//! clamd = "unix:/run/clamav-palisade/clamd.sock"   # the appliance's; or "127.0.0.1:3310"
//! infected = "reject"                    # or "quarantine"
//! unscannable = "tempfail"               # over max_scan_bytes, clamd refused it, encrypted archive
//! max_scan_bytes = 26214400              # keep at or below clamd's StreamMaxLength
//! scan_parts = true                      # also scan each attachment as our MIME view decoded it
//! mirror = "http://clamav.hospital.local" # a private mirror of the official databases (freshclam)
//! custom_urls = ["https://intranet.hospital.local/av/hospital.ndb"]  # further signature files
//! update_interval_minutes = 120          # the engine runs freshclam this often (0: on request only)
//! freshclam = "/usr/bin/freshclam"
//!
//! [filter.check.antivirus]               # clamd down or too slow: the failure mode (tempfail)
//! timeout_secs = 30
//! ```
//!
//! clamd unreachable, or not answering within `filter.check.antivirus.timeout_secs`, is a
//! failure of the check: its failure mode applies (tempfail by default), never "clean".
//! Signatures live in `<data dir>/clamav/` (`palisade av update FILE` adds to it and asks clamd
//! to reload).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Antivirus {
    /// Off until a clamd is there to ask: with it on and clamd unreachable, every message is
    /// tempfailed (or whatever `filter.check.antivirus.failure_mode` says).
    pub enabled: bool,
    /// `unix:/path/to/clamd.ctl`, or `host:port` for clamd's TCP socket.
    pub clamd: String,
    /// What a message with a signature match gets: `reject` (554 5.7.1 at DATA, no bounce) or
    /// `quarantine`.
    pub infected: InfectedAction,
    /// What a message clamd could not fully scan gets (larger than `max_scan_bytes`, refused
    /// by clamd for a size or recursion limit, an encrypted archive member): `tempfail`
    /// (default), `quarantine`, `reject`, or `deliver` (with an `X-Palisade-Antivirus` header).
    pub unscannable: UnscannableAction,
    /// Messages (and parts) larger than this are not sent to clamd and are unscannable. Keep it
    /// at or below clamd's `StreamMaxLength` (25 MiB by default).
    pub max_scan_bytes: u64,
    /// Also scan each attachment as our own MIME parser decoded it, so a part clamd's parser
    /// did not find (a broken boundary, an unusual encoding) is still scanned.
    pub scan_parts: bool,
    /// A private mirror of ClamAV's official databases (freshclam's `PrivateMirror`; e.g. a
    /// cvdupdate server on the organisation's network): `http(s)://host[:port][/path]`.
    /// Empty: the official databases are not fetched (upload them instead).
    pub mirror: String,
    /// Further signature files freshclam fetches as they are (`DatabaseCustomURL`).
    pub custom_urls: Vec<String>,
    /// With a mirror or custom URLs: how often the engine runs freshclam, in minutes (0: only
    /// on request, `palisade av fetch` or the console).
    pub update_interval_minutes: u32,
    /// The freshclam program.
    pub freshclam: String,
}

impl Default for Antivirus {
    fn default() -> Self {
        Antivirus {
            enabled: false,
            clamd: "unix:/run/clamav-palisade/clamd.sock".into(),
            infected: InfectedAction::Reject,
            unscannable: UnscannableAction::Tempfail,
            max_scan_bytes: 25 * 1024 * 1024,
            scan_parts: true,
            mirror: String::new(),
            custom_urls: Vec::new(),
            update_interval_minutes: 120,
            freshclam: "/usr/bin/freshclam".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfectedAction {
    Reject,
    Quarantine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnscannableAction {
    Tempfail,
    Quarantine,
    Reject,
    Deliver,
}

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            ClamdAddress::Tcp(a) => f.write_str(a),
        }
    }
}

impl Antivirus {
    /// The parsed `clamd` address.
    pub fn address(&self) -> Result<ClamdAddress, String> {
        let s = self.clamd.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("'{s}': a unix socket path must be absolute"));
            }
            return Ok(ClamdAddress::Unix(path.into()));
        }
        let tcp = s.strip_prefix("tcp:").unwrap_or(s);
        let Some((host, port)) = tcp.rsplit_once(':') else {
            return Err(format!(
                "'{s}' is neither unix:/path nor host:port (e.g. 127.0.0.1:3310)"
            ));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
            return Err(format!("'{s}' is not host:port with a port 1 .. 65535"));
        }
        Ok(ClamdAddress::Tcp(tcp.to_string()))
    }

    /// Whether freshclam has anything to fetch.
    pub fn fetches(&self) -> bool {
        !self.mirror.trim().is_empty() || !self.custom_urls.is_empty()
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        if let Err(e) = self.address() {
            bad("antivirus.clamd", e);
        }
        if !self.mirror.trim().is_empty()
            && let Err(e) = url_problem(&self.mirror)
        {
            bad("antivirus.mirror", e);
        }
        for (i, u) in self.custom_urls.iter().enumerate() {
            if let Err(e) = url_problem(u) {
                bad(&format!("antivirus.custom_urls[{i}]"), e);
            } else if !u
                .rsplit('/')
                .next()
                .is_some_and(|f| f.contains('.') && !f.starts_with('.'))
            {
                bad(
                    &format!("antivirus.custom_urls[{i}]"),
                    format!("'{u}' does not end in a database file name (e.g. hospital.ndb)"),
                );
            }
        }
        if self.update_interval_minutes != 0
            && !(15..=10080).contains(&self.update_interval_minutes)
        {
            bad(
                "antivirus.update_interval_minutes",
                format!(
                    "{} is outside 15 .. 10080 minutes (or 0: on request only)",
                    self.update_interval_minutes
                ),
            );
        }
        if !self.freshclam.starts_with('/') || self.freshclam.chars().any(char::is_control) {
            bad(
                "antivirus.freshclam",
                format!("'{}' is not an absolute path", self.freshclam),
            );
        }
        if !(1024..=4 * 1024 * 1024 * 1024).contains(&self.max_scan_bytes) {
            bad(
                "antivirus.max_scan_bytes",
                format!("{} is outside 1 KiB .. 4 GiB", self.max_scan_bytes),
            );
        }
    }
}

/// A URL freshclam can fetch: `http://` or `https://`, a host, and nothing that could end a
/// line of freshclam's configuration file (it is written there).
fn url_problem(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("'{u}' is not an http:// or https:// address"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || u.len() > 1024 {
        return Err(format!("'{u}' has no host"));
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "'{}' contains white space or control characters",
            u.escape_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(av: &Antivirus) -> Vec<(String, String)> {
        let mut out = Vec::new();
        av.problems(&mut |p, m| out.push((p.to_string(), m)));
        out
    }

    #[test]
    fn addresses() {
        let with = |clamd: &str| Antivirus {
            clamd: clamd.into(),
            ..Default::default()
        };
        assert_eq!(
            with("unix:/run/clamav/clamd.ctl").address(),
            Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(
            with("127.0.0.1:3310").address(),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            with("tcp:[::1]:3310").address(),
            Ok(ClamdAddress::Tcp("[::1]:3310".into()))
        );
        for bad in [
            "unix:clamd.ctl",
            "clamd",
            "127.0.0.1:0",
            ":3310",
            "host:99999",
        ] {
            let p = problems(&with(bad));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert_eq!(p[0].0, "antivirus.clamd");
        }
        assert!(problems(&Antivirus::default()).is_empty());
        let tiny = Antivirus {
            max_scan_bytes: 10,
            ..Default::default()
        };
        assert_eq!(problems(&tiny)[0].0, "antivirus.max_scan_bytes");
    }

    #[test]
    fn mirror_and_custom_urls_cannot_break_freshclams_configuration() {
        let good = Antivirus {
            mirror: "http://clamav.hospital.local:8080/db".into(),
            custom_urls: vec!["https://intranet.hospital.local/av/hospital.ndb".into()],
            ..Default::default()
        };
        assert!(problems(&good).is_empty());
        assert!(good.fetches() && !Antivirus::default().fetches());
        let bad = Antivirus {
            mirror: "http://evil\nDatabaseMirror x".into(),
            custom_urls: vec![
                "ftp://x/a.ndb".into(),
                "https://host/".into(),
                "https://host/a.ndb\nPrivateMirror http://x".into(),
            ],
            update_interval_minutes: 5,
            freshclam: "freshclam".into(),
            ..Default::default()
        };
        let fields: Vec<String> = problems(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "antivirus.mirror",
                "antivirus.custom_urls[0]",
                "antivirus.custom_urls[1]",
                "antivirus.custom_urls[2]",
                "antivirus.update_interval_minutes",
                "antivirus.freshclam",
            ]
        );
    }
}
