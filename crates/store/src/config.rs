//! The typed configuration: every setting Palisade has, its default, and its validation.
//!
//! The TOML form (`palisade config export`) is the review and backup format; `config.db` keeps
//! every revision of it (see `config_store`). Validation never stops at the first problem: a
//! mail engineer importing a file gets every problem at once, each with the path of the field
//! it concerns (`smtp.max_message_size`, `domain[2].smarthosts`), which is also how the console
//! puts an error next to its field.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod antivirus;
mod attachments;
mod authentication;
mod digest;
mod dkim;
mod dlp;
mod encryption;
mod filter;
mod partner;
mod spam;
mod tls_policy;
pub use antivirus::{Antivirus, ClamdAddress, InfectedAction, UnscannableAction};
pub use attachments::{AttachmentAction, Attachments, DEFAULT_SCRIPT_EXTENSIONS};
pub use authentication::{ArcSeal, Authentication, DmarcQuarantineAction, DmarcRejectAction};
pub use digest::Digest;
pub use dkim::{Dkim, DkimSign};
pub use dlp::{BUILT_IN_DETECTORS, Dlp, DlpDictionary, DlpFingerprint, DlpPattern};
pub use encryption::{CryptoFailureAction, Encryption};
pub use filter::{
    AddressGroup, CHECK_NAMES, CheckSettings, Filter, Rule, RuleAction, RuleDirection,
    UninspectableAction, address_matches,
};
pub use palisade_inspect::Limits as InspectLimits;
pub use partner::{Partner, PartnerMethod};
pub use spam::{Dnsbl, DnsblKind, Spam, is_rule_name};
pub use tls_policy::{TlsPolicy, parse_pem_certificates};

