//! The appliance's firmware: which A/B root filesystem slot runs, what each slot holds, and
//! installing a signed update bundle into the inactive slot.
//!
//! This crate owns the conversation with RAUC (the `rauc` command, which talks to the
//! RAUC service over D-Bus). It does not decide policy -- who may update, when to reboot --
//! and it never touches slots, the bootloader or keys itself: RAUC verifies the bundle's
//! signature against the image's keyring, writes the inactive slot and makes it the next
//! boot's primary. Everything returned is `Serialize`, for `palisade system status --json`
//! and the console's System page.

#![forbid(unsafe_code)]

mod rauc;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use rauc::{parse_info, parse_status};

#[cfg(test)]
thread_local! {
    /// A stand-in `rauc` for this thread's tests (no process-wide environment changes).
    static RAUC_OVERRIDE: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// The `rauc` program to run; `PALISADE_RAUC` overrides it (unusual installs).
fn rauc_program() -> PathBuf {
    #[cfg(test)]
    if let Some(p) = RAUC_OVERRIDE.with(|o| o.borrow().clone()) {
        return p;
    }
    std::env::var_os("PALISADE_RAUC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("rauc"))
}

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// No RAUC here: not an appliance image (a development machine), or not installed. The
    /// text says what is missing ("there is no RAUC service (...)").
    #[error("this command works on the appliance (RAUC); on this machine {0}")]
    Unavailable(String),
    /// RAUC ran and refused or failed; `message` is what RAUC said.
    #[error("rauc {command} failed: {message}")]
    Rauc { command: String, message: String },
    /// RAUC answered with something this version does not understand.
    #[error("cannot read rauc's answer: {0}")]
    Parse(String),
    #[error("{path}: {error}")]
    Bundle { path: PathBuf, error: String },
}

/// Both firmware slots and which one runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemStatus {
    /// What bundles must be built for (`palisade-x86_64`).
    pub compatible: String,
    /// Boot name of the running slot (`A`/`B`).
    pub booted: Option<String>,
    /// Slot name the next boot starts first (`rootfs.1`).
    pub boot_primary: Option<String>,
    pub slots: Vec<SlotStatus>,
}

impl SystemStatus {
    /// The slot that runs now.
    pub fn booted_slot(&self) -> Option<&SlotStatus> {
        self.slots.iter().find(|s| s.booted)
    }
    /// The slot an update would be written to.
    pub fn inactive_slot(&self) -> Option<&SlotStatus> {
        self.slots.iter().find(|s| !s.booted && s.class == "rootfs")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// RAUC's slot name, e.g. `rootfs.0`.
    pub name: String,
    pub class: String,
    pub device: String,
    /// The bootloader's name for it (`A`/`B`).
    pub bootname: Option<String>,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// The bootloader's verdict: `good` or `bad`.
    pub boot_status: Option<String>,
    pub booted: bool,
    /// The slot the next boot tries first.
    pub primary: bool,
    /// Version of the bundle last installed into the slot (none for the factory image).
    pub version: Option<String>,
    pub build: Option<String>,
    pub installed_at: Option<String>,
    pub activated_at: Option<String>,
}

/// What an installation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    pub bundle: PathBuf,
    /// Version and build of the installed bundle (from its signed manifest).
    pub version: String,
    pub build: Option<String>,
    /// Slot written (`rootfs.1`) and its boot name (`B`).
    pub slot: Option<String>,
    pub bootname: Option<String>,
    /// The new firmware runs after the next reboot.
    pub reboot_required: bool,
    /// RAUC's progress messages, in order.
    pub log: Vec<String>,
}

/// Reads the slot status (`rauc status --detailed --output-format=json`).
pub fn status() -> Result<SystemStatus, SystemError> {
    let out = run_rauc(&["status", "--detailed", "--output-format=json"], "status")?;
    parse_status(&out.stdout)
}

/// Checks a bundle's signature and compatibility, installs it into the inactive slot and
/// makes that slot the next boot's primary (`rauc install`). The running slot is never
/// written; the new firmware starts at the next reboot, and if it never becomes ready the
/// appliance falls back to the running one (see the image's boot check).
pub fn install_update(bundle: &Path) -> Result<InstallReport, SystemError> {
    let bundle = std::path::absolute(bundle).map_err(|e| SystemError::Bundle {
        path: bundle.to_path_buf(),
        error: e.to_string(),
    })?;
    if !bundle.is_file() {
        return Err(SystemError::Bundle {
            path: bundle,
            error: "no such file".into(),
        });
    }
    let path = bundle.to_string_lossy().into_owned();
    // `rauc info` verifies the signature too, so a bad bundle is refused before anything
    // is written, with the signature error as the message.
    let info = run_rauc(&["info", "--output-format=json", &path], "info")?;
    let (version, build) = parse_info(&info.stdout)?;
    tracing::info!(event = "system.update_start", bundle = %path, version = %version);
    let out = run_rauc(&["install", &path], "install")?;
    let log: Vec<String> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let after = status()?;
    let primary = after
        .boot_primary
        .as_deref()
        .and_then(|p| after.slots.iter().find(|s| s.name == p));
    tracing::info!(event = "system.update_installed", version = %version,
        slot = primary.map(|s| s.name.as_str()).unwrap_or("?"));
    Ok(InstallReport {
        bundle,
        version,
        build,
        slot: primary.map(|s| s.name.clone()),
        bootname: primary.and_then(|s| s.bootname.clone()),
        reboot_required: primary.is_some_and(|s| !s.booted),
        log,
    })
}

struct Output {
    stdout: String,
    stderr: String,
}

fn run_rauc(args: &[&str], command: &str) -> Result<Output, SystemError> {
    let program = rauc_program();
    let out = std::process::Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            SystemError::Unavailable(format!(
                "there is no RAUC (cannot run {}: {e})",
                program.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        if rauc::no_service(&stderr, &stdout) {
            return Err(SystemError::Unavailable(format!(
                "there is no RAUC service (rauc {command}: {})",
                rauc::error_message(&stderr, &stdout, out.status)
            )));
        }
        return Err(SystemError::Rauc {
            command: command.to_owned(),
            message: rauc::error_message(&stderr, &stdout, out.status),
        });
    }
    Ok(Output { stdout, stderr })
}

#[cfg(test)]
mod tests;
