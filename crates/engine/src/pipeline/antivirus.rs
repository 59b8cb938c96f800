//! The `antivirus` check: the whole message streamed to a real clamd (INSTREAM), which parses
//! the MIME and unpacks archives itself; then, with `antivirus.scan_parts`, every attachment as
//! our own MIME view decoded it, so a part clamd's parser missed (a broken boundary, an odd
//! encoding) is scanned too. Encrypted archive members, and anything over
//! `antivirus.max_scan_bytes` or refused by clamd for a limit, make the message unscannable:
//! `antivirus.unscannable` decides, never "clean". clamd unreachable or too slow is a failure
//! of the check (its failure mode, tempfail by default).

use std::path::Path;
use std::sync::Arc;

use clamav_client::tokio::{Socket, Tcp};
use palisade_inspect::PartKind;
use palisade_policy::{Action, Decision, Explanation, Reply, Scope};
use palisade_store::config::{Antivirus, ClamdAddress, InfectedAction, UnscannableAction};
use serde::Serialize;
use serde_json::json;

use super::{Check, CheckFuture, Findings, Subject};

/// The header a message clamd could not fully scan carries when `antivirus.unscannable` is
/// `deliver`.
pub const UNSCANNABLE_HEADER: &str = "X-Palisade-Antivirus";

/// clamd's answer for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanReply {
    Clean,
    /// The signature names.
    Infected(Vec<String>),
    /// clamd refused the stream for a limit (size, recursion, …): the content was not seen.
    Limit(String),
    /// Anything else clamd said that is not a verdict: a failure of the check.
    Error(String),
}

/// Parses clamd's reply to `zINSTREAM` (`stream: OK`, `stream: NAME FOUND`,
/// `INSTREAM size limit exceeded. ERROR`, `... ERROR`), NUL- or newline-terminated.
pub fn parse_reply(raw: &[u8]) -> ScanReply {
    let text = String::from_utf8_lossy(raw);
    let mut found = Vec::new();
    let mut last = String::new();
    for line in text
        .split(['\0', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let body = line.strip_prefix("stream:").map(str::trim).unwrap_or(line);
        if let Some(name) = body.strip_suffix(" FOUND") {
            let name = name.trim();
            // clamd's heuristics for what it could not look into (AlertExceedsMax,
            // AlertEncrypted): the content was not seen, which is not a virus found.
            if name.starts_with("Heuristics.Limits.Exceeded")
                || name.starts_with("Heuristics.Encrypted")
            {
                return ScanReply::Limit(name.to_string());
            }
            found.push(name.to_string());
        } else if body == "OK" {
            // nothing
        } else if body.ends_with("ERROR") {
            let lower = body.to_ascii_lowercase();
            return if lower.contains("limit") || lower.contains("exceeded") {
                ScanReply::Limit(body.to_string())
            } else {
                ScanReply::Error(body.to_string())
            };
        } else {
            last = body.to_string();
        }
    }
    if !found.is_empty() {
        ScanReply::Infected(found)
    } else if text.contains("OK") {
        ScanReply::Clean
    } else if last.is_empty() {
        ScanReply::Error("clamd closed the connection without an answer".into())
    } else {
        ScanReply::Error(format!("unexpected answer from clamd: {last}"))
    }
}

/// A connection to clamd: its socket, by address.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
}

impl Clamd {
    pub fn new(address: ClamdAddress) -> Clamd {
        Clamd { address }
    }

    pub fn address(&self) -> &ClamdAddress {
        &self.address
    }

    fn unreachable(&self, e: std::io::Error) -> String {
        format!("clamd at {} did not answer: {e}", self.address)
    }

    pub async fn scan_file(&self, path: &Path) -> Result<ScanReply, String> {
        let r = match &self.address {
            ClamdAddress::Unix(p) => {
                let c = Socket { socket_path: p };
                clamav_client::tokio::scan_file(path, c, Some(64 * 1024)).await
            }
            ClamdAddress::Tcp(a) => {
                let c = Tcp {
                    host_address: a.as_str(),
                };
                clamav_client::tokio::scan_file(path, c, Some(64 * 1024)).await
            }
        };
        r.map(|raw| parse_reply(&raw))
            .map_err(|e| self.unreachable(e))
    }

    pub async fn scan_bytes(&self, bytes: &[u8]) -> Result<ScanReply, String> {
        let r = match &self.address {
            ClamdAddress::Unix(p) => {
                let c = Socket { socket_path: p };
                clamav_client::tokio::scan_buffer(bytes, c, Some(64 * 1024)).await
            }
            ClamdAddress::Tcp(a) => {
                let c = Tcp {
                    host_address: a.as_str(),
                };
                clamav_client::tokio::scan_buffer(bytes, c, Some(64 * 1024)).await
            }
        };
        r.map(|raw| parse_reply(&raw))
            .map_err(|e| self.unreachable(e))
    }

