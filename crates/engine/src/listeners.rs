//! Sockets handed over by the supervisor, and the readiness report back to it.
//!
//! The supervisor binds every listener (it may need root for port 25) and starts the engine
//! with them as inherited descriptors, named in `PALISADE_LISTEN_FDS` (`smtp:3,submission:4`).
//! Readiness goes back as a `READY=1` line on the descriptor named by `PALISADE_NOTIFY_FD`.
//! Started alone (development), the engine binds the configured addresses itself.

#![allow(unsafe_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use palisade_store::Config;

use crate::EngineError;

pub const LISTEN_FDS_ENV: &str = "PALISADE_LISTEN_FDS";
pub const NOTIFY_FD_ENV: &str = "PALISADE_NOTIFY_FD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRole {
    /// Port 25: mail for the inbound domains from anyone; relay from trusted networks.
    Smtp,
    /// Port 587: outbound mail from trusted networks.
    Submission,
    /// The console's HTTPS listener (handed to the console, not the engine).
    Console,
}

impl ListenerRole {
    pub fn name(self) -> &'static str {
        match self {
            ListenerRole::Smtp => "smtp",
            ListenerRole::Submission => "submission",
            ListenerRole::Console => "console",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "smtp" => Some(ListenerRole::Smtp),
            "submission" => Some(ListenerRole::Submission),
            "console" => Some(ListenerRole::Console),
            _ => None,
        }
    }
}

/// Takes ownership of an inherited descriptor after checking that it is open.
fn adopt(fd: RawFd) -> Result<OwnedFd, EngineError> {
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table. The descriptor was placed
    // there for us by the supervisor and nothing else in this process owns it; it is adopted
    // exactly once because the environment variable is removed after parsing.
    let open = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1;
    if fd < 3 || !open {
        return Err(EngineError::Listener(format!(
            "inherited descriptor {fd} is not open"
        )));
    }
    // SAFETY: see above: the descriptor is open and owned by nobody else in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not inherited any further.
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| EngineError::Listener(format!("descriptor {fd}: {e}")))?;
    Ok(owned)
}

/// Parses `role:fd,role:fd`.
pub fn parse_fds(spec: &str) -> Result<Vec<(ListenerRole, RawFd)>, String> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (role, fd) = item
                .split_once(':')
                .ok_or_else(|| format!("'{item}': expected role:fd"))?;
            let role = ListenerRole::parse(role).ok_or_else(|| format!("unknown role '{role}'"))?;
            let fd = fd
                .parse()
                .map_err(|_| format!("'{fd}' is not a descriptor"))?;
            Ok((role, fd))
        })
        .collect()
}

/// The listeners the supervisor handed over for `roles` (others are left alone, they belong to
/// another child), or `None` when there is no supervisor. Shared by every child that serves
/// sockets (engine, console).
pub fn inherited(
    roles: &[ListenerRole],
) -> Result<Option<Vec<(ListenerRole, TcpListener)>>, EngineError> {
    let Ok(spec) = std::env::var(LISTEN_FDS_ENV) else {
        return Ok(None);
    };
    // SAFETY (of the process environment): read once at start, before any other thread
    // looks at the environment.
    unsafe { std::env::remove_var(LISTEN_FDS_ENV) };
    let fds = parse_fds(&spec).map_err(EngineError::Listener)?;
    fds.into_iter()
        .filter(|(role, _)| roles.contains(role))
        .map(|(role, fd)| {
            let l = TcpListener::from(adopt(fd)?);
            l.set_nonblocking(true).map_err(|e| EngineError::Io {
                context: format!("listener {fd}"),
                source: e,
            })?;
            Ok((role, l))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The engine's listeners: inherited if the supervisor passed them, else bound here.
pub(crate) fn take(cfg: &Config) -> Result<Vec<(ListenerRole, TcpListener)>, EngineError> {
    if let Some(l) = inherited(&[ListenerRole::Smtp, ListenerRole::Submission])? {
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

/// Tells the supervisor we are serving. Without a supervisor this does nothing.
pub fn notify_ready() {
    let Some(fd) = std::env::var(NOTIFY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    // SAFETY (of the process environment): see `take`.
    unsafe { std::env::remove_var(NOTIFY_FD_ENV) };
    match adopt(fd) {
        Ok(fd) => {
            let mut f = std::fs::File::from(fd);
            if let Err(e) = f.write_all(b"READY=1\n") {
                tracing::warn!(event = "child.notify_failed", error = %e);
            }
        }
        Err(e) => tracing::warn!(event = "child.notify_failed", error = %e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_spec() {
        assert_eq!(
            parse_fds("smtp:3,submission:4").unwrap(),
            vec![(ListenerRole::Smtp, 3), (ListenerRole::Submission, 4)]
        );
        assert!(parse_fds("smtp=3").is_err());
        assert!(parse_fds("ftp:3").is_err());
    }
}
