//! `[attachments]`: what happens to attachments by what they really are (the `attachments`
//! check). Categories are read from the MIME view (magic bytes, archive members, the structure
//! of Office documents), never from the declared Content-Type; only scripts, which have no
//! magic, are recognised by their name.
//!
//! ```toml
//! [attachments]
//! enabled = true
//! executable = "block"          # PE/ELF/Mach-O/MSI/… by magic, also inside archives
//! script = "block"              # .js .vbs .ps1 .bat .hta .lnk … (by name; shortcuts by magic)
//! macro_document = "quarantine" # Office documents with a VBA project (OOXML or OLE2)
//! disk_image = "block"          # ISO 9660/UDF, VHD, VHDX, DMG (by magic); .img by name
//! encrypted_archive = "quarantine"
//! double_extension = "block"    # invoice.pdf.exe, "report.pdf      .exe", RTL overrides
//! script_extensions = ["js", "vbs", …]   # replaces the built-in list
//! ```
//!
//! Each action: `allow` (deliver), `block` (554 5.7.1 at DATA, naming the category and the
//! part), `quarantine` (the whole message held), or `strip` (the attachment is removed from the
//! delivered copy and replaced by a short text part; the original is held in quarantine so an
//! operator can release it).
//!
//! Why these defaults (a hospital's inbound mail): programs, scripts, disguised names and disk
//! images have no business arriving by mail from outside and are the usual first stage of
//! ransomware, so they are refused at SMTP — the sender learns at once, nothing is kept, no
//! bounce is sent. Macro documents and encrypted archives are also sent legitimately (finance
//! spreadsheets; patient data in a password-protected zip, as data-protection guidance often
//! asks), so they are held for an operator to look at rather than refused.

use serde::{Deserialize, Serialize};

/// What a category of attachment gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentAction {
    /// Deliver as is (the finding is still reported).
    Allow,
    /// Remove the attachment from the delivered copy; keep the original in quarantine.
    Strip,
    /// Hold the whole message in quarantine.
    Quarantine,
    /// Refuse the message at DATA with 554 5.7.1.
    Block,
}

impl AttachmentAction {
    pub fn name(self) -> &'static str {
        match self {
            AttachmentAction::Allow => "allow",
            AttachmentAction::Strip => "strip",
            AttachmentAction::Quarantine => "quarantine",
            AttachmentAction::Block => "block",
        }
    }
}

/// The built-in list of script (and other directly runnable, magic-less) file name extensions.
pub const DEFAULT_SCRIPT_EXTENSIONS: &[&str] = &[
    "js",
    "jse",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "wsc",
    "ps1",
    "psm1",
    "psd1",
    "bat",
    "cmd",
    "hta",
    "scr",
    "lnk",
    "pif",
    "url",
    "vb",
    "sct",
    "jar",
    "reg",
    "inf",
    "msc",
    "cpl",
    "sh",
    "py",
    "application",
    "appref-ms",
    "settingcontent-ms",
    "xll",
    "iqy",
    "slk",
    "chm",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attachments {
    /// On by default: it needs nothing but the MIME view.
    pub enabled: bool,
    pub executable: AttachmentAction,
    pub script: AttachmentAction,
    pub macro_document: AttachmentAction,
    pub disk_image: AttachmentAction,
    pub encrypted_archive: AttachmentAction,
    pub double_extension: AttachmentAction,
    /// Name extensions (without the dot, case-insensitive) that make a text part or archive
    /// member a `script`. Replaces the built-in list.
    pub script_extensions: Vec<String>,
}

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            enabled: true,
            executable: AttachmentAction::Block,
            script: AttachmentAction::Block,
            macro_document: AttachmentAction::Quarantine,
            disk_image: AttachmentAction::Block,
            encrypted_archive: AttachmentAction::Quarantine,
            double_extension: AttachmentAction::Block,
            script_extensions: DEFAULT_SCRIPT_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Attachments {
    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, ext) in self.script_extensions.iter().enumerate() {
            let path = format!("attachments.script_extensions[{i}]");
            let ok = !ext.is_empty()
                && ext.len() <= 32
                && !ext.starts_with('.')
                && ext
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                bad(
                    &path,
                    format!(
                        "'{ext}' is not a file name extension (letters, digits, '-', '_'; no dot; at most 32)"
                    ),
                );
            } else if !seen.insert(ext.to_ascii_lowercase()) {
                bad(&path, format!("'{ext}' is listed twice"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(a: &Attachments) -> Vec<(String, String)> {
        let mut out = Vec::new();
        a.problems(&mut |p, m| out.push((p.to_string(), m)));
        out
    }

    #[test]
    fn defaults_are_valid_and_extensions_are_checked() {
        assert!(problems(&Attachments::default()).is_empty());
        let a = Attachments {
            script_extensions: vec!["js".into(), ".vbs".into(), "JS".into(), "".into()],
            ..Default::default()
        };
        let p = problems(&a);
        let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "attachments.script_extensions[1]",
                "attachments.script_extensions[2]",
                "attachments.script_extensions[3]"
            ]
        );
    }

    #[test]
    fn actions_read_back_from_toml() {
        let cfg = crate::Config::from_toml(
            "[attachments]\nexecutable = \"strip\"\nmacro_document = \"allow\"\n",
        )
        .unwrap();
        assert_eq!(cfg.attachments.executable, AttachmentAction::Strip);
        assert_eq!(cfg.attachments.macro_document, AttachmentAction::Allow);
        assert_eq!(cfg.attachments.script, AttachmentAction::Block);
        let problems = crate::Config::from_toml(
            "[attachments]\nexecutable = \"explode\"\nscript = 3\nscript_extensions = [\"a.b\"]\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"attachments.executable"), "{problems:?}");
        assert!(paths.contains(&"attachments.script"), "{problems:?}");
        assert!(
            paths.contains(&"attachments.script_extensions[0]"),
            "{problems:?}"
        );
    }
}