    /// clamd's `VERSION`: `ClamAV 1.4.6/27480/Mon Dec  1 09:23:52 2026` (engine, signature
    /// version, signature date); only the engine when it loaded no official database.
    pub async fn version(&self) -> Result<String, String> {
        let r = match &self.address {
            ClamdAddress::Unix(p) => {
                clamav_client::tokio::get_version(Socket { socket_path: p }).await
            }
            ClamdAddress::Tcp(a) => {
                clamav_client::tokio::get_version(Tcp {
                    host_address: a.as_str(),
                })
                .await
            }
        };
        r.map(|raw| {
            String::from_utf8_lossy(&raw)
                .trim_end_matches(['\0', '\n'])
                .to_string()
        })
        .map_err(|e| self.unreachable(e))
    }

    /// Asks clamd to reload its signature databases (after `palisade av update`).
    pub async fn reload(&self) -> Result<(), String> {
        let r = match &self.address {
            ClamdAddress::Unix(p) => clamav_client::tokio::reload(Socket { socket_path: p }).await,
            ClamdAddress::Tcp(a) => {
                clamav_client::tokio::reload(Tcp {
                    host_address: a.as_str(),
                })
                .await
            }
        };
        let raw = r.map_err(|e| self.unreachable(e))?;
        if raw.starts_with(b"RELOADING") {
            Ok(())
        } else {
            Err(format!(
                "clamd answered RELOAD with {:?}",
                String::from_utf8_lossy(&raw)
            ))
        }
    }
}

/// One stream sent to clamd, for the facts.
#[derive(Debug, Serialize)]
struct Scanned {
    /// `message`, or the part's path (`report.zip`, `1.2`).
    what: String,
    bytes: u64,
    result: String,
}

pub struct AntivirusCheck {
    clamd: Clamd,
    infected: InfectedAction,
    unscannable: UnscannableAction,
    max_scan_bytes: u64,
    scan_parts: bool,
}

impl AntivirusCheck {
    /// `None` when the configuration's clamd address is invalid (validation refuses such a
    /// configuration, so this does not happen in a running engine).
    pub fn from_config(cfg: &Antivirus) -> Option<AntivirusCheck> {
        Some(AntivirusCheck {
            clamd: Clamd::new(cfg.address().ok()?),
            infected: cfg.infected,
            unscannable: cfg.unscannable,
            max_scan_bytes: cfg.max_scan_bytes,
            scan_parts: cfg.scan_parts,
        })
    }
}

impl Check for AntivirusCheck {
    fn name(&self) -> &str {
        "antivirus"
    }

    fn run(&self, subject: Subject) -> CheckFuture {
        let clamd = self.clamd.clone();
        let (infected, unscannable, max, scan_parts) = (
            self.infected,
            self.unscannable,
            self.max_scan_bytes,
            self.scan_parts,
        );
        Box::pin(async move {
            let Some(content) = subject.content.clone() else {
                return Err("no content file to scan".to_string());
            };
            scan(
                &clamd,
                &subject,
                &content,
                max,
                scan_parts,
                infected,
                unscannable,
            )
            .await
        })
    }
}

