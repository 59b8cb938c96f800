//! Zip archives: members listed one by one, streamed, never extracted as a whole.

use std::io::{Cursor, Read};

use zip::ZipArchive;
use zip::result::ZipError;

use crate::limits::{LimitKind, RATIO_FLOOR};
use crate::view::{AnomalyKind, Body, Builder, Part, PartKind, looks_like_zip, sniff};

/// Streaming buffer, and how much of a member is kept to tell its type.
const CHUNK: usize = 64 * 1024;
/// Nested archives are walked recursively: this bounds the recursion whatever the config says.
const HARD_MAX_ARCHIVE_DEPTH: u32 = 16;

impl Builder<'_> {
    /// Lists the members of the zip archive `bytes`, which is part `archive`, nested
    /// `archive_depth` archives deep (1 for an archive attached to the message); members are
    /// at tree depth `depth`.
    pub(crate) fn walk_archive(
        &mut self,
        archive: usize,
        bytes: &[u8],
        archive_depth: u32,
        depth: u32,
    ) {
        let section = self.parts[archive].section.clone();
        let path = self.parts[archive].path.clone();
        let mut zip = match ZipArchive::new(Cursor::new(bytes)) {
            Ok(zip) => zip,
            Err(e) => {
                self.anomaly(
                    AnomalyKind::CorruptArchive,
                    &section,
                    format!("archive {path} cannot be read: {e}"),
                    true,
                );
                return;
            }
        };
        let ratio = u64::from(self.limits.max_compression_ratio);
        let mut archive_total: u64 = 0;
        for i in 0..zip.len() {
            if !self.check_time() || self.stopped {
                return;
            }
            if self.archive_members >= u64::from(self.limits.max_archive_members) {
                self.hit(
                    LimitKind::MaxArchiveMembers,
                    format!(
                        "more than {} archive members (at {path})",
                        self.limits.max_archive_members
                    ),
                );
                return;
            }
            self.archive_members += 1;
            let member_section = format!("{section}/{}", i + 1);
            let (name, declared, compressed, encrypted, is_dir) = match zip.by_index_raw(i) {
                Ok(f) => (
                    f.name()
                        .map(|n| n.into_owned())
                        .unwrap_or_else(|_| String::from_utf8_lossy(f.name_raw()).into_owned()),
                    f.size(),
                    f.compressed_size(),
                    f.encrypted(),
                    f.is_dir(),
                ),
                Err(e) => {
                    self.anomaly(
                        AnomalyKind::CorruptArchive,
                        &member_section,
                        format!("archive {path}: entry {} cannot be read: {e}", i + 1),
                        true,
                    );
                    return;
                }
            };
            if is_dir && declared == 0 {
                continue;
            }
            if !self.room_for_part() {
                return;
            }
            if depth > self.limits.max_depth {
                self.hit(
                    LimitKind::MaxDepth,
                    format!(
                        "members of {path} are nested {depth} deep, limit {}",
                        self.limits.max_depth
                    ),
                );
                return;
            }
            let member_path = format!("{path}/{name}");
            let index = self.push(
                Part {
                    section: member_section.clone(),
                    path: member_path.clone(),
                    depth,
                    parent: Some(archive),
                    kind: PartKind::ArchiveMember { archive, index: i },
                    declared_type: None,
                    filename: Some(name),
                    disposition: None,
                    is_attachment: true,
                    real_type: None,
                    size: declared,
                    encrypted,
                    span: None,
                },
                Body::None,
                None,
            );
            if encrypted {
                self.anomaly(
                    AnomalyKind::EncryptedArchiveMember,
                    &member_section,
                    format!("encrypted archive member {member_path}"),
                    true,
                );
                continue;
            }
            // What the archive declares, before reading anything.
            if declared > self.limits.max_archive_member_bytes {
                self.hit(
                    LimitKind::MaxArchiveMemberBytes,
                    format!(
                        "{member_path} declares {declared} bytes, limit {}",
                        self.limits.max_archive_member_bytes
                    ),
                );
                continue;
            }
            if declared > RATIO_FLOOR && declared / compressed.max(1) > ratio {
                self.hit(
                    LimitKind::MaxCompressionRatio,
                    format!(
                        "{member_path} declares {declared} bytes from {compressed} (over {ratio}:1)"
                    ),
                );
                continue;
            }
            if self.decoded_total.saturating_add(declared) > self.limits.max_decoded_bytes {
                self.spend_decoded(declared, &member_path);
                return;
            }
            let keep_nested =
                archive_depth < self.limits.max_archive_depth.min(HARD_MAX_ARCHIVE_DEPTH);
            let outcome = {
                let file = match zip.by_index(i) {
                    Ok(f) => f,
                    Err(e) => {
                        let kind = match e {
                            ZipError::UnsupportedArchive(_)
                            | ZipError::CompressionMethodNotSupported(_) => {
                                AnomalyKind::UnsupportedCompression
                            }
                            _ => AnomalyKind::CorruptArchive,
                        };
                        self.anomaly(kind, &member_section, format!("{member_path}: {e}"), true);
                        continue;
                    }
                };
                stream_member(file, declared, keep_nested)
            };
            let actual = outcome.total;
            // Checks on what was actually read (a lying header cannot get past these).
            archive_total = archive_total.saturating_add(actual);
            self.parts[index].size = actual;
            self.parts[index].real_type = sniff(&outcome.head);
            let stopped_early = outcome.stop.is_some();
            match outcome.stop {
                Some(Stop::Error(e)) => {
                    self.anomaly(
                        AnomalyKind::CorruptArchive,
                        &member_section,
                        format!("{member_path}: {e}"),
                        true,
                    );
                }
                Some(Stop::Overlong) => {
                    self.anomaly(
                        AnomalyKind::ArchiveSizeMismatch,
                        &member_section,
                        format!("{member_path} decompresses to more than the {declared} bytes it declares"),
                        true,
                    );
                }
                None => {}
            }
            if !self.spend_decoded(actual, &member_path) {
                return;
            }
            if actual > RATIO_FLOOR && actual / compressed.max(1) > ratio {
                self.hit(
                    LimitKind::MaxCompressionRatio,
                    format!("{member_path}: {actual} bytes from {compressed} (over {ratio}:1)"),
                );
                continue;
            }
            if archive_total > RATIO_FLOOR && archive_total / (bytes.len() as u64).max(1) > ratio {
                self.hit(
                    LimitKind::MaxCompressionRatio,
                    format!(
                        "{path}: members total {archive_total} bytes from {} (over {ratio}:1)",
                        bytes.len()
                    ),
                );
                return;
            }
            if stopped_early {
                continue;
            }
            match outcome.all {
                Some(all) => {
                    self.walk_archive(index, &all, archive_depth + 1, depth + 1);
                    self.bodies[index] = Body::Bytes(all);
                }
                None => {
                    if looks_like_zip(&outcome.head) {
                        self.hit(
                            LimitKind::MaxArchiveDepth,
                            format!(
                                "{member_path} is an archive nested {} deep, limit {}",
                                archive_depth + 1,
                                self.limits.max_archive_depth
                            ),
                        );
                    }
                    self.bodies[index] = Body::Member { archive, index: i };
                }
            }
        }
    }
}

