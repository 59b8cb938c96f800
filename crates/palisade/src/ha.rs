//! `palisade ha create|join|status|failover|unpair`: the pair from the command line. The
//! files are `DIR/ha/` (see `palisade_ha_node::files`); the running `palisade ha` is started
//! or stopped by asking the supervisor to restart it, and asked to fail over on its socket.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use palisade_control::ha::{Request, Response};
use palisade_ha_node::HaDir;
use palisade_ha_node::pairing::{self, PairAction};
use palisade_store::DataDir;
use serde_json::json;

#[derive(Subcommand)]
pub enum HaCmd {
    /// Make this unit the first of a pair: prints the pairing code (shown once; it holds the
    /// pair key) to give to `palisade ha join` on the second unit.
    Create {
        /// The floating address the active unit holds, ADDR/PREFIX (e.g. 192.0.2.25/24).
        #[arg(long)]
        vip: String,
        /// The interface it goes on (the LAN side).
        #[arg(long)]
        interface: String,
        /// This unit's address on the HA link.
        #[arg(long)]
        ha_address: IpAddr,
        /// An address both units should reach (the gateway): a unit that lost its peer takes
        /// over only while the witness answers.
        #[arg(long)]
        witness: Option<IpAddr>,
    },
    /// Make this unit the second of the pair whose code is given. `-` reads the code from
    /// standard input (a code on the command line is visible to other local users in the
    /// process list while the command runs).
    Join {
        code: String,
        /// The first unit's address on the HA link.
        #[arg(long)]
        peer: IpAddr,
        /// This unit's address on the HA link.
        #[arg(long)]
        ha_address: IpAddr,
        /// The LAN interface, when it is named differently here.
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        witness: Option<IpAddr>,
    },
    /// Role, state, peer, last heartbeat.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// On the active unit: hand the address to the peer. On the passive: take it.
    Failover,
    /// Leave the pair (the address is given up; this unit runs standalone).
    Unpair,
}

