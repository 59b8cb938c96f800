//! Writing one message's content into the spool.
//!
//! Small messages never touch the disk until [`IncomingFile::finish`]: content is buffered and
//! written with its fsync in one blocking call. Content beyond the buffer is written as it
//! arrives (off the async threads) so a 50 MB message does not sit in memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use ring::digest;

use crate::{SpoolError, io_err};

const SPILL_AT: usize = 256 * 1024;

/// A message being received. Dropping it without `finish` removes the partial file: a message
/// that was never acknowledged leaves nothing behind.
pub struct IncomingFile {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    size: u64,
    hash: digest::Context,
    finished: bool,
}

/// A content file that is on disk and fsync'd.
#[derive(Debug, Clone)]
pub struct SpooledContent {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Vec<u8>,
}

impl IncomingFile {
    pub(crate) fn create(path: PathBuf) -> Result<Self, SpoolError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(IncomingFile {
            path,
            file: Some(file),
            buf: Vec::with_capacity(16 * 1024),
            size: 0,
            hash: digest::Context::new(&digest::SHA256),
            finished: false,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends content. Errors (disk full) are returned here or from `finish`.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hash.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPILL_AT {
            self.spill(false).await?;
        }
        Ok(())
    }

    async fn spill(&mut self, sync: bool) -> io::Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("spool file closed"))?;
        let buf = std::mem::take(&mut self.buf);
        let (file, buf, res) = tokio::task::spawn_blocking(move || {
            let res = file
                .write_all(&buf)
                .and_then(|_| if sync { file.sync_all() } else { Ok(()) });
            (file, buf, res)
        })
        .await
        .map_err(io::Error::other)?;
        self.file = Some(file);
        self.buf = buf;
        self.buf.clear();
        res
    }

    /// Writes what is buffered and fsyncs the file. The directory entry is made durable by the
    /// committer (one directory fsync for the whole group).
    pub async fn finish(mut self) -> io::Result<SpooledContent> {
        self.spill(true).await?;
        self.finished = true;
        let hash = std::mem::replace(&mut self.hash, digest::Context::new(&digest::SHA256));
        Ok(SpooledContent {
            path: self.path.clone(),
            size: self.size,
            sha256: hash.finish().as_ref().to_vec(),
        })
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// SHA-256 of a byte stream, for verifying content on its way out.
pub(crate) fn sha256_file(path: &std::path::Path) -> io::Result<(u64, Vec<u8>)> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        n += r as u64;
        ctx.update(&buf[..r]);
    }
    Ok((n, ctx.finish().as_ref().to_vec()))
}