enum Stop {
    Error(std::io::Error),
    /// More bytes than declared.
    Overlong,
}

struct Streamed {
    total: u64,
    head: Vec<u8>,
    /// The whole member, when it is an archive to walk.
    all: Option<Vec<u8>>,
    stop: Option<Stop>,
}

/// Reads a member through a fixed buffer, at most `declared` bytes (+1 to see a lie), keeping
/// the first [`CHUNK`] bytes, and everything if it is a zip and `keep_nested`.
fn stream_member(mut file: impl Read, declared: u64, keep_nested: bool) -> Streamed {
    let mut out = Streamed {
        total: 0,
        head: Vec::new(),
        all: None,
        stop: None,
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.stop = Some(Stop::Error(e));
                break;
            }
        };
        let chunk = &buf[..n];
        if out.head.len() < CHUNK {
            let take = (CHUNK - out.head.len()).min(n);
            out.head.extend_from_slice(&chunk[..take]);
            if out.total == 0 && keep_nested && looks_like_zip(&out.head) {
                out.all = Some(Vec::with_capacity(declared.min(1024 * 1024) as usize));
            }
        }
        if let Some(all) = out.all.as_mut() {
            all.extend_from_slice(chunk);
        }
        out.total += n as u64;
        if out.total > declared {
            out.stop = Some(Stop::Overlong);
            out.all = None;
            break;
        }
    }
    out
}

/// Decompresses member `index` of the zip `container` again, expecting `expected` bytes
/// (what was read when the view was built; never more is read).
pub(crate) fn read_member(container: &[u8], index: usize, expected: u64) -> Option<Vec<u8>> {
    let mut zip = ZipArchive::new(Cursor::new(container)).ok()?;
    let file = zip.by_index(index).ok()?;
    if file.encrypted() {
        return None;
    }
    let mut out = Vec::with_capacity(expected.min(64 * 1024 * 1024) as usize);
    file.take(expected).read_to_end(&mut out).ok()?;
    Some(out)
}