/// One thing wrong with a configuration, tied to the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path of the field, `domain[0].name` for array elements; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub system: System,
    pub smtp: Smtp,
    pub tls: Tls,
    pub delivery: Delivery,
    pub outbound: Outbound,
    pub dns: Dns,
    pub console: Console,
    pub supervisor: Supervisor,
    /// Bounds on the MIME view every message gets (see `palisade_inspect::Limits`).
    pub inspect: InspectLimits,
    pub filter: Filter,
    /// The `antivirus` check: clamd's address and what infected or unscannable mail gets.
    pub antivirus: Antivirus,
    /// The `attachments` check: what each category of attachment (by its real type) gets.
    pub attachments: Attachments,
    /// The `authentication` check: SPF, DKIM, DMARC (and what DMARC policies get), ARC.
    pub authentication: Authentication,
    /// The `spam` check: rules, DNS lists, Bayes, and what each score gets.
    pub spam: Spam,
    /// The daily quarantine digest to recipients, with release links (off by default).
    pub digest: Digest,
    /// DKIM signing of outbound mail, per sending domain (the `dkim` check).
    pub dkim: Dkim,
    /// Data-loss prevention: the detectors the `dlp` check runs (rules decide).
    pub dlp: Dlp,
    /// Inbound S/MIME: what decryption and signature failures get, the CAs trusted for signers.
    #[serde(skip_serializing_if = "Encryption::is_default")]
    pub encryption: Encryption,
    /// Inbound domains: mail for these is accepted from anyone and routed internally.
    #[serde(rename = "domain", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<InboundDomain>,
    /// Static outbound routes per destination domain (instead of MX lookup).
    #[serde(rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<StaticRoute>,
    /// TLS per delivery destination, overriding `delivery.tls` (see `config::tls_policy`).
    #[serde(rename = "tls_policy", skip_serializing_if = "Vec::is_empty")]
    pub tls_policies: Vec<TlsPolicy>,
    /// The partner directory: S/MIME certificates of the organisations mail is encrypted to.
    #[serde(rename = "partner", skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<Partner>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct System {
    /// The name this unit uses in its SMTP banner, EHLO, Received headers and bounces.
    pub hostname: String,
    pub ntp_servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// Inbound (MX) listeners: mail for the inbound domains, from anyone.
    pub listen: Vec<SocketAddr>,
    /// Submission listeners: outbound mail from trusted networks or authenticated clients.
    pub submission_listen: Vec<SocketAddr>,
    pub max_message_size: u64,
    pub max_recipients: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// A client must send each whole command line within this time (not per read: a client
    /// trickling one byte at a time does not reset it).
    pub command_timeout_secs: u64,
    /// The longest silence while a message is being received.
    pub data_timeout_secs: u64,
    /// While receiving a message, after `data_rate_grace_secs` the average rate must stay at or
    /// above this many bytes per second; slower clients get `421 4.4.2` (a trickle attack).
    pub min_data_rate: u64,
    pub data_rate_grace_secs: u64,
    /// The longest a session may last, whatever it does.
    pub max_session_secs: u64,
    /// NOOP, RSET, VRFY, EXPN, HELP, HELO/EHLO allowed between two accepted messages.
    pub junk_command_limit: u32,
    /// Stress mode (Postfix's idea): when at least this percentage of `max_connections` is in
    /// use, every session gets `stress_timeout_secs` for a command line, as the DATA silence
    /// limit and as the rate grace, and a junk command limit of 10. And when all connections
    /// are in use, a client from an address holding fewer of them than the busiest address
    /// takes the slot of that address's longest-idle session.
    pub stress_threshold_percent: u32,
    pub stress_timeout_secs: u64,
    /// Clients in these networks may relay to any domain.
    pub trusted_networks: Vec<IpNet>,
    /// Below this much free space on the data partition, new mail gets 452 (try later).
    pub min_free_disk_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain and key for STARTTLS; relative to the data dir. Created
    /// (self-signed, for `system.hostname`) on first start when absent.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundTls {
    /// STARTTLS when offered, any certificate; plaintext otherwise.
    Opportunistic,
    /// STARTTLS must succeed (certificate not verified) or the delivery is deferred.
    Required,
    /// STARTTLS must succeed with a certificate that chains to a trust anchor
    /// (`delivery.ca_file`, the policy's `ca`) and names the host (or one of the policy's
    /// `names`), or the delivery is deferred.
    Verified,
    /// Never STARTTLS (for internal hops that cannot).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// After this long in the queue a message is bounced to its sender.
    pub max_lifetime_secs: u64,
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// Simultaneous connections per destination (route or domain).
    pub max_per_destination: u32,
    /// Simultaneous outgoing connections in total.
    pub max_concurrent: u32,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    /// The port used when delivering to MX hosts.
    pub remote_port: u16,
    /// The TLS mode of destinations without a `[[tls_policy]]`.
    pub tls: OutboundTls,
    /// PEM trust anchors for `verified` TLS (the system's bundle by default).
    pub ca_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Outbound {
    /// If set, all outbound mail without a static route goes to these hosts (in order, with
    /// failover) instead of the recipient domain's MX.
    pub smarthosts: Vec<HostPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Resolvers for MX lookups; empty means the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Console {
    pub listen: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The management network(s): sign-ins from here are never held back by failures from
    /// elsewhere, and get the reserved password-hashing slot while the console is under
    /// attack (see `accounts::throttle`).
    pub trusted_networks: Vec<IpNet>,
    /// The names browsers reach the console by: `name`, `name:port`, an IP address or
    /// `[v6]:port`. The console answers only requests whose `Host` is one of them (a defence
    /// against DNS rebinding) and accepts a state change only when its `Origin` is
    /// `https://` one of them and the same as `Host`. A name without a port matches any port.
    /// Empty (the default): `system.hostname`, `localhost` and any IP address (what a
    /// listener address is; an address can never be a rebound name).
    pub hostnames: Vec<String>,
}

/// One entry of `console.hostnames`, or the authority of a `Host`/`Origin` header: a
/// lowercase host name or IP address (IPv6 without brackets) and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleHost {
    pub host: String,
    pub port: Option<u16>,
}

