//! Where a recipient's mail goes next: the local Maildir, an inbound domain's internal
//! smarthosts, a static route, the outbound smarthosts, or the domain's MX hosts.
//!
//! Routes are decided from the configuration in force at delivery time (not at acceptance), so
//! an admin who changes a route sees queued mail follow it.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use palisade_smtp_proto::Reply;
use palisade_store::Config;
use palisade_store::config::{DomainRoute, HostPort};

pub(crate) const MAILDIR: &str = "maildir";

/// The destination key: deliveries are grouped, limited and connections reused per key.
pub(crate) fn key(cfg: &Config, domain: &str) -> String {
    let domain = domain.to_ascii_lowercase();
    if let Some(d) = cfg.inbound_domain(&domain) {
        return match d.route {
            DomainRoute::Maildir => MAILDIR.into(),
            DomainRoute::Smarthosts => format!("domain:{}", d.name.to_ascii_lowercase()),
        };
    }
    if let Some(r) = cfg.static_route(&domain) {
        return format!("route:{}", r.domain.to_ascii_lowercase());
    }
    if !cfg.outbound.smarthosts.is_empty() {
        return "smarthost".into();
    }
    format!("mx:{domain}")
}

/// The route key of a whole address: `postmaster` (no domain) is delivered locally.
pub fn for_address(cfg: &Config, address: &str) -> String {
    match domain_of(address) {
        Some(d) => key(cfg, d),
        None => MAILDIR.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Destination {
    Maildir,
    /// Fixed hosts, tried in order.
    Hosts(Vec<HostPort>),
    /// The domain's MX hosts (RFC 5321 5.1).
    Mx(String),
}

/// The domain part of an envelope address (`postmaster` has none).
pub(crate) fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d)
}

pub(crate) fn destination(cfg: &Config, address: &str) -> (String, Destination) {
    let Some(domain) = domain_of(address) else {
        return (MAILDIR.into(), Destination::Maildir);
    };
    let key = key(cfg, domain);
    let dest = if key == MAILDIR {
        Destination::Maildir
    } else if let Some(d) = cfg.inbound_domain(domain) {
        Destination::Hosts(d.smarthosts.clone())
    } else if let Some(r) = cfg.static_route(domain) {
        Destination::Hosts(r.smarthosts.clone())
    } else if !cfg.outbound.smarthosts.is_empty() {
        Destination::Hosts(cfg.outbound.smarthosts.clone())
    } else {
        Destination::Mx(domain.to_ascii_lowercase())
    };
    (key, dest)
}

/// One address to connect to, with the name it was found under (for SNI and logs).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]:{}", self.name, self.addr.ip(), self.addr.port())
    }
}

/// Why no host could be found, as the reply the recipients get: 5xx when permanent (the
/// domain does not exist, or publishes a null MX), 4xx when DNS or the hosts may recover.
#[derive(Debug, Clone)]
pub(crate) struct ResolveError(pub Reply);

/// At most this many addresses are tried per delivery attempt.
const MAX_TARGETS: usize = 10;

pub(crate) fn resolver(cfg: &Config) -> Option<TokioResolver> {
    let built = if cfg.dns.nameservers.is_empty() {
        TokioResolver::builder_tokio().and_then(|b| b.build())
    } else {
        let servers = cfg
            .dns
            .nameservers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
        .build()
    };
    match built {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(event = "dns.unavailable", error = %e, "no DNS resolver: MX delivery will be deferred");
            None
        }
    }
}

/// The client's forward-confirmed reverse DNS name: a PTR name of `ip` whose own addresses
/// include `ip` (the name a filter may trust), lower case, without the final dot: `Some(None)`
/// when DNS answered that there is none, `None` when the lookups failed or did not finish
/// within 5 s. At most 3 PTR names are tried.
pub(crate) async fn verified_name(resolver: &TokioResolver, ip: IpAddr) -> Option<Option<String>> {
    let lookup = async {
        let ptr = match resolver.reverse_lookup(ip).await {
            Ok(p) => p,
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => return Some(None),
            Err(e) => {
                tracing::debug!(event = "dns.ptr_failed", %ip, error = %e);
                return None;
            }
        };
        let names: Vec<String> = ptr
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(name) => Some(name.to_utf8()),
                _ => None,
            })
            .take(3)
            .collect();
        for name in names {
            if let Ok(ips) = resolver.lookup_ip(name.as_str()).await
                && ips.iter().any(|a| a == ip)
            {
                return Some(Some(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        Some(None)
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), lookup)
        .await
        .ok()
        .flatten()
}

async fn addresses(
    resolver: Option<&TokioResolver>,
    name: &str,
    port: u16,
) -> Result<Vec<Target>, String> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![Target {
            name: name.to_string(),
            addr: SocketAddr::new(ip, port),
        }]);
    }
    let resolver = resolver.ok_or_else(|| "no DNS resolver".to_string())?;
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let ips = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(ips
        .iter()
        .map(|ip| Target {
            name: name.to_string(),
            addr: SocketAddr::new(ip, port),
        })
        .collect())
}

