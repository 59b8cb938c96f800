//! The `dlp` check: every part's text (`palisade_inspect::extract`: bodies in any charset,
//! text attachments, Office and OpenDocument files, RTF, PDF, winmail.dat, archives nested)
//! through the detectors of `[dlp]` (`palisade_dlp::Scanner`, compiled once per configuration
//! revision). It decides nothing: the operator's rules read its facts (`detections`,
//! `unscannable`) and decide, each possibly in monitor mode. Outbound mail is scanned; inbound
//! only with `[dlp] inbound = true`.
//!
//! Facts: `status` (`found` | `none`), `detections` [{detector, count, confidence, snippets
//! (masked: all but the last 3 characters), locations [{location, count}]}], `unscannable`
//! [{location, reason}], `scanned` [{location, bytes}], `skipped` (parts without text),
//! `bytes`. Full identifiers are never in the facts, the logs or the tracking record.

use std::sync::Arc;

use palisade_dlp::{Detection, MAX_SNIPPETS, Scanner};
use palisade_inspect::extract;
use palisade_policy::Direction;
use palisade_store::Config;
use serde::Serialize;
use serde_json::json;

use palisade_store::mail::NewIncident;

use super::{Check, CheckFuture, Evaluation, Findings, Subject};

pub struct DlpCheck {
    scanner: Arc<Result<Scanner, String>>,
    fingerprints: Arc<Fingerprints>,
    inbound: bool,
    max_text: usize,
}

/// The registered files (`[[dlp.fingerprint]]`): SHA-256 of the bytes → name.
#[derive(Debug, Default)]
pub struct Fingerprints(std::collections::HashMap<[u8; 32], String>);

impl Fingerprints {
    pub fn from_config(cfg: &Config) -> Fingerprints {
        Fingerprints(
            cfg.dlp
                .fingerprints
                .iter()
                .filter_map(|f| {
                    let mut h = [0u8; 32];
                    hex::decode_to_slice(&f.sha256, &mut h).ok()?;
                    Some((h, f.name.clone()))
                })
                .collect(),
        )
    }

    /// The detections of registered files among the message's attachments and archive
    /// members: `fingerprint:NAME`, one per part, confidence 1, the snippet the hash's end.
    fn find(&self, view: &palisade_inspect::MessageView) -> Vec<(Detection, String)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, p) in view.parts().iter().enumerate() {
            if !p.is_attachment || p.encrypted {
                continue;
            }
            let Some(bytes) = view.decoded(i) else {
                continue;
            };
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let mut h = [0u8; 32];
            h.copy_from_slice(digest.as_ref());
            if let Some(name) = self.0.get(&h) {
                out.push((
                    Detection {
                        detector: format!("fingerprint:{name}"),
                        count: 1,
                        confidence: 1.0,
                        snippets: vec![format!("sha256 …{}", &hex::encode(h)[58..])],
                    },
                    p.path.clone(),
                ));
            }
        }
        out
    }
}

/// One detector's findings over the whole message.
#[derive(Debug, Clone, Serialize)]
pub struct MessageDetection {
    pub detector: String,
    pub count: usize,
    pub confidence: f32,
    pub snippets: Vec<String>,
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub location: String,
    pub count: usize,
}

impl DlpCheck {
    pub fn from_config(cfg: &Config) -> DlpCheck {
        let scanner = Scanner::new(cfg.dlp.settings());
        if let Err(e) = &scanner {
            // Validation refuses such a configuration; a check that cannot scan fails every
            // message (its failure mode), it never passes one.
            tracing::error!(event = "dlp.scanner_invalid", error = %e);
        }
        DlpCheck {
            scanner: Arc::new(scanner),
            fingerprints: Arc::new(Fingerprints::from_config(cfg)),
            inbound: cfg.dlp.inbound,
            max_text: cfg.dlp.max_text_mib as usize * 1024 * 1024,
        }
    }
}

