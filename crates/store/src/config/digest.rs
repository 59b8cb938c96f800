//! `[digest]`: the daily quarantine digest each recipient with held mail gets, with signed,
//! expiring, single-use release links (served by the console, no login needed).
//!
//! ```toml
//! [digest]
//! enabled = false                      # off by default
//! hour = 7                             # local hour (0-23) the daily digest goes out
//! from = ""                            # empty: postmaster@<system.hostname>
//! link_base_url = ""                   # empty: https://<system.hostname>:<console port>
//! link_valid_hours = 72                # a release link works this long (and once)
//! domains = []                         # empty: every [[domain]]; else some of them
//! max_entries = 100                    # entries listed in one digest; the rest are counted
//! exclude_checks = ["antivirus", "attachments", "mime"]   # never offered to recipients
//! ```
//!
//! Only recipients in our inbound domains get a digest (never an outside address), and only
//! for entries held since their last digest. Entries a check in `exclude_checks` had a say in
//! (malware, dangerous attachments, uninspectable mail) are left to the administrator: a
//! recipient is never offered a link that releases them.

use serde::{Deserialize, Serialize};

use super::{CHECK_NAMES, Config, ConsoleHost, is_valid_domain};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Digest {
    pub enabled: bool,
    /// The local hour (0-23) the daily digest is sent at (or soon after, if the engine was
    /// not running then).
    pub hour: u8,
    /// The digest's From address; empty: `postmaster@<system.hostname>`.
    pub from: String,
    /// The console URL recipients can reach, `https://mail-gw.example.org`; the links are
    /// `<link_base_url>/digest/release/<token>`. Empty: `https://<system.hostname>` with the
    /// port of the first `console.listen` address. Its host must be one of the console's
    /// names (`console.hostnames`), or the console will not answer it.
    pub link_base_url: String,
    /// How long a release link works after the digest was made.
    pub link_valid_hours: u32,
    /// The inbound domains whose recipients get digests; empty: all of them.
    pub domains: Vec<String>,
    /// Entries listed in one digest; beyond this the digest says how many more are held.
    pub max_entries: u32,
    /// Entries any of these checks explained are not listed (nor releasable by recipients).
    pub exclude_checks: Vec<String>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            enabled: false,
            hour: 7,
            from: String::new(),
            link_base_url: String::new(),
            link_valid_hours: 72,
            domains: Vec::new(),
            max_entries: 100,
            exclude_checks: vec!["antivirus".into(), "attachments".into(), "mime".into()],
        }
    }
}

impl Digest {
    pub(super) fn problems(&self, cfg: &Config, bad: &mut dyn FnMut(&str, String)) {
        if self.hour > 23 {
            bad(
                "digest.hour",
                format!("{} is not an hour (0-23)", self.hour),
            );
        }
        let from = self.from.trim();
        if !from.is_empty() && palisade_smtp_proto::parse_mailbox(from, true).is_err() {
            bad(
                "digest.from",
                format!("'{from}' is not a mailbox (user@domain)"),
            );
        }
        let url = self.link_base_url.trim();
        if !url.is_empty()
            && let Err(e) = check_base_url(url)
        {
            bad("digest.link_base_url", e);
        }
        if self.enabled && check_base_url(&cfg.digest_link_base()).is_ok() && !console_answers(cfg)
        {
            bad(
                "digest.link_base_url",
                format!(
                    "the console does not answer {}: its host is not one of console.hostnames",
                    cfg.digest_link_base()
                ),
            );
        }
        if !(1..=24 * 30).contains(&self.link_valid_hours) {
            bad(
                "digest.link_valid_hours",
                format!("{} is outside 1 .. 720 hours", self.link_valid_hours),
            );
        }
        if !(1..=1000).contains(&self.max_entries) {
            bad(
                "digest.max_entries",
                format!("{} is outside 1 .. 1000", self.max_entries),
            );
        }
        for (i, d) in self.domains.iter().enumerate() {
            let path = format!("digest.domains[{i}]");
            if !is_valid_domain(d) {
                bad(&path, format!("'{d}' is not a valid domain name"));
            } else if !cfg
                .domains
                .iter()
                .any(|dom| dom.name.eq_ignore_ascii_case(d))
            {
                bad(
                    &path,
                    format!(
                        "'{d}' is not an inbound domain ([[domain]]): digests go only to our own recipients"
                    ),
                );
            }
        }
        for (i, c) in self.exclude_checks.iter().enumerate() {
            if !CHECK_NAMES.contains(&c.as_str()) {
                bad(
                    &format!("digest.exclude_checks[{i}]"),
                    format!("unknown check '{c}' (known: {})", CHECK_NAMES.join(", ")),
                );
            }
        }
    }
}