impl ConsoleHost {
    /// `name`, `name:port`, `192.0.2.1`, `192.0.2.1:443`, `::1`, `[::1]`, `[::1]:8443`.
    /// Host names must be valid (no wildcards); a trailing dot is dropped.
    pub fn parse(s: &str) -> Option<ConsoleHost> {
        let s = s.trim().to_ascii_lowercase();
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            let ip: std::net::Ipv6Addr = ip.parse().ok()?;
            let port = match after {
                "" => None,
                a => Some(port(a.strip_prefix(':')?)?),
            };
            return Some(ConsoleHost {
                host: ip.to_string(),
                port,
            });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(ConsoleHost {
                host: ip.to_string(),
                port: None,
            });
        }
        let (name, p) = match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(port(p)?)),
            None => (s.as_str(), None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.parse::<std::net::Ipv4Addr>().is_err() && !is_valid_domain(name) {
            return None;
        }
        Some(ConsoleHost {
            host: name.to_string(),
            port: p,
        })
    }

    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervisor {
    /// Crash-loop detection: a child that crashes this many times within
    /// `restart_limit_interval_secs` is in the crash-loop state, reported in the service
    /// status, the sd-notify STATUS line, the log, the audit log and the console's banner. It
    /// is still restarted (backoff up to 30 s), and the other services keep running; the state
    /// ends once the child has stayed ready for `restart_limit_interval_secs` (at most 60 s).
    pub restart_limit_burst: u32,
    /// The window of `restart_limit_burst`, in seconds.
    pub restart_limit_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DomainRoute {
    /// Deliver into the local Maildir (`DIR/mailbox/`).
    #[default]
    Maildir,
    /// Relay to internal smarthosts, tried in order.
    Smarthosts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct InboundDomain {
    pub name: String,
    pub route: DomainRoute,
    pub smarthosts: Vec<HostPort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StaticRoute {
    pub domain: String,
    pub smarthosts: Vec<HostPort>,
}

/// `host`, `host:port`, `1.2.3.4:25` or `[2001:db8::1]:25`; port 25 when omitted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{s}': missing ']'"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("'{s}': '{h}' is not an IPv6 address"))?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| format!("'{s}': expected ':port' after ']'"))?,
                ),
            };
            (h.to_string(), port)
        } else if s.matches(':').count() > 1 {
            return Err(format!("'{s}': write IPv6 addresses as [addr]:port"));
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (s.to_string(), None),
            }
        };
        let port = match port {
            None => 25,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("'{s}': '{p}' is not a port number")),
            },
        };
        if host.parse::<IpAddr>().is_err() && !is_valid_domain(&host) {
            return Err(format!(
                "'{s}': '{host}' is neither a host name nor an IP address"
            ));
        }
        Ok(HostPort {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

const MIB: u64 = 1024 * 1024;

impl Default for Config {
    /// The embedded default: works out of the box on a laptop. SMTP on 127.0.0.1:2525 for
    /// `example.test` into the local Maildir, submission on 127.0.0.1:2587 from loopback.
    fn default() -> Self {
        Config {
            system: System::default(),
            smtp: Smtp::default(),
            tls: Tls::default(),
            delivery: Delivery::default(),
            outbound: Outbound::default(),
            dns: Dns::default(),
            console: Console::default(),
            supervisor: Supervisor::default(),
            inspect: InspectLimits::default(),
            filter: Filter::default(),
            antivirus: Antivirus::default(),
            attachments: Attachments::default(),
            authentication: Authentication::default(),
            spam: Spam::default(),
            digest: Digest::default(),
            dkim: Dkim::default(),
            dlp: Dlp::default(),
            encryption: Encryption::default(),
            domains: vec![InboundDomain {
                name: "example.test".into(),
                route: DomainRoute::Maildir,
                smarthosts: vec![],
            }],
            routes: vec![],
            tls_policies: vec![],
            partners: vec![],
        }
    }
}

impl Default for System {
    fn default() -> Self {
        System {
            hostname: "palisade.example.test".into(),
            ntp_servers: vec!["pool.ntp.org".into()],
        }
    }
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            listen: vec!["127.0.0.1:2525".parse().expect("literal")],
            submission_listen: vec!["127.0.0.1:2587".parse().expect("literal")],
            max_message_size: 50 * MIB,
            max_recipients: 100,
            max_connections: 500,
            max_connections_per_ip: 20,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            min_data_rate: 1024,
            data_rate_grace_secs: 30,
            max_session_secs: 3600,
            junk_command_limit: 100,
            stress_threshold_percent: 80,
            stress_timeout_secs: 10,
            trusted_networks: vec![
                "127.0.0.0/8".parse().expect("literal"),
                "::1/128".parse().expect("literal"),
            ],
            min_free_disk_mb: 100,
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            cert: "tls/smtp.crt".into(),
            key: "tls/smtp.key".into(),
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            max_lifetime_secs: 5 * 24 * 3600,
            retry_initial_secs: 300,
            retry_max_secs: 3600,
            max_per_destination: 10,
            max_concurrent: 100,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            remote_port: 25,
            tls: OutboundTls::Opportunistic,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console {
            listen: vec!["127.0.0.1:8443".parse().expect("literal")],
            cert: "tls/console.crt".into(),
            key: "tls/console.key".into(),
            trusted_networks: Vec::new(),
            hostnames: vec![],
        }
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            restart_limit_burst: 10,
            restart_limit_interval_secs: 120,
        }
    }
}