/// Runs the scanner over every text of `view` and merges the detections per detector.
pub fn scan(
    scanner: &Scanner,
    fingerprints: &Fingerprints,
    view: &palisade_inspect::MessageView,
    max_text: usize,
) -> Findings {
    let found = extract(view, max_text);
    let mut merged: Vec<MessageDetection> = Vec::new();
    for (d, location) in fingerprints.find(view) {
        merge(&mut merged, d, &location);
    }
    let mut scanned = Vec::new();
    for t in &found.texts {
        scanned.push(json!({"location": t.location, "bytes": t.text.len()}));
        for d in scanner.scan(&t.text) {
            merge(&mut merged, d, &t.location);
        }
    }
    merged.sort_by(|a, b| a.detector.cmp(&b.detector));
    let status = if merged.is_empty() { "none" } else { "found" };
    Findings {
        facts: json!({
            "status": status,
            "detections": merged,
            "unscannable": found.unscannable,
            "scanned": scanned,
            "skipped": found.skipped,
            "bytes": found.bytes,
        }),
        ..Default::default()
    }
}

fn merge(all: &mut Vec<MessageDetection>, d: Detection, location: &str) {
    let i = match all.iter().position(|m| m.detector == d.detector) {
        Some(i) => i,
        None => {
            all.push(MessageDetection {
                detector: d.detector.clone(),
                count: 0,
                confidence: 0.0,
                snippets: Vec::new(),
                locations: Vec::new(),
            });
            all.len() - 1
        }
    };
    let m = &mut all[i];
    m.count += d.count;
    m.confidence = m.confidence.max(d.confidence);
    for s in d.snippets {
        if m.snippets.len() < MAX_SNIPPETS {
            m.snippets.push(s);
        }
    }
    match m.locations.iter_mut().find(|l| l.location == location) {
        Some(l) => l.count += d.count,
        None => m.locations.push(Location {
            location: location.to_string(),
            count: d.count,
        }),
    }
}

impl Check for DlpCheck {
    fn name(&self) -> &str {
        "dlp"
    }
    fn run(&self, subject: Subject) -> CheckFuture {
        let scanner = self.scanner.clone();
        let fingerprints = self.fingerprints.clone();
        let max_text = self.max_text;
        let skip = subject.envelope.direction == Direction::Inbound && !self.inbound;
        Box::pin(async move {
            if skip {
                return Ok(Findings {
                    skipped: Some("inbound mail is not scanned ([dlp] inbound = false)".into()),
                    ..Default::default()
                });
            }
            // Extraction (inflating documents) and scanning are CPU work.
            tokio::task::spawn_blocking(move || match scanner.as_ref() {
                Ok(s) => Ok(scan(s, &fingerprints, &subject.view, max_text)),
                Err(e) => Err(format!("the DLP detectors could not be built: {e}")),
            })
            .await
            .map_err(|e| format!("the dlp check stopped: {e}"))?
        })
    }
}

/// The incidents of one evaluated message: one per rule that matched on the dlp check's
/// findings (enforced or monitored), with the recipients it applied to. Refused-for-now
/// (tempfailed) messages have none: the retry is the one that counts.
pub fn incidents(eval: &Evaluation, subject: Option<&str>) -> Vec<NewIncident> {
    if matches!(
        eval.verdict.smtp_reply,
        palisade_policy::SmtpOutcome::Tempfail(_)
    ) {
        return Vec::new();
    }
    let facts_of = |name: &str| {
        eval.outcomes
            .iter()
            .find(|o| o.name == name)
            .map(|o| &o.facts)
    };
    let (Some(rules), Some(dlp)) = (facts_of("rules"), facts_of("dlp")) else {
        return Vec::new();
    };
    let env = &eval.envelope;
    let direction = match env.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let empty = Vec::new();
    let matched = rules
        .get("matched")
        .and_then(|m| m.as_array())
        .unwrap_or(&empty);
    matched
        .iter()
        .filter(|m| m.get("dlp").is_some())
        .map(|m| {
            let recipients = match m.get("scope").and_then(|s| s.get("recipients")) {
                Some(list) => list
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|i| i.as_u64())
                            .filter_map(|i| env.recipients.get(i as usize))
                            .map(|r| r.address.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                None => env.recipients.iter().map(|r| r.address.clone()).collect(),
            };
            let text = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            NewIncident {
                queue_id: env.queue_id.clone(),
                direction: direction.to_string(),
                sender: env.sender.clone(),
                recipients,
                subject: subject.map(str::to_string),
                rule: text("rule"),
                action: text("action"),
                monitor: m.get("monitor").and_then(|v| v.as_bool()).unwrap_or(false),
                detections: dlp.get("detections").cloned().unwrap_or_else(|| json!([])),
                unscannable: dlp.get("unscannable").cloned().unwrap_or_else(|| json!([])),
            }
        })
        .collect()
}
