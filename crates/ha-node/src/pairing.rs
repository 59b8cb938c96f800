//! Making and leaving a pair: the one sequence behind `palisade ha create|join|unpair` and the
//! console's requests to the supervisor (ARCHITECTURE.md, "Pairing from the console"). Runs
//! as root: writes `DIR/ha/`, hands it to `palisade-ha`, writes or removes the engine's
//! replication key, and audits with the requester as actor. Starting or stopping the running
//! `palisade ha` is the caller's (the command line asks the supervisor; the supervisor
//! restarts its child).

use std::net::IpAddr;

use palisade_ha::pair::PairSettings;
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

use crate::files::{HaDir, PairError};

/// What to do. `vip` is `ADDR/PREFIX`.
#[derive(Debug, Clone)]
pub enum PairAction {
    Create {
        vip: String,
        interface: String,
        ha_address: IpAddr,
        witness: Option<IpAddr>,
    },
    Join {
        code: String,
        peer: IpAddr,
        ha_address: IpAddr,
        interface: Option<String>,
        witness: Option<IpAddr>,
    },
    Unpair,
}

/// What was done: the pairing code (created only; shown once), the settings written.
#[derive(Debug, Clone)]
pub struct Done {
    pub code: Option<String>,
    pub settings: Option<PairSettings>,
}

/// `ADDR/PREFIX` → (address, prefix length).
pub fn parse_vip(s: &str) -> Result<(IpAddr, u8), PairError> {
    let bad = || PairError::Invalid(format!("vip {s:?}: give ADDR/PREFIX, e.g. 192.0.2.25/24"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        p.trim().parse().map_err(|_| bad())?,
    ))
}

pub fn apply(
    data: &DataDir,
    action: PairAction,
    actor: &str,
    source: &str,
) -> Result<Done, PairError> {
    let dir = HaDir::new(data.ha());
    let (done, audit_action, target, detail) = match action {
        PairAction::Create {
            vip,
            interface,
            ha_address,
            witness,
        } => {
            let (addr, prefix) = parse_vip(&vip)?;
            let code = dir.create(addr, prefix, &interface, ha_address, witness)?;
            (
                Done {
                    code: Some(code),
                    settings: dir.settings().ok(),
                },
                "ha.create",
                vip,
                json!({"interface": interface, "ha_address": ha_address, "witness": witness}),
            )
        }
        PairAction::Join {
            code,
            peer,
            ha_address,
            interface,
            witness,
        } => {
            let s = dir.join(code.trim(), peer, ha_address, interface.as_deref(), witness)?;
            let vip = format!("{}/{}", s.vip, s.prefix_len);
            let detail = json!({"peer": peer, "interface": s.interface,
                "ha_address": ha_address, "witness": witness});
            (
                Done {
                    code: None,
                    settings: Some(s),
                },
                "ha.join",
                vip,
                detail,
            )
        }
        PairAction::Unpair => {
            dir.unpair()?;
            (
                Done {
                    code: None,
                    settings: None,
                },
                "ha.unpair",
                String::new(),
                json!({}),
            )
        }
    };
    hand_over(data)?;
    AuditLog::open(&data.audit_db())
        .and_then(|mut a| {
            a.append(actor, source, audit_action, &target, &detail)
                .map(|_| ())
        })
        .map_err(|e| PairError::Invalid(format!("the change was made but not audited: {e}")))?;
    Ok(done)
}

/// As root, `DIR/ha` goes to palisade-ha (when that user exists: the supervisor creates it);
/// the engine's replication key is written (paired) or removed (unpaired).
fn hand_over(data: &DataDir) -> Result<(), PairError> {
    let keys = data.keys();
    std::fs::create_dir_all(&keys).map_err(|source| PairError::Io { path: keys, source })?;
    HaDir::new(data.ha()).sync_replication_key(&data.replication_key())?;
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let (Ok(Some(user)), Ok(Some(group))) = (
        nix::unistd::User::from_name("palisade-ha"),
        nix::unistd::Group::from_name("palisade"),
    ) else {
        return Ok(());
    };
    crate::files::hand_over(&data.ha(), user.uid, group.gid)
}
