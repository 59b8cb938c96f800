//! Starting one child: `palisade <role>` with its sockets at fixed descriptors, a readiness
//! pipe, and (as root) its own user, no supplementary groups, no capabilities (but the ambient
//! ones its spec names: `palisade ha` keeps CAP_NET_ADMIN and CAP_NET_RAW), no way to gain
//! privileges, and death when the supervisor dies.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

use palisade_control::{LISTEN_FDS_ENV, ListenerRole, NOTIFY_FD_ENV};
use tokio::net::unix::pipe;

use crate::setup::Account;

/// What to start and with what.
pub(crate) struct ChildSpec {
    pub name: &'static str,
    /// The subcommand: `engine`, `console`.
    pub command: &'static str,
    pub account: Option<Account>,
    pub group: Option<nix::unistd::Gid>,
    /// Listening sockets to hand over, with the role each serves.
    pub sockets: Vec<(ListenerRole, OwnedFd)>,
    /// Capabilities the child keeps as ambient ones after leaving root (`CAP_*` numbers;
    /// `palisade ha`: CAP_NET_ADMIN and CAP_NET_RAW). Empty for every other child.
    pub ambient_caps: &'static [u32],
    /// The child runs only while this file exists (`palisade ha`: `DIR/ha/pair.toml`).
    pub only_if: Option<PathBuf>,
}

impl ChildSpec {
    pub fn wanted(&self) -> bool {
        self.only_if.as_ref().is_none_or(|p| p.exists())
    }
}

/// `struct __user_cap_header_struct` / `__user_cap_data_struct` of capset(2), version 3.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

pub(crate) struct Started {
    pub child: tokio::process::Child,
    /// Becomes readable with `READY=1` when the child serves; EOF if it dies first.
    pub ready: pipe::Receiver,
}

/// First descriptor number the child sees its sockets at (after stdin/out/err).
const FIRST_FD: RawFd = 3;
/// Sources are first copied above this so `dup2` into 3.. can never clobber another source.
const HIGH_FD: RawFd = 100;

/// The program to start, opened once by the supervisor. Children are started through
/// `/proc/self/fd/N`, so a service user can run the binary even where it could not walk the
/// path to it (a development build under root's home), and an upgrade that replaces the file
/// on disk does not change what a restart runs.
pub(crate) struct Program {
    file: std::fs::File,
}

impl Program {
    pub fn open(path: &std::path::Path) -> std::io::Result<Program> {
        Ok(Program {
            file: std::fs::File::open(path)?,
        })
    }
}

pub(crate) fn spawn(exe: &Program, data: &PathBuf, spec: &ChildSpec) -> std::io::Result<Started> {
    let (ready_rx, ready_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;

    // (source descriptor in the parent, number it gets in the child)
    let mut pairs: Vec<(RawFd, RawFd)> = Vec::new();
    let mut names = Vec::new();
    for (i, (role, sock)) in spec.sockets.iter().enumerate() {
        let target = FIRST_FD + i as RawFd;
        pairs.push((sock.as_raw_fd(), target));
        names.push(format!("{}:{target}", role.name()));
    }
    let notify_target = FIRST_FD + spec.sockets.len() as RawFd;
    pairs.push((ready_tx.as_raw_fd(), notify_target));
    // Scratch space for the child, allocated before the fork.
    let mut high: Vec<RawFd> = vec![-1; pairs.len()];

    let mut cmd = std::process::Command::new(format!("/proc/self/fd/{}", exe.file.as_raw_fd()));
    cmd.arg0("palisade")
        .arg("--data")
        .arg(data)
        .arg(spec.command)
        .env(LISTEN_FDS_ENV, names.join(","))
        .env(NOTIFY_FD_ENV, notify_target.to_string())
        // The child reports to us, never to systemd directly.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null());
    let drop_to = spec.account.map(|a| {
        (
            a.uid.as_raw(),
            spec.group.map(|g| g.as_raw()).unwrap_or(a.gid.as_raw()),
        )
    });
    let parent = nix::unistd::getpid().as_raw();
    // The capability sets the child keeps, computed before the fork (all below 32).
    let caps_mask: u32 = spec.ambient_caps.iter().fold(0, |m, &c| m | (1u32 << c));
    let ambient = spec.ambient_caps;
    let keep_caps = drop_to.is_some() && caps_mask != 0;

    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called. It calls raw syscalls only (dup2, setgroups,
    // setgid, setuid, capset, prctl, umask, getppid) on values computed before the fork (the
    // capset structures live on the child's stack), and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            use nix::libc;
            for (i, &(src, _)) in pairs.iter().enumerate() {
                high[i] = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, HIGH_FD);
                if high[i] == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // dup2 clears close-on-exec on the target: exactly these survive the exec.
            for (i, &(_, target)) in pairs.iter().enumerate() {
                if libc::dup2(high[i], target) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = drop_to {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) == -1 || libc::setgid(gid) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // Keep the permitted set across setuid only when some capabilities are to
                // stay; capset then cuts it down to exactly those.
                if keep_caps && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setuid(uid) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if keep_caps {
                    let mut header = CapHeader {
                        version: LINUX_CAPABILITY_VERSION_3,
                        pid: 0,
                    };
                    let mut data = [
                        CapData {
                            effective: caps_mask,
                            permitted: caps_mask,
                            inheritable: caps_mask,
                        },
                        CapData {
                            effective: 0,
                            permitted: 0,
                            inheritable: 0,
                        },
                    ];
                    if libc::syscall(
                        libc::SYS_capset,
                        &mut header as *mut CapHeader,
                        data.as_mut_ptr(),
                    ) == -1
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    for &cap in ambient {
                        if libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                            cap as libc::c_ulong,
                            0 as libc::c_ulong,
                            0 as libc::c_ulong,
                        ) == -1
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Leaving uid 0 this way clears every capability; make sure of it.
                if libc::setuid(0) != -1 {
                    // No allocation between fork and exec: a bare errno.
                    return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Set after the uid change, which would clear it. If the supervisor died before
            // this line the child would never be told, so check.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            libc::umask(0o007);
            Ok(())
        });
    }
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(false)
        .spawn()?;
    // Our copy of the write end must go, or the pipe never reports EOF when the child dies.
    drop(ready_tx);
    let ready = pipe::Receiver::from_owned_fd(ready_rx)?;
    Ok(Started { child, ready })
}