/// Host name syntax (RFC 1123 labels, LDH, at most 253 octets). IDNs must be in A-label form.
pub fn is_valid_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

impl Config {
    /// What a passive unit of an HA pair runs (ARCHITECTURE.md, "Configuration
    /// replication"): the active unit's configuration, with this unit's own identity and
    /// listeners kept — `system.hostname`, the SMTP and submission listeners, the console's
    /// listeners and the names it is reached by.
    pub fn replicated_onto(&self, local: &Config) -> Config {
        let mut c = self.clone();
        c.system.hostname = local.system.hostname.clone();
        c.smtp.listen = local.smtp.listen.clone();
        c.smtp.submission_listen = local.smtp.submission_listen.clone();
        c.console.listen = local.console.listen.clone();
        c.console.hostnames = local.console.hostnames.clone();
        c
    }

    /// Every semantic problem at once. An empty list means the configuration can be applied.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |path: &str, msg: String| p.push(Problem::new(path, msg));

        if !is_valid_domain(&self.system.hostname) {
            bad(
                "system.hostname",
                format!("'{}' is not a valid host name", self.system.hostname),
            );
        }
        for (i, s) in self.system.ntp_servers.iter().enumerate() {
            if s.parse::<IpAddr>().is_err() && !is_valid_domain(s) {
                bad(
                    &format!("system.ntp_servers[{i}]"),
                    format!("'{s}' is neither a host name nor an IP address"),
                );
            }
        }

        for (i, h) in self.console.hostnames.iter().enumerate() {
            if ConsoleHost::parse(h).is_none() {
                bad(
                    &format!("console.hostnames[{i}]"),
                    format!("'{h}' is not a host name, an IP address, or either with :port"),
                );
            }
        }

