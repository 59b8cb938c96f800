//! What one message may make the inspector spend, and the names of the limits it can hit.

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// Bounds on building one [`MessageView`](crate::MessageView). They live in the configuration
/// under `[inspect]`; every field has a default, so `[inspect]` may be empty or absent.
///
/// Why these defaults (the appliance has 2 cores and a few GiB; several messages are inspected
/// at once; `smtp.max_message_size` defaults to 50 MiB):
///
/// - `max_message_bytes` 256 MiB: above any sensible `smtp.max_message_size` (keep it so; the
///   engine should refuse a configuration where it is lower). Everything mail-parser allocates
///   is proportional to the message, so this is the real memory bound of the MIME layer.
/// - `max_depth` 20: real mail nests 3–6 levels (mixed ▸ alternative ▸ related, a forwarded
///   message, an archive); 20 is far above that and far below what a crafted message does.
/// - `max_parts` 500: MIME parts and archive members together. A newsletter with inline images
///   has tens; an Office document (a zip) adds 10–40 members.
/// - `max_decoded_bytes` 256 MiB: every byte a scanner would be handed (decoded MIME leaves
///   plus decompressed archive members). A 50 MiB message decodes to less than 50 MiB; the rest
///   is room for ordinary archives (2–5:1) while bounding a zip bomb.
/// - `max_archive_members` 1000 (whole message), `max_archive_depth` 5 (an archive in an
///   archive in …), `max_archive_member_bytes` 100 MiB (one decompressed member).
/// - `max_compression_ratio` 100 (:1), per member and per archive, applied once a member or
///   archive has decompressed to more than 1 MiB (small files of repeated bytes legitimately
///   compress further; deflate tops out near 1032:1, nested archives multiply it).
/// - `max_time_ms` 5000: building the view of a 20 MiB message takes tens of milliseconds; a
///   message that takes seconds is an attack or a parser problem, either way uninspectable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_bytes: u64,
    pub max_depth: u32,
    pub max_parts: u32,
    pub max_decoded_bytes: u64,
    pub max_archive_members: u32,
    pub max_archive_depth: u32,
    pub max_archive_member_bytes: u64,
    pub max_compression_ratio: u32,
    pub max_time_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * MIB,
            max_depth: 20,
            max_parts: 500,
            max_decoded_bytes: 256 * MIB,
            max_archive_members: 1000,
            max_archive_depth: 5,
            max_archive_member_bytes: 100 * MIB,
            max_compression_ratio: 100,
            max_time_ms: 5000,
        }
    }
}

/// Below this many decompressed bytes the compression ratio is not judged.
pub(crate) const RATIO_FLOOR: u64 = MIB;

/// Which limit was hit. Serialized as its snake_case name (`max_depth`, …), the same as the
/// configuration key, so an operator can find the knob from the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    MaxMessageBytes,
    MaxDepth,
    MaxParts,
    MaxDecodedBytes,
    MaxArchiveMembers,
    MaxArchiveDepth,
    MaxArchiveMemberBytes,
    MaxCompressionRatio,
    MaxTimeMs,
}

impl LimitKind {
    /// The configuration key (and serialized name).
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::MaxMessageBytes => "max_message_bytes",
            LimitKind::MaxDepth => "max_depth",
            LimitKind::MaxParts => "max_parts",
            LimitKind::MaxDecodedBytes => "max_decoded_bytes",
            LimitKind::MaxArchiveMembers => "max_archive_members",
            LimitKind::MaxArchiveDepth => "max_archive_depth",
            LimitKind::MaxArchiveMemberBytes => "max_archive_member_bytes",
            LimitKind::MaxCompressionRatio => "max_compression_ratio",
            LimitKind::MaxTimeMs => "max_time_ms",
        }
    }
}

/// One limit hit while building the view: which, and where / by how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitHit {
    pub limit: LimitKind,
    pub detail: String,
}