pub(crate) async fn targets(
    resolver: Option<&TokioResolver>,
    dest: &Destination,
    mx_port: u16,
) -> Result<Vec<Target>, ResolveError> {
    let temp = |message: String| ResolveError(Reply::new(451, "4.4.3", message));
    let mut out = Vec::new();
    let mut errors = Vec::new();
    match dest {
        Destination::Maildir => {}
        Destination::Hosts(hosts) => {
            for h in hosts {
                match addresses(resolver, &h.host, h.port).await {
                    Ok(t) => out.extend(t),
                    Err(e) => errors.push(e),
                }
            }
        }
        Destination::Mx(domain) => {
            let resolver = resolver.ok_or_else(|| temp("no DNS resolver".into()))?;
            let fqdn = format!("{domain}.");
            let mut mxs: Vec<(u16, String)> = match resolver.mx_lookup(fqdn.as_str()).await {
                Ok(lookup) => lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_utf8())),
                        _ => None,
                    })
                    .collect(),
                Err(e) if e.is_nx_domain() => {
                    return Err(ResolveError(Reply::new(
                        550,
                        "5.1.2",
                        format!("{domain}: domain does not exist"),
                    )));
                }
                // No MX records: the domain itself is the implicit MX (RFC 5321 5.1).
                Err(e) if e.is_no_records_found() => vec![(0, domain.clone())],
                Err(e) => return Err(temp(format!("{domain}: MX lookup failed: {e}"))),
            };
            let null_mx = mxs.iter().any(|(_, name)| name == "." || name.is_empty());
            if null_mx {
                return Err(ResolveError(Reply::new(
                    556,
                    "5.1.10",
                    format!("{domain} does not accept mail (null MX)"),
                )));
            }
            mxs.sort_by_key(|(pref, _)| *pref);
            for (_, name) in mxs {
                let name = name.trim_end_matches('.').to_string();
                match addresses(Some(resolver), &name, mx_port).await {
                    Ok(t) => out.extend(t),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    out.truncate(MAX_TARGETS);
    if out.is_empty() {
        return Err(temp(format!(
            "no reachable host: {}",
            if errors.is_empty() {
                "none configured".into()
            } else {
                errors.join("; ")
            }
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_store::config::{InboundDomain, StaticRoute};

    #[test]
    fn keys_and_destinations() {
        let mut cfg = Config::default();
        cfg.domains.push(InboundDomain {
            name: "hospital.test".into(),
            route: DomainRoute::Smarthosts,
            smarthosts: vec!["10.0.0.1:25".parse().unwrap()],
        });
        cfg.routes.push(StaticRoute {
            domain: "partner.test".into(),
            smarthosts: vec!["gw.partner.test".parse().unwrap()],
        });
        assert_eq!(
            destination(&cfg, "a@EXAMPLE.test"),
            ("maildir".into(), Destination::Maildir)
        );
        assert_eq!(destination(&cfg, "postmaster").1, Destination::Maildir);
        let (k, d) = destination(&cfg, "b@hospital.test");
        assert_eq!(k, "domain:hospital.test");
        assert_eq!(d, Destination::Hosts(vec!["10.0.0.1:25".parse().unwrap()]));
        assert_eq!(destination(&cfg, "c@partner.test").0, "route:partner.test");
        assert_eq!(
            destination(&cfg, "d@Elsewhere.org"),
            (
                "mx:elsewhere.org".into(),
                Destination::Mx("elsewhere.org".into())
            )
        );
        cfg.outbound.smarthosts = vec!["relay.test:2525".parse().unwrap()];
        assert_eq!(destination(&cfg, "d@elsewhere.org").0, "smarthost");
    }
}