        let s = &self.smtp;
        if s.listen.is_empty() && s.submission_listen.is_empty() {
            bad(
                "smtp.listen",
                "at least one SMTP or submission listener is needed".into(),
            );
        }
        let mut seen = BTreeSet::new();
        let listeners = [
            ("smtp.listen", &s.listen),
            ("smtp.submission_listen", &s.submission_listen),
            ("console.listen", &self.console.listen),
        ];
        for (path, addrs) in listeners {
            for (i, a) in addrs.iter().enumerate() {
                if a.port() == 0 {
                    bad(
                        &format!("{path}[{i}]"),
                        format!("{a}: port 0 is not allowed"),
                    );
                }
                if !seen.insert(*a) {
                    bad(
                        &format!("{path}[{i}]"),
                        format!("{a} is used by more than one listener"),
                    );
                }
            }
        }
        if !(1024..=2048 * MIB).contains(&s.max_message_size) {
            bad(
                "smtp.max_message_size",
                format!("{} is outside 1024 bytes .. 2 GiB", s.max_message_size),
            );
        }
        if !(1..=10_000).contains(&s.max_recipients) {
            bad(
                "smtp.max_recipients",
                format!("{} is outside 1 .. 10000", s.max_recipients),
            );
        }
        if s.max_connections == 0 {
            bad("smtp.max_connections", "must be at least 1".into());
        }
        if s.max_connections_per_ip == 0 || s.max_connections_per_ip > s.max_connections {
            bad(
                "smtp.max_connections_per_ip",
                format!(
                    "must be between 1 and smtp.max_connections ({})",
                    s.max_connections
                ),
            );
        }
        if !(1..=100).contains(&s.stress_threshold_percent) {
            bad(
                "smtp.stress_threshold_percent",
                format!("{} is outside 1 .. 100", s.stress_threshold_percent),
            );
        }
        if s.junk_command_limit == 0 {
            bad("smtp.junk_command_limit", "must be at least 1".into());
        }
        if !(10..=86400).contains(&s.max_session_secs) {
            bad(
                "smtp.max_session_secs",
                format!("{} is outside 10 .. 86400 seconds", s.max_session_secs),
            );
        }
        if s.min_data_rate > 10 * MIB {
            bad(
                "smtp.min_data_rate",
                format!("{} bytes/s is more than 10 MiB/s", s.min_data_rate),
            );
        }
        for (path, v) in [
            ("smtp.command_timeout_secs", s.command_timeout_secs),
            ("smtp.data_timeout_secs", s.data_timeout_secs),
            ("smtp.data_rate_grace_secs", s.data_rate_grace_secs),
            ("smtp.stress_timeout_secs", s.stress_timeout_secs),
            (
                "delivery.connect_timeout_secs",
                self.delivery.connect_timeout_secs,
            ),
            (
                "delivery.command_timeout_secs",
                self.delivery.command_timeout_secs,
            ),
        ] {
            if !(1..=3600).contains(&v) {
                bad(path, format!("{v} is outside 1 .. 3600 seconds"));
            }
        }
        for (i, n) in s.trusted_networks.iter().enumerate() {
            if n.prefix_len() == 0 {
                bad(
                    &format!("smtp.trusted_networks[{i}]"),
                    format!("{n} trusts the whole internet: that is an open relay"),
                );
            }
        }

        let d = &self.delivery;
        if d.retry_initial_secs == 0 {
            bad("delivery.retry_initial_secs", "must be at least 1".into());
        }
        if d.retry_max_secs < d.retry_initial_secs {
            bad(
                "delivery.retry_max_secs",
                "must not be less than delivery.retry_initial_secs".into(),
            );
        }
        if d.max_lifetime_secs < d.retry_initial_secs {
            bad(
                "delivery.max_lifetime_secs",
                "must not be less than delivery.retry_initial_secs".into(),
            );
        }
        if d.max_per_destination == 0 {
            bad("delivery.max_per_destination", "must be at least 1".into());
        }
        if d.max_concurrent < d.max_per_destination {
            bad(
                "delivery.max_concurrent",
                "must not be less than delivery.max_per_destination".into(),
            );
        }
        if d.remote_port == 0 {
            bad("delivery.remote_port", "port 0 is not allowed".into());
        }

        if self.supervisor.restart_limit_burst == 0 {
            bad(
                "supervisor.restart_limit_burst",
                "must be at least 1".into(),
            );
        }
        if self.supervisor.restart_limit_interval_secs == 0 {
            bad(
                "supervisor.restart_limit_interval_secs",
                "must be at least 1".into(),
            );
        }