pub fn run(data: &DataDir, cmd: HaCmd, actor: &str) -> Result<ExitCode> {
    let dir = HaDir::new(data.ha());
    match cmd {
        HaCmd::Create {
            vip,
            interface,
            ha_address,
            witness,
        } => {
            let action = PairAction::Create {
                vip: vip.clone(),
                interface: interface.clone(),
                ha_address,
                witness,
            };
            let done = pairing::apply(data, action, actor, "local")?;
            restart_ha(data);
            println!("paired as the first unit: floating address {vip} on {interface}");
            println!("pairing code (shown once; it holds the pair key):");
            println!("{}", done.code.unwrap_or_default());
            println!(
                "on the second unit: palisade ha join CODE --peer {ha_address} --ha-address ADDR"
            );
            Ok(ExitCode::SUCCESS)
        }
        HaCmd::Join {
            code,
            peer,
            ha_address,
            interface,
            witness,
        } => {
            let code = if code == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim().to_string()
            } else {
                code
            };
            let action = PairAction::Join {
                code,
                peer,
                ha_address,
                interface,
                witness,
            };
            let done = pairing::apply(data, action, actor, "local")?;
            restart_ha(data);
            if let Some(s) = done.settings {
                println!(
                    "joined the pair of {peer}: floating address {}/{} on {}",
                    s.vip, s.prefix_len, s.interface
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        HaCmd::Status { json } => status(&dir, json),
        HaCmd::Failover => {
            if !dir.paired() {
                bail!("this unit is not in a pair");
            }
            let req = Request::Failover {
                actor: actor.to_string(),
                source: "local".into(),
            };
            match palisade_control::ha::request(&data.run(), &req) {
                Ok(Response::Ok { message }) => {
                    println!("{message}");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(Response::Error { message }) => bail!("{message}"),
                Err(e) if e.is_not_running() => bail!("palisade ha is not running on this unit"),
                Err(e) => bail!("palisade ha: {e}"),
            }
        }
        HaCmd::Unpair => {
            if !dir.paired() {
                bail!("this unit is not in a pair");
            }
            pairing::apply(data, PairAction::Unpair, actor, "local")?;
            restart_ha(data);
            println!("unpaired: this unit runs standalone");
            // No peer any more: its replicated messages are ours to deliver.
            let req = palisade_control::engine::ControlRequest::HaAdopt;
            match palisade_control::engine::control_request(&data.control_socket(), &req) {
                Ok(r) if r.ok => {
                    if r.count.unwrap_or(0) > 0 {
                        println!("{}", r.message);
                    }
                }
                Ok(r) => eprintln!(
                    "the peer's replicated messages were not queued: {}",
                    r.message
                ),
                Err(e) if e.is_not_running() => {
                    println!(
                        "(the engine is not running: the peer's replicated messages are queued when it is paired again and taking over, or with `palisade ha unpair` once it runs)"
                    )
                }
                Err(e) => eprintln!("the peer's replicated messages were not queued: {e}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Starts, restarts or stops the running `palisade ha` (the supervisor starts it only while
/// the unit is paired). Without a running supervisor this is done at its next start.
fn restart_ha(data: &DataDir) {
    let req = palisade_control::supervisor::Request::Restart { child: "ha".into() };
    match palisade_control::supervisor::request(&data.run(), &req) {
        Ok(_) => {}
        Err(e) if e.is_not_running() => {
            println!("(palisade is not running: this takes effect when it starts)")
        }
        Err(e) => eprintln!("palisade ha: could not reach the supervisor: {e}"),
    }
}

fn status(dir: &HaDir, json_out: bool) -> Result<ExitCode> {
    if !dir.paired() {
        if json_out {
            println!("{}", json!({"paired": false, "state": "standalone"}));
        } else {
            println!("standalone (not in a pair)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let settings = dir.settings()?;
    let st = dir.status();
    let now = palisade_store::now_unix_ms();
    let running = st.as_ref().is_some_and(|s| s.is_fresh(now));
    if json_out {
        let out = json!({
            "paired": true,
            "running": running,
            "role": if settings.priority >= palisade_ha::pair::CREATE_PRIORITY { "first" } else { "second" },
            "settings": settings,
            "status": st,
            "last_heartbeat_age_ms": st.as_ref().and_then(|s| s.peer.as_ref()).map(|p| now.saturating_sub(p.last_heartbeat_ms)),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "pair:        floating {}/{} on {}, HA link {} port {}",
        settings.vip, settings.prefix_len, settings.interface, settings.ha_address, settings.port
    );
    println!(
        "node:        {:016x}, priority {}",
        settings.node_id, settings.priority
    );
    match &st {
        Some(s) if running => {
            println!(
                "state:       {} (epoch {}){}",
                s.state,
                s.epoch,
                if s.holds_address {
                    ", holds the floating address"
                } else {
                    ""
                }
            );
            println!(
                "engine:      {}",
                if s.engine_healthy {
                    "healthy"
                } else {
                    "NOT healthy"
                }
            );
            if let Some(w) = s.witness {
                println!(
                    "witness:     {w} {}",
                    if s.witness_reachable {
                        "answers"
                    } else {
                        "does NOT answer"
                    }
                );
            }
            match &s.peer {
                Some(p) => println!(
                    "peer:        {} {} (epoch {}, priority {}), last heartbeat {:.1} s ago{}",
                    p.address
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "?".into()),
                    p.state,
                    p.epoch,
                    p.priority,
                    now.saturating_sub(p.last_heartbeat_ms) as f64 / 1000.0,
                    if p.alive { "" } else { " — GONE" }
                ),
                None => println!("peer:        never heard"),
            }
            match &s.replication {
                Some(r) => println!(
                    "replication: {}{}, {} of the peer's messages kept here{}{}",
                    if r.connected {
                        "connected to "
                    } else {
                        "NOT connected to "
                    },
                    r.peer
                        .as_deref()
                        .unwrap_or("the peer (address not known yet)"),
                    r.replicas,
                    if r.unreplicated > 0 {
                        format!(", {} of ours not yet on the peer", r.unreplicated)
                    } else {
                        String::new()
                    },
                    match (&r.error, r.connected) {
                        (Some(e), false) => format!(" ({e})"),
                        _ => String::new(),
                    }
                ),
                None => println!("replication: the engine did not answer"),
            }
            if let Some(c) = &s.last_change {
                println!("last change: {} -> {}: {}", c.from, c.to, c.why);
            }
            if let Some(e) = &s.address_error {
                println!("address:     ERROR {e}");
            }
            let r = &s.refused;
            if r.forged + r.malformed + r.stale + r.own > 0 {
                println!(
                    "refused:     {} forged, {} malformed, {} stale/replayed, {} own",
                    r.forged, r.malformed, r.stale, r.own
                );
            }
        }
        _ => println!("state:       palisade ha is not running"),
    }
    Ok(ExitCode::SUCCESS)
}
