//! What happens at RCPT: relay control and the recipient's route.
//!
//! Mail for an inbound domain is accepted from anyone; mail for anywhere else only from a
//! trusted network. Address forms that have been used to trick gateways into relaying
//! (`user%other@local`, `a!b@local`, quoted `@`, source routes, address literals) are refused
//! for every client, trusted or not: there is no legitimate use left for them.

use palisade_smtp_proto::{ForwardPath, Notify, RcptParams, Reply};
use palisade_store::Config;

use super::session::relay_denied;
use crate::outbound::route;

/// A recipient the session accepted.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub address: String,
    pub route: String,
    pub notify: Option<Notify>,
    pub orcpt: Option<String>,
}

pub(crate) fn check(
    cfg: &Config,
    trusted: bool,
    to: &ForwardPath,
    params: &RcptParams,
) -> Result<Accepted, Reply> {
    let notify = params.notify;
    let orcpt = params.orcpt.clone();
    let mailbox = match to {
        // RFC 5321 4.5.1: <Postmaster> must always be accepted.
        ForwardPath::Postmaster => {
            return Ok(Accepted {
                address: "postmaster".into(),
                route: route::MAILDIR.into(),
                notify,
                orcpt,
            });
        }
        ForwardPath::Mailbox(m) => m,
    };
    if mailbox.has_relay_hack() || mailbox.domain.starts_with('[') {
        return Err(relay_denied());
    }
    let inbound = cfg.inbound_domain(&mailbox.domain).is_some();
    if !inbound && !trusted {
        return Err(relay_denied());
    }
    Ok(Accepted {
        address: mailbox.to_string(),
        route: route::key(cfg, &mailbox.domain),
        notify,
        orcpt,
    })
}