        self.filter.problems(&mut bad);
        self.antivirus.problems(&mut bad);
        self.attachments.problems(&mut bad);
        self.authentication.problems(&mut bad);
        self.spam.problems(&mut bad);
        self.digest.problems(self, &mut bad);
        self.dkim.problems(&mut bad);
        self.dlp.problems(&mut bad);
        self.encryption.problems(&mut bad);
        self.tls_policy_problems(&mut bad);
        self.partner_problems(&mut bad);
        for (i, r) in self.filter.rules.iter().enumerate() {
            for name in r.dlp.keys() {
                if !self.dlp.knows(name) {
                    bad(
                        &format!("filter.rule[{i}].dlp.{name}"),
                        format!(
                            "no detector '{name}' (built in: {}; or dictionary:NAME / pattern:NAME / fingerprint:NAME of [dlp])",
                            BUILT_IN_DETECTORS.join(", ")
                        ),
                    );
                }
            }
            if (!r.dlp.is_empty() || r.unscannable.is_some()) && !self.dlp.enabled {
                bad(
                    &format!("filter.rule[{i}]"),
                    "reads the dlp check, which [dlp] enabled = false turns off".into(),
                );
            }
        }
        let l = &self.inspect;
        if l.max_message_bytes < s.max_message_size {
            bad(
                "inspect.max_message_bytes",
                format!(
                    "{} is below smtp.max_message_size ({}): every accepted message would be uninspectable",
                    l.max_message_bytes, s.max_message_size
                ),
            );
        }
        for (path, v) in [
            ("inspect.max_depth", l.max_depth as u64),
            ("inspect.max_parts", l.max_parts as u64),
            ("inspect.max_archive_members", l.max_archive_members as u64),
            (
                "inspect.max_compression_ratio",
                l.max_compression_ratio as u64,
            ),
            ("inspect.max_time_ms", l.max_time_ms),
        ] {
            if v == 0 {
                bad(path, "must be at least 1".into());
            }
        }

