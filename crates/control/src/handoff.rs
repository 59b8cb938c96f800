//! Sockets handed over by the supervisor to its children, and the readiness report back.
//!
//! The supervisor binds every listener (it may need root for port 25) and starts each child
//! with its sockets as inherited descriptors, named in `PALISADE_LISTEN_FDS`
//! (`smtp:3,submission:4`). Readiness goes back as a `READY=1` line on the descriptor named by
//! `PALISADE_NOTIFY_FD`. Started alone (development), a child binds its addresses itself.

// Adopting a descriptor this process inherited is the one thing here that needs `unsafe`:
// the standard library cannot know that nothing else owns it. Each use says why it holds.
#![allow(unsafe_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub const LISTEN_FDS_ENV: &str = "PALISADE_LISTEN_FDS";
pub const NOTIFY_FD_ENV: &str = "PALISADE_NOTIFY_FD";

/// A hand-off that cannot be used (a descriptor that is not open, a malformed variable).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandoffError(pub String);

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
fn adopt(fd: RawFd) -> Result<OwnedFd, HandoffError> {
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table. The descriptor was placed
    // there for us by the supervisor and nothing else in this process owns it; it is adopted
    // exactly once because the environment variable is removed after parsing.
    let open = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1;
    if fd < 3 || !open {
        return Err(HandoffError(format!(
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
    .map_err(|e| HandoffError(format!("descriptor {fd}: {e}")))?;
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
pub fn inherited_listeners(
    roles: &[ListenerRole],
) -> Result<Option<Vec<(ListenerRole, TcpListener)>>, HandoffError> {
    let Ok(spec) = std::env::var(LISTEN_FDS_ENV) else {
        return Ok(None);
    };
    // SAFETY (of the process environment): read once at start, before any other thread
    // looks at the environment.
    unsafe { std::env::remove_var(LISTEN_FDS_ENV) };
    let fds = parse_fds(&spec).map_err(HandoffError)?;
    fds.into_iter()
        .filter(|(role, _)| roles.contains(role))
        .map(|(role, fd)| {
            let l = TcpListener::from(adopt(fd)?);
            l.set_nonblocking(true)
                .map_err(|e| HandoffError(format!("listener {fd}: {e}")))?;
            Ok((role, l))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Tells the supervisor we are serving. Without a supervisor this does nothing.
pub fn notify_ready() {
    let Some(fd) = std::env::var(NOTIFY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    // SAFETY (of the process environment): see `inherited_listeners`.
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