async fn scan(
    clamd: &Clamd,
    subject: &Subject,
    content: &Arc<Path>,
    max: u64,
    scan_parts: bool,
    infected_action: InfectedAction,
    unscannable_action: UnscannableAction,
) -> Result<Findings, String> {
    let mut scanned: Vec<Scanned> = Vec::new();
    let mut signatures: Vec<(String, String)> = Vec::new(); // (what, signature)
    let mut unscannable: Vec<String> = Vec::new();

    let size = tokio::fs::metadata(content)
        .await
        .map_err(|e| format!("reading the message: {e}"))?
        .len();
    if size > max {
        unscannable.push(format!(
            "the message is {size} bytes, over antivirus.max_scan_bytes ({max})"
        ));
    } else {
        let reply = clamd.scan_file(content).await?;
        note(
            &mut scanned,
            &mut signatures,
            &mut unscannable,
            "message",
            size,
            reply,
        )?;
    }

    let view = &subject.view;
    if scan_parts && signatures.is_empty() {
        for (i, part) in view.parts().iter().enumerate() {
            // Archive members are unpacked by clamd from their archive; attached messages are
            // scanned as the attachments inside them.
            if !matches!(part.kind, PartKind::Leaf) || !part.is_attachment {
                continue;
            }
            let Some(bytes) = view.decoded(i) else {
                continue;
            };
            if bytes.is_empty() {
                continue;
            }
            let n = bytes.len() as u64;
            if n > max {
                unscannable.push(format!(
                    "the attachment {} is {n} bytes, over antivirus.max_scan_bytes ({max})",
                    part.path
                ));
                continue;
            }
            let reply = clamd.scan_bytes(&bytes).await?;
            note(
                &mut scanned,
                &mut signatures,
                &mut unscannable,
                &part.path,
                n,
                reply,
            )?;
            if !signatures.is_empty() {
                break;
            }
        }
    }
    for p in view.parts().iter().filter(|p| p.encrypted) {
        unscannable.push(format!(
            "{} is inside an encrypted archive and could not be scanned",
            p.path
        ));
    }

    let status = if !signatures.is_empty() {
        "infected"
    } else if !unscannable.is_empty() {
        "unscannable"
    } else {
        "clean"
    };
    let mut names: Vec<&str> = signatures.iter().map(|(_, s)| s.as_str()).collect();
    names.dedup();
    let mut f = Findings {
        facts: json!({
            "status": status,
            "signatures": names,
            "unscannable": unscannable,
            "scanned": scanned,
            "clamd": clamd.address().to_string(),
        }),
        ..Default::default()
    };

    if let Some((what, sig)) = signatures.first() {
        let sentence = if what == "message" {
            format!("clamd found {sig} in the message.")
        } else {
            format!("clamd found {sig} in the attachment {what}.")
        };
        let explanation = Explanation::new("antivirus", sig.clone(), sentence);
        let action = match infected_action {
            InfectedAction::Reject => Action::reject(Reply::new(
                554,
                "5.7.1",
                format!(
                    "Message refused: virus found ({})",
                    super::printable_line(sig, 200)
                ),
            )),
            InfectedAction::Quarantine => {
                Action::quarantine(format!("virus: {}", super::printable_line(sig, 200)))
            }
        };
        f.decisions
            .push(Decision::new(Scope::Message, action, explanation));
    } else if let Some(why) = unscannable.first() {
        let sentence = format!("The message could not be scanned for viruses: {why}.");
        let explanation = |s: String| Explanation::new("antivirus", "unscannable", s);
        let decision = match unscannable_action {
            UnscannableAction::Tempfail => Decision::new(
                Scope::Message,
                Action::tempfail(Reply::new(
                    451,
                    "4.7.0",
                    "Message could not be scanned for viruses, please try again later",
                )),
                explanation(sentence),
            ),
            UnscannableAction::Quarantine => Decision::new(
                Scope::Message,
                Action::quarantine(format!("unscannable: {}", super::printable_line(why, 200))),
                explanation(sentence),
            ),
            UnscannableAction::Reject => Decision::new(
                Scope::Message,
                Action::reject(Reply::new(
                    554,
                    "5.7.1",
                    "Message could not be scanned for viruses and is refused",
                )),
                explanation(sentence),
            ),
            UnscannableAction::Deliver => Decision::new(
                Scope::Message,
                Action::add_header(
                    UNSCANNABLE_HEADER,
                    format!("unscannable: {}", super::printable_line(why, 200)),
                ),
                explanation(format!(
                    "{sentence} Delivered anyway (antivirus.unscannable = \"deliver\"), marked with {UNSCANNABLE_HEADER}."
                )),
            ),
        };
        f.decisions.push(decision);
    }
    Ok(f)
}

fn note(
    scanned: &mut Vec<Scanned>,
    signatures: &mut Vec<(String, String)>,
    unscannable: &mut Vec<String>,
    what: &str,
    bytes: u64,
    reply: ScanReply,
) -> Result<(), String> {
    let result = match reply {
        ScanReply::Clean => "clean".to_string(),
        ScanReply::Infected(names) => {
            let r = format!("infected: {}", names.join(", "));
            signatures.extend(names.into_iter().map(|n| (what.to_string(), n)));
            r
        }
        ScanReply::Limit(e) => {
            unscannable.push(format!("clamd did not scan {what}: {e}"));
            format!("not scanned: {e}")
        }
        ScanReply::Error(e) => return Err(format!("clamd could not scan {what}: {e}")),
    };
    scanned.push(Scanned {
        what: what.to_string(),
        bytes,
        result,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), ScanReply::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature FOUND\0"),
            ScanReply::Infected(vec!["Eicar-Test-Signature".into()])
        );
        assert_eq!(
            parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\n"),
            ScanReply::Infected(vec!["Win.Test.EICAR_HDB-1".into()])
        );
        assert!(matches!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            ScanReply::Limit(_)
        ));
        assert!(matches!(
            parse_reply(b"stream: Heuristics.Limits.Exceeded.MaxRecursion ERROR\0"),
            ScanReply::Limit(_)
        ));
        assert!(matches!(
            parse_reply(b"stream: Can't allocate memory ERROR\0"),
            ScanReply::Error(_)
        ));
        assert!(matches!(parse_reply(b""), ScanReply::Error(_)));
        assert_eq!(
            parse_reply(b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0"),
            ScanReply::Limit("Heuristics.Limits.Exceeded.MaxFileSize".into())
        );
        assert!(matches!(
            parse_reply(b"stream: Heuristics.Encrypted.Zip FOUND\0"),
            ScanReply::Limit(_)
        ));
        assert!(matches!(
            parse_reply(b"UNKNOWN COMMAND\0"),
            ScanReply::Error(_)
        ));
    }

    #[test]
    fn reply_text_is_one_printable_line() {
        assert_eq!(
            crate::pipeline::printable_line("Evil\r\n550 x", 200),
            "Evil??550 x"
        );
        assert_eq!(
            crate::pipeline::printable_line(&"x".repeat(500), 200).len(),
            200
        );
    }
}
