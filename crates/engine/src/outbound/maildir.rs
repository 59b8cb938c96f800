//! Local delivery into a Maildir (`DIR/mailbox/`): the out-of-the-box route, and an archive
//! target later.
//!
//! The message is written to `tmp/`, fsync'd, renamed into `new/` and the directory fsync'd:
//! only then is it "delivered" and may leave the queue. Lines end in LF as Unix mail stores
//! expect; `Return-Path` and `X-Original-To` carry the envelope.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

fn ensure_dirs(root: &Path) -> io::Result<()> {
    for sub in ["tmp", "new", "cur"] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(root.join(sub))?;
    }
    Ok(())
}

/// Copies `content` (CRLF lines) into the Maildir as one message for `rcpts`. Blocking.
/// Returns the file name under `new/`.
pub(crate) fn deliver(
    root: &Path,
    content: &Path,
    sender: &str,
    rcpts: &[&str],
    queue_id: &str,
    hostname: &str,
) -> io::Result<String> {
    ensure_dirs(root)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Unique even when the same queue id is delivered twice (a retry after a crash).
    let name = format!(
        "{}.M{}P{}Q{}S{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        queue_id,
        SEQ.fetch_add(1, Ordering::Relaxed),
        hostname.replace(['/', ':'], "_")
    );
    let tmp = root.join("tmp").join(&name);
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        writeln!(out, "Return-Path: <{sender}>")?;
        writeln!(out, "X-Original-To: {}", rcpts.join(", "))?;
        let mut input = BufReader::with_capacity(64 * 1024, File::open(content)?);
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending_cr = false;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut start = 0;
            if pending_cr {
                if buf[0] != b'\n' {
                    out.write_all(b"\r")?;
                }
                pending_cr = false;
            }
            for i in 0..n {
                if buf[i] == b'\r' {
                    if i + 1 < n {
                        if buf[i + 1] == b'\n' {
                            out.write_all(&buf[start..i])?;
                            start = i + 1;
                        }
                    } else {
                        out.write_all(&buf[start..i])?;
                        start = n;
                        pending_cr = true;
                    }
                }
            }
            out.write_all(&buf[start..n])?;
        }
        if pending_cr {
            out.write_all(b"\r")?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, root.join("new").join(&name))?;
        File::open(root.join("new"))?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|_| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_line_ends_and_adds_envelope() {
        let d = tempfile::tempdir().unwrap();
        let content = d.path().join("c");
        let body = "Subject: x\r\n\r\nline1\r\nbare\rcr\r\n".repeat(5000);
        fs::write(&content, &body).unwrap();
        let name = deliver(
            &d.path().join("mb"),
            &content,
            "a@b",
            &["x@y", "z@y"],
            "Q",
            "h",
        )
        .unwrap();
        let got = fs::read_to_string(d.path().join("mb/new").join(name)).unwrap();
        let want = format!(
            "Return-Path: <a@b>\nX-Original-To: x@y, z@y\n{}",
            body.replace("\r\n", "\n")
        );
        assert_eq!(got, want);
        assert_eq!(fs::read_dir(d.path().join("mb/tmp")).unwrap().count(), 0);
    }
}
