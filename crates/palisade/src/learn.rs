//! `palisade learn --spam|--ham FILE|DIR…`: teach the Bayes classifier (`bayes.db`, read by
//! the `spam` check) from messages an operator has sorted: single message files, Maildir
//! folders (every file under a directory, recursively) and mbox files (split at their `From `
//! lines).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use palisade_inspect::{Limits, MessageView};
use palisade_store::bayes::{Bayes, Class, Learned};
use palisade_store::{AuditLog, DataDir};
use serde_json::json;

/// A file larger than this is not read (not a message an operator sorted by hand).
const MAX_FILE: u64 = 256 * 1024 * 1024;
/// Files walked at most per run.
const MAX_FILES: usize = 1_000_000;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("class").required(true).args(["spam", "ham"])))]
pub struct LearnArgs {
    /// The messages are spam.
    #[arg(long)]
    spam: bool,
    /// The messages are wanted mail.
    #[arg(long)]
    ham: bool,
    /// Message files, directories of them (Maildir), or mbox files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Counts {
    new: u64,
    already_known: u64,
    moved: u64,
    unreadable: u64,
}

pub fn run(data: &DataDir, args: LearnArgs, actor: &str) -> Result<ExitCode> {
    let class = if args.spam { Class::Spam } else { Class::Ham };
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files)?;
    }
    let mut bayes = Bayes::open(&data.bayes_db())?;
    let limits = Limits::default();
    let mut counts = Counts::default();
    let mut learn = |raw: &[u8], counts: &mut Counts| -> Result<()> {
        let view = MessageView::from_bytes(raw, &limits);
        if view.headers().all.is_empty() {
            counts.unreadable += 1;
            return Ok(());
        }
        match bayes.learn(&view, class)? {
            Learned::New => counts.new += 1,
            Learned::AlreadyKnown => counts.already_known += 1,
            Learned::Moved => counts.moved += 1,
        }
        Ok(())
    };
    for f in &files {
        let raw = match std::fs::read(f) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("palisade learn: {}: {e}", f.display());
                counts.unreadable += 1;
                continue;
            }
        };
        if raw.starts_with(b"From ") {
            for m in mbox_messages(&raw) {
                learn(&m, &mut counts)?;
            }
        } else {
            learn(&raw, &mut counts)?;
        }
    }
    bayes.prune()?;
    let totals = bayes.totals()?;
    drop(bayes);
    if counts.new + counts.moved > 0 {
        let mut audit = AuditLog::open(&data.audit_db())?;
        audit.append(
            actor,
            "local",
            "spam.learn",
            class.as_str(),
            &json!({ "new": counts.new, "moved": counts.moved,
                     "already_known": counts.already_known, "files": files.len() }),
        )?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "class": class,
                "learned": { "new": counts.new, "already_known": counts.already_known,
                             "moved": counts.moved, "unreadable": counts.unreadable },
                "totals": totals,
            }))?
        );
    } else {
        println!(
            "learned {} message(s) as {} ({} already known{}{})",
            counts.new + counts.moved,
            class.as_str(),
            counts.already_known,
            if counts.moved > 0 {
                format!(", {} moved from the other class", counts.moved)
            } else {
                String::new()
            },
            if counts.unreadable > 0 {
                format!(", {} not a message", counts.unreadable)
            } else {
                String::new()
            }
        );
        println!(
            "the classifier now knows {} spam and {} ham message(s), {} token(s)",
            totals.spam, totals.ham, totals.tokens
        );
    }
    if counts.new + counts.moved + counts.already_known == 0 {
        eprintln!("palisade learn: no message could be read");
        return Ok(ExitCode::from(65));
    }
    Ok(ExitCode::SUCCESS)
}

/// Regular files under `p` (itself if it is one), in name order.
fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::symlink_metadata(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    if meta.is_file() {
        if meta.len() <= MAX_FILE {
            out.push(p.to_path_buf());
        } else {
            eprintln!(
                "palisade learn: {}: larger than {MAX_FILE} bytes, left out",
                p.display()
            );
        }
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(()); // symbolic links and special files are not followed
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if out.len() >= MAX_FILES {
            bail!("more than {MAX_FILES} files under {}", p.display());
        }
        collect(&e, out)?;
    }
    Ok(())
}

/// The messages of an mbox: split before every line starting `From ` (the separator line
/// itself left out); `>From ` quoting is undone.
fn mbox_messages(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(m) = current.take() {
                out.push(m);
            }
            current = Some(Vec::new());
            continue;
        }
        if let Some(m) = current.as_mut() {
            let unquoted = line
                .strip_prefix(b">")
                .filter(|rest| {
                    let r = rest.iter().position(|&b| b != b'>').unwrap_or(rest.len());
                    rest[r..].starts_with(b"From ")
                })
                .unwrap_or(line);
            m.extend_from_slice(unquoted);
        }
    }
    if let Some(m) = current {
        out.push(m);
    }
    out.retain(|m| !m.iter().all(u8::is_ascii_whitespace));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_split_and_unquoted() {
        let raw = b"From a@b Mon Jan 1 00:00:00 2026\nSubject: one\n\n>From here\nbody\n\nFrom c@d Tue Jan 2 00:00:00 2026\nSubject: two\n\nx\n";
        let m = mbox_messages(raw);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], b"Subject: one\n\nFrom here\nbody\n\n");
        assert_eq!(m[1], b"Subject: two\n\nx\n");
    }
}