        let mut names = BTreeSet::new();
        for (i, dom) in self.domains.iter().enumerate() {
            let path = format!("domain[{i}]");
            if !is_valid_domain(&dom.name) {
                bad(
                    &format!("{path}.name"),
                    format!("'{}' is not a valid domain name", dom.name),
                );
            } else if !names.insert(dom.name.to_ascii_lowercase()) {
                bad(
                    &format!("{path}.name"),
                    format!("'{}' is listed twice", dom.name),
                );
            }
            match dom.route {
                DomainRoute::Smarthosts if dom.smarthosts.is_empty() => bad(
                    &format!("{path}.smarthosts"),
                    "route 'smarthosts' needs at least one host".into(),
                ),
                DomainRoute::Maildir if !dom.smarthosts.is_empty() => bad(
                    &format!("{path}.smarthosts"),
                    "hosts are listed but the route is 'maildir'".into(),
                ),
                _ => {}
            }
        }
        let mut routed = BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let path = format!("route[{i}]");
            let name = r.domain.to_ascii_lowercase();
            if !is_valid_domain(&r.domain) {
                bad(
                    &format!("{path}.domain"),
                    format!("'{}' is not a valid domain name", r.domain),
                );
            } else if names.contains(&name) {
                bad(
                    &format!("{path}.domain"),
                    format!("'{}' is an inbound domain; route it there", r.domain),
                );
            } else if !routed.insert(name) {
                bad(
                    &format!("{path}.domain"),
                    format!("'{}' has two routes", r.domain),
                );
            }
            if r.smarthosts.is_empty() {
                bad(
                    &format!("{path}.smarthosts"),
                    "needs at least one host".into(),
                );
            }
        }
        p
    }

    /// Validates; `Err` carries every problem.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let p = self.problems();
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// Parses and validates a TOML document, collecting every problem: syntax, unknown keys,
    /// wrong types (field by field) and semantics.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| vec![Problem::new("", format!("TOML syntax: {e}"))])?;
        let mut problems = Vec::new();
        let mut cfg = Config::default();
        // Explicit arrays replace the defaults; a file without [[domain]] has no domains.
        cfg.domains.clear();
        for (key, value) in table {
            match key.as_str() {
                "system" => section(&key, value, &mut cfg.system, &mut problems),
                "smtp" => section(&key, value, &mut cfg.smtp, &mut problems),
                "tls" => section(&key, value, &mut cfg.tls, &mut problems),
                "delivery" => section(&key, value, &mut cfg.delivery, &mut problems),
                "outbound" => section(&key, value, &mut cfg.outbound, &mut problems),
                "dns" => section(&key, value, &mut cfg.dns, &mut problems),
                "console" => section(&key, value, &mut cfg.console, &mut problems),
                "supervisor" => section(&key, value, &mut cfg.supervisor, &mut problems),
                "inspect" => section(&key, value, &mut cfg.inspect, &mut problems),
                "filter" => section(&key, value, &mut cfg.filter, &mut problems),
                "antivirus" => section(&key, value, &mut cfg.antivirus, &mut problems),
                "attachments" => section(&key, value, &mut cfg.attachments, &mut problems),
                "authentication" => section(&key, value, &mut cfg.authentication, &mut problems),
                "spam" => section(&key, value, &mut cfg.spam, &mut problems),
                "digest" => section(&key, value, &mut cfg.digest, &mut problems),
                "dkim" => section(&key, value, &mut cfg.dkim, &mut problems),
                "dlp" => section(&key, value, &mut cfg.dlp, &mut problems),
                "encryption" => section(&key, value, &mut cfg.encryption, &mut problems),
                "domain" => cfg.domains = array(&key, value, &mut problems),
                "route" => cfg.routes = array(&key, value, &mut problems),
                "tls_policy" => cfg.tls_policies = array(&key, value, &mut problems),
                "partner" => cfg.partners = array(&key, value, &mut problems),
                other => problems.push(Problem::new(other, "unknown section")),
            }
        }
        // Semantic checks run even after type errors (on the fields that parsed), so one pass
        // reports everything; a field already reported is not reported twice.
        for p in cfg.problems() {
            if !problems.iter().any(|q| q.path == p.path) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configuration always serialises")
    }

    /// The inbound domain entry for `domain`, if mail for it is accepted from anyone.
    pub fn inbound_domain(&self, domain: &str) -> Option<&InboundDomain> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        self.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(domain))
    }

    pub fn static_route(&self, domain: &str) -> Option<&StaticRoute> {
        self.routes
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(domain))
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.smtp.trusted_networks.iter().any(|n| n.contains(&ip))
    }
}

/// Deserialises one `[section]`; on failure, retries key by key so that every bad field is
/// reported under its own path instead of only the first one serde met.
fn section<T: DeserializeOwned + Default>(
    name: &str,
    value: toml::Value,
    out: &mut T,
    problems: &mut Vec<Problem>,
) {
    let toml::Value::Table(table) = value else {
        problems.push(Problem::new(name, "must be a table ([section])"));
        return;
    };
    match T::deserialize(toml::Value::Table(table.clone())) {
        Ok(v) => *out = v,
        Err(whole) => {
            let before = problems.len();
            let mut good = toml::Table::new();
            for (key, v) in table {
                let mut one = toml::Table::new();
                one.insert(key.clone(), v.clone());
                match T::deserialize(toml::Value::Table(one)) {
                    Ok(_) => {
                        good.insert(key, v);
                    }
                    Err(e) => problems.push(Problem::new(format!("{name}.{key}"), clean(&e))),
                }
            }
            if problems.len() == before {
                problems.push(Problem::new(name, clean(&whole)));
            } else if let Ok(v) = T::deserialize(toml::Value::Table(good)) {
                // Keep the fields that were fine, so semantic checks still see them.
                *out = v;
            }
        }
    }
}

fn array<T: DeserializeOwned + Default>(
    name: &str,
    value: toml::Value,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    let toml::Value::Array(items) = value else {
        problems.push(Problem::new(name, format!("must be a list ([[{name}]])")));
        return vec![];
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut v = T::default();
        section(&format!("{name}[{i}]"), item, &mut v, problems);
        out.push(v);
    }
    out
}

