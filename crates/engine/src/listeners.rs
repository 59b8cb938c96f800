//! The engine's listening sockets: handed over by the supervisor (the conventions live in
//! `palisade_control::handoff`), or, when the engine is started alone (development), bound
//! here from the configuration.

use std::net::TcpListener;

// Re-exported for the engine's modules (`inbound` names it as `crate::listeners::ListenerRole`).
pub(crate) use palisade_control::ListenerRole;
use palisade_store::Config;

use crate::EngineError;

/// The engine's listeners: inherited if the supervisor passed them, else bound here.
pub(crate) fn take(cfg: &Config) -> Result<Vec<(ListenerRole, TcpListener)>, EngineError> {
    let inherited =
        palisade_control::inherited_listeners(&[ListenerRole::Smtp, ListenerRole::Submission])
            .map_err(|e| EngineError::Listener(e.to_string()))?;
    if let Some(l) = inherited {
        return Ok(l);
    }
    let mut out = Vec::new();
    let wanted = cfg
        .smtp
        .listen
        .iter()
        .map(|a| (ListenerRole::Smtp, a))
        .chain(
            cfg.smtp
                .submission_listen
                .iter()
                .map(|a| (ListenerRole::Submission, a)),
        );
    for (role, addr) in wanted {
        let l = TcpListener::bind(addr).map_err(|e| EngineError::Io {
            context: format!("bind {addr}"),
            source: e,
        })?;
        l.set_nonblocking(true).map_err(|e| EngineError::Io {
            context: format!("listener {addr}"),
            source: e,
        })?;
        out.push((role, l));
    }
    Ok(out)
}
