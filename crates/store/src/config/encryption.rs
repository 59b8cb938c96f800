//! `[encryption]`: what inbound S/MIME gets (see ARCHITECTURE.md, "Gateway encryption").
//!
//! ```toml
//! [encryption]
//! decrypt_failure = "quarantine"   # mail encrypted to the gateway that cannot be opened
//! bad_signature = "deliver"        # a signature that does not verify (marked, recorded)
//! smime_ca_file = ""               # PEM CAs trusted for signers' chains (emailProtection)
//! ```
//!
//! Mail encrypted to someone else (a person's own certificate) is passed on as it is and
//! recorded; the `rules` check can hold it (`unscannable`).

use serde::{Deserialize, Serialize};

/// What a message gets when its S/MIME layer fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CryptoFailureAction {
    /// Held for an operator, who can release it.
    Quarantine,
    /// Refused at the end of DATA (550 5.7.5): the sender's server tells the sender.
    Reject,
    /// Delivered as it is, marked: `Authentication-Results` says what failed and the Subject
    /// is tagged.
    Deliver,
}

impl CryptoFailureAction {
    pub fn name(self) -> &'static str {
        match self {
            CryptoFailureAction::Quarantine => "quarantine",
            CryptoFailureAction::Reject => "reject",
            CryptoFailureAction::Deliver => "deliver",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Encryption {
    /// A message encrypted to the gateway's certificate that cannot be decrypted (damaged,
    /// an unsupported cipher): never delivered as if it were clean.
    pub decrypt_failure: CryptoFailureAction,
    /// A message whose S/MIME signature does not verify (altered on the way, or forged).
    pub bad_signature: CryptoFailureAction,
    /// PEM file of the certificate authorities trusted to vouch for signers (their chain must
    /// reach one for emailProtection). Partners' own certificates are trusted as they are.
    /// Empty: none.
    pub smime_ca_file: String,
}

impl Default for Encryption {
    fn default() -> Self {
        Encryption {
            decrypt_failure: CryptoFailureAction::Quarantine,
            bad_signature: CryptoFailureAction::Deliver,
            smime_ca_file: String::new(),
        }
    }
}

impl Encryption {
    pub fn is_default(&self) -> bool {
        *self == Encryption::default()
    }

    pub(super) fn problems(&self, bad: &mut dyn FnMut(&str, String)) {
        let f = self.smime_ca_file.trim();
        if !f.is_empty() && !f.starts_with('/') {
            bad(
                "encryption.smime_ca_file",
                format!("'{f}' is not an absolute path"),
            );
        }
    }
}