/// serde's messages through `toml::Value` carry no useful position; keep only the sentence.
fn clean(e: &toml::de::Error) -> String {
    e.message().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_hostnames_are_validated() {
        let hp = |s: &str| ConsoleHost::parse(s);
        assert_eq!(
            hp("GW.example:8443"),
            Some(ConsoleHost {
                host: "gw.example".into(),
                port: Some(8443)
            })
        );
        assert_eq!(hp("gw.example.").unwrap().host, "gw.example");
        assert_eq!(hp("192.0.2.1").unwrap().port, None);
        assert_eq!(hp("192.0.2.1:443").unwrap().port, Some(443));
        assert_eq!(
            hp("[::1]:8443"),
            Some(ConsoleHost {
                host: "::1".into(),
                port: Some(8443)
            })
        );
        assert_eq!(hp("::1").unwrap().host, "::1");
        for bad in [
            "",
            "*.example",
            "gw:0",
            "gw:99999",
            "gw/x",
            "[::1",
            "[zz]:1",
            "a b",
        ] {
            assert_eq!(hp(bad), None, "{bad}");
        }
        let mut cfg = Config::default();
        cfg.console.hostnames = vec!["gw.example".into(), "https://gw".into()];
        let p = cfg.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "console.hostnames[1]");
    }

    #[test]
    fn default_is_valid_and_round_trips_through_toml() {
        let cfg = Config::default();
        assert_eq!(cfg.problems(), vec![]);
        let text = cfg.to_toml();
        assert_eq!(Config::from_toml(&text).unwrap(), cfg);
    }

    #[test]
    fn collects_every_problem_with_its_path() {
        let text = r#"
            [smtp]
            max_message_size = "big"
            max_recipients = -1
            trusted_networks = ["0.0.0.0/0"]
            bogus = 1

            [delivery]
            retry_initial_secs = 600
            retry_max_secs = 60

            [[domain]]
            name = "bad domain"

            [[domain]]
            name = "ok.test"
            route = "smarthosts"

            [[route]]
            domain = "x.test"
            smarthosts = ["[::1"]

            [colour]
            x = 1
        "#;
        let problems = Config::from_toml(text).unwrap_err();
        let paths: BTreeSet<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "smtp.max_message_size",
            "smtp.max_recipients",
            "smtp.bogus",
            "route[0].smarthosts",
            "colour",
        ] {
            assert!(paths.contains(want), "{want} missing from {problems:#?}");
        }
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let mut cfg = Config::default();
        cfg.smtp.trusted_networks.push("0.0.0.0/0".parse().unwrap());
        cfg.delivery.retry_initial_secs = 600;
        cfg.delivery.retry_max_secs = 60;
        cfg.domains.push(InboundDomain {
            name: "example.test".into(),
            route: DomainRoute::Smarthosts,
            smarthosts: vec![],
        });
        cfg.smtp.submission_listen = cfg.smtp.listen.clone();
        let paths: Vec<_> = cfg.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "smtp.submission_listen[0]",
                "smtp.trusted_networks[2]",
                "delivery.retry_max_secs",
                "domain[1].name",
                "domain[1].smarthosts",
            ]
        );
    }

    #[test]
    fn host_port_forms() {
        let hp: HostPort = "mx.Example.org".parse().unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("mx.example.org", 25));
        let hp: HostPort = "10.0.0.1:2525".parse().unwrap();
        assert_eq!(hp.to_string(), "10.0.0.1:2525");
        let hp: HostPort = "[2001:db8::1]:26".parse().unwrap();
        assert_eq!(hp.to_string(), "[2001:db8::1]:26");
        for bad in ["2001:db8::1", "host:0", "host:x", "bad host", "[::1", ""] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_networks_match_v4_mapped_v6() {
        let cfg = Config::default();
        assert!(cfg.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(cfg.is_trusted("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!cfg.is_trusted("192.0.2.1".parse().unwrap()));
    }
}