/// `https://host[:port][/path]`, nothing after the path.
fn check_base_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!("'{url}' must start with https://"));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{url}' contains spaces or control characters"));
    }
    if rest.contains(['?', '#', '@', '"', '<', '>', '\\']) {
        return Err(format!(
            "'{url}': only https://host[:port][/path] (no query, fragment or user)"
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().ok().filter(|p| *p != 0).is_none()
    {
        return Err(format!("'{url}' has a bad port"));
    }
    Ok(())
}

/// Whether the console answers requests for the links' host (its `Host` check, see
/// `console.hostnames`): without names, `system.hostname`, `localhost` and any IP address.
fn console_answers(cfg: &Config) -> bool {
    let base = cfg.digest_link_base();
    let authority = base
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let Some(link) = ConsoleHost::parse(authority) else {
        return false;
    };
    if cfg.console.hostnames.is_empty() {
        let own = cfg.system.hostname.trim_end_matches('.');
        return link.is_ip() || link.host == "localhost" || link.host.eq_ignore_ascii_case(own);
    }
    cfg.console
        .hostnames
        .iter()
        .filter_map(|n| ConsoleHost::parse(n))
        .any(|n| n.host == link.host && (n.port.is_none() || n.port == link.port))
}

impl Config {
    /// The digest's From address: `digest.from`, else `postmaster@<system.hostname>`.
    pub fn digest_from(&self) -> String {
        match self.digest.from.trim() {
            "" => format!("postmaster@{}", self.system.hostname),
            f => f.to_string(),
        }
    }

    /// Where release links point, without a trailing slash: `digest.link_base_url`, else
    /// `https://<system.hostname>` with the first console listener's port (443 left out).
    pub fn digest_link_base(&self) -> String {
        match self.digest.link_base_url.trim().trim_end_matches('/') {
            "" => {
                let port = self.console.listen.first().map_or(443, |a| a.port());
                if port == 443 {
                    format!("https://{}", self.system.hostname)
                } else {
                    format!("https://{}:{port}", self.system.hostname)
                }
            }
            u => u.to_string(),
        }
    }

    /// Whether `address` may get a digest: a mailbox in one of our inbound domains (those of
    /// `digest.domains` when it lists any).
    pub fn digest_covers(&self, address: &str) -> bool {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return false;
        };
        let inbound = self
            .domains
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(domain));
        inbound
            && (self.digest.domains.is_empty()
                || self
                    .digest
                    .domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<(String, String)> {
        match Config::from_toml(toml) {
            Ok(_) => vec![],
            Err(p) => p.into_iter().map(|p| (p.path, p.message)).collect(),
        }
    }

    const DOMAIN: &str = "[[domain]]\nname = \"hospital.test\"\nroute = \"maildir\"\n";

    #[test]
    fn defaults_are_off_and_valid() {
        let cfg = Config::from_toml(DOMAIN).unwrap();
        assert!(!cfg.digest.enabled);
        assert_eq!(cfg.digest.hour, 7);
        assert_eq!(cfg.digest_from(), "postmaster@palisade.example.test");
        assert_eq!(cfg.digest_link_base(), "https://palisade.example.test:8443");
        assert!(cfg.digest_covers("Alice@Hospital.test"));
        assert!(!cfg.digest_covers("someone@elsewhere.test"));
        assert!(!cfg.digest_covers("postmaster"));
    }

    #[test]
    fn every_problem_is_reported_by_its_field() {
        let p = problems(&format!(
            "{DOMAIN}[digest]\nenabled = true\nhour = 24\nfrom = \"not a mailbox\"\n\
             link_base_url = \"http://gw.test\"\nlink_valid_hours = 0\nmax_entries = 0\n\
             domains = [\"hospital.test\", \"elsewhere.test\"]\nexclude_checks = [\"nope\"]\n"
        ));
        let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "digest.hour",
                "digest.from",
                "digest.link_base_url",
                "digest.link_valid_hours",
                "digest.max_entries",
                "digest.domains[1]",
                "digest.exclude_checks[0]"
            ],
            "{p:?}"
        );
    }

    #[test]
    fn base_urls() {
        for ok in [
            "https://gw.hospital.test",
            "https://gw.hospital.test:8443",
            "https://gw.hospital.test/mail/",
            "https://[2001:db8::1]:8443",
        ] {
            assert_eq!(check_base_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "gw.hospital.test",
            "http://gw",
            "https://",
            "https://gw/?x=1",
            "https://user@gw",
            "https://gw:99999",
            "https://gw/a b",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
        let cfg = Config::from_toml(&format!(
            "{DOMAIN}[digest]\nlink_base_url = \"https://gw.hospital.test/\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.digest_link_base(), "https://gw.hospital.test");
    }

    #[test]
    fn links_must_point_at_a_name_the_console_answers() {
        let with = |extra: &str| problems(&format!("{DOMAIN}{extra}"));
        // Default: system.hostname with the console's port.
        assert!(with("[digest]\nenabled = true\n").is_empty());
        assert!(
            with("[digest]\nenabled = true\nlink_base_url = \"https://192.0.2.1:8443\"\n")
                .is_empty()
        );
        let p = with("[digest]\nenabled = true\nlink_base_url = \"https://mail.hospital.test\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "digest.link_base_url");
        assert!(
            with(
                "[console]\nhostnames = [\"mail.hospital.test\"]\n[digest]\nenabled = true\n\
                      link_base_url = \"https://mail.hospital.test/\"\n"
            )
            .is_empty()
        );
        // Disabled: not checked.
        assert!(with("[digest]\nlink_base_url = \"https://mail.hospital.test\"\n").is_empty());
    }
}
