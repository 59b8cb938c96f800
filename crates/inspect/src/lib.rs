//! The filter seam: one bounded view of a spooled message, built once per message, that every
//! content filter (antivirus, antispam, attachment rules, DLP, encryption) reads instead of
//! parsing the message itself.
//!
//! ```no_run
//! use palisade_inspect::{Limits, MessageView};
//! # fn main() -> std::io::Result<()> {
//! let view = MessageView::from_file("/data/spool/ABC".as_ref(), &Limits::default())?;
//! if let Some(reason) = view.uninspectable() {
//!     // quarantine / reject: the filters could not see all of it
//!     # let _ = reason;
//! }
//! for (i, part) in view.parts().iter().enumerate() {
//!     let bytes = view.decoded(i); // transfer-decoded / decompressed, on demand
//!     # let _ = (part, bytes);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What the view is
//!
//! - [`MessageView::headers`]: the top-level header fields, decoded (RFC 2047), plus every field
//!   as (name, raw value). [`MessageView::tracking`] is what message tracking stores.
//! - [`MessageView::parts`]: every MIME part in tree order (pre-order), attached messages
//!   (`message/rfc822`) walked into, and the members of zip archives (nested archives too),
//!   each with its declared type, its file name (RFC 2231/2047 decoded), its size after
//!   decoding, and its *real* type read from its magic bytes by the `infer` crate, never from
//!   the declared Content-Type or the name. A part's [`Part::section`] (`1.2.1`, archive
//!   members `1.2/3`) is unique; [`Part::path`] is for people (`report.zip/q3.xlsx`).
//! - [`MessageView::decoded`] gives a part's bytes on demand: MIME leaves after the transfer
//!   encoding is undone (text parts in their original charset), archive members decompressed
//!   again (bounded as when listed), an attached message as its raw RFC 5322 bytes.
//!   [`MessageView::text`] gives text parts as Unicode, whatever their charset.
//!
//! # Never "clean"
//!
//! There is deliberately no `is_clean`. The view only says whether the filters *could see
//! everything*: [`MessageView::uninspectable`] is `Some(reason)` when a limit was hit, the
//! message could not be parsed, a part could not be decoded, an archive is corrupt, encrypted
//! or uses a compression method not built in. A caller must treat such a message as suspect
//! (quarantine or refuse), never as passed. `uninspectable() == None` means "fully visible",
//! not "harmless": the filters still have to look.
//!
//! # Limits and why they are checked where they are
//!
//! See [`Limits`] for the defaults. mail-parser parses in one call and decodes every leaf as
//! it goes, without recursion on the multipart structure (an explicit stack: no stack overflow
//! on deep nesting), so the MIME layer's memory is bounded by the message size
//! (`max_message_bytes`, checked before parsing). Depth, part count and decoded size are then
//! checked while walking its result; time is checked after parsing and between every part and
//! archive member. Archives are never extracted as a whole: members are streamed one by one
//! through a 64 KiB buffer, keeping only the first 64 KiB (for the file type) unless the member
//! is itself an archive to walk; the declared sizes are checked before reading and the actual
//! count of bytes while reading, so a zip bomb is stopped by the ratio, member-size or
//! decoded-size limit after at most one buffer beyond the limit, never by allocating it.
//!
//! # Broken MIME
//!
//! mail-parser is lenient; the view records what it had to forgive as [`Anomaly`] values and
//! decides per kind (the rule: uninspectable when a receiving client could see content the
//! filters did not get as a separate, decoded part):
//!
//! - a multipart whose boundary is missing or never appears: its parts cannot be separated
//!   (a client that splits differently sees attachments the filters would not): uninspectable;
//! - a multipart without its closing delimiter (truncated, or the last part runs to the end):
//!   anomaly only, every byte is still in some part that the filters see;
//! - a part whose transfer encoding cannot be decoded (mail-parser then keeps it as raw text):
//!   uninspectable, a lenient client might decode it to something else;
//! - an attached message that could not be parsed or is nested deeper (encoded) than the
//!   parser walks: uninspectable.
//!
//! Note that mail-parser treats a base64 part that is not followed by a boundary (the last part
//! of an unterminated multipart) as undecodable; such a message is therefore uninspectable
//! (golden `unterminated_multipart`).
//!
//! A panic inside a parser (mail-parser, zip, infer) is caught and makes the message
//! uninspectable; the fuzz targets in `fuzz/` run without that net, so such panics are found.

#![forbid(unsafe_code)]

mod archive;
pub mod extract;
mod limits;
mod pdf;
pub mod text;
mod tnef;
mod view;

pub use extract::{Extracted, TextOf, Unscannable, extract};
pub use limits::{LimitHit, LimitKind, Limits};
pub use view::{
    Anomaly, AnomalyKind, HeaderField, Headers, Mailbox, MessageView, Part, PartKind, RealType,
    Span, Tracking,
};
