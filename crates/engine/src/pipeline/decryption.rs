//! The `encryption` check: what the gateway made of an inbound message's S/MIME or OpenPGP (see
//! ARCHITECTURE.md, "Gateway encryption"; the opening itself happens before the view is built,
//! [`super::encryption::Encryption::open_inbound`], so every other check reads the decrypted
//! content).
//!
//! Its result goes on top of the message as an `Authentication-Results` field (RFC 7281's
//! `smime` method for S/MIME, `x-pgp` for OpenPGP, which has no registered method; our
//! authserv-id): `pass` when every signature verifies and the signer
//! is trusted (a partner's certificate, or a chain to `encryption.smime_ca_file`) and its
//! certificate names the From address; `policy` when the signature verifies but the signer is
//! not trusted or is someone else; `fail` when it does not verify; `none` when the message was
//! not signed. A comment says what happened to the encryption. Decryption failures and bad
//! signatures get `encryption.decrypt_failure` / `encryption.bad_signature`.

use palisade_policy::{Action, Decision, Direction, Explanation, Reply, Scope};
use palisade_store::Config;
use palisade_store::config::CryptoFailureAction;
use serde_json::json;

use super::{CheckFuture, Findings, Subject};

/// The tag a delivered message that failed gets on its Subject.
pub const FAILED_TAG: &str = "[decryption failed]";
/// The tag a delivered message whose signature failed gets.
pub const BAD_SIGNATURE_TAG: &str = "[signature failed]";

pub struct DecryptionCheck {
    authserv_id: String,
    decrypt_failure: CryptoFailureAction,
    bad_signature: CryptoFailureAction,
}

impl DecryptionCheck {
    pub fn from_config(cfg: &Config) -> DecryptionCheck {
        DecryptionCheck {
            authserv_id: cfg.system.hostname.clone(),
            decrypt_failure: cfg.encryption.decrypt_failure,
            bad_signature: cfg.encryption.bad_signature,
        }
    }

    fn findings(&self, subject: &Subject) -> Findings {
        if subject.envelope.direction != Direction::Inbound {
            return Findings {
                skipped: Some("outbound mail is not opened".into()),
                ..Default::default()
            };
        }
        let Some(u) = subject.envelope.crypto.as_ref() else {
            return Findings {
                facts: json!({ "decryption": "not_encrypted", "signature": "none" }),
                ..Default::default()
            };
        };
        let from = subject.view.tracking().from.map(|f| f.to_ascii_lowercase());
        let from_matches = from
            .as_deref()
            .is_some_and(|f| u.signer_emails.iter().any(|e| e == f));
        let result = match (u.signature.as_str(), u.trust.as_deref()) {
            ("valid", Some("partner" | "ca")) if from_matches => "pass",
            ("valid", _) => "policy",
            ("invalid", _) => "fail",
            _ => "none",
        };
        let mut comment: Vec<String> = Vec::new();
        match u.decryption.as_str() {
            "decrypted" => comment.push(format!("decrypted {}", u.cipher.as_deref().unwrap_or(""))),
            "not_addressed" => comment.push("encrypted to another recipient, not opened".into()),
            "failed" => comment.push("decryption failed".into()),
            _ => {}
        }
        match (result, u.trust.as_deref()) {
            ("pass", Some(t)) => comment.push(format!("signer trusted: {t}")),
            ("policy", Some("untrusted")) => comment.push("signer not trusted".into()),
            ("policy", _) => comment.push("signer is not the From address".into()),
            ("fail", _) => comment.push("signature does not verify".into()),
            _ => {}
        }
        let method = if u.scheme == "openpgp" {
            "x-pgp"
        } else {
            "smime"
        };
        let mut ar = format!("{}; {method}={result}", self.authserv_id);
        if !comment.is_empty() {
            ar.push_str(&format!(" ({})", comment.join("; ")));
        }
        if let Some(e) = u.signer_emails.first() {
            ar.push_str(&format!(" body.{method}-identifier={e}"));
        }
        let ar = super::printable_line(&ar, 900);
        let mut f = Findings {
            facts: json!({
                "scheme": u.scheme,
            "decryption": u.decryption,
                "cipher": u.cipher,
                "signature": u.signature,
                "result": result,
                "signer": u.signer,
                "signer_emails": u.signer_emails,
                "signer_fingerprint": u.signer_fingerprint,
                "trust": u.trust,
                "from_matches": from_matches,
                "error": u.error,
            }),
            ..Default::default()
        };
        let explain = |rule: &str, text: String| Explanation::new("encryption", rule, text);
        f.decisions.push(Decision::new(
            Scope::Message,
            Action::remove_authentication_results(self.authserv_id.clone()),
            explain(
                "authentication_results",
                format!("Authentication-Results claiming our authserv-id {} are removed before ours is added.", self.authserv_id),
            ),
        ));
        f.decisions.push(Decision::new(
            Scope::Message,
            Action::add_header("Authentication-Results", ar),
            explain(
                "result",
                format!("S/MIME: {}; signature {result}.", u.decryption),
            ),
        ));
        let error = u.error.clone().unwrap_or_default();
        let failure = if u.decryption == "failed" {
            Some((
                self.decrypt_failure,
                "decrypt_failure",
                format!(
                    "The message is encrypted to this gateway and could not be decrypted: {error}."
                ),
            ))
        } else if u.signature == "invalid" {
            Some((
                self.bad_signature,
                "bad_signature",
                format!("The message's S/MIME signature does not verify: {error}."),
            ))
        } else {
            None
        };
        if let Some((action, rule, sentence)) = failure {
            let sentence = super::printable_line(&sentence, 400);
            let d = match action {
                CryptoFailureAction::Quarantine => Decision::new(
                    Scope::Message,
                    Action::quarantine(format!("{}: {rule}", u.scheme)),
                    explain(rule, sentence),
                ),
                CryptoFailureAction::Reject => Decision::new(
                    Scope::Message,
                    Action::reject(Reply::new(
                        550,
                        "5.7.5",
                        if rule == "decrypt_failure" {
                            "Message could not be decrypted"
                        } else {
                            "Message signature does not verify"
                        },
                    )),
                    explain(rule, sentence),
                ),
                CryptoFailureAction::Deliver => Decision::new(
                    Scope::Message,
                    Action::Edit(palisade_policy::Edit::TagSubject {
                        tag: if rule == "decrypt_failure" {
                            FAILED_TAG
                        } else {
                            BAD_SIGNATURE_TAG
                        }
                        .into(),
                    }),
                    explain(
                        rule,
                        format!("{sentence} Delivered marked (encryption.{rule} = \"deliver\")."),
                    ),
                ),
            };
            f.decisions.push(d);
        }
        f
    }
}

impl super::Check for DecryptionCheck {
    fn name(&self) -> &str {
        "encryption"
    }
    fn run(&self, subject: Subject) -> CheckFuture {
        let f = self.findings(&subject);
        Box::pin(async move { Ok(f) })
    }
}
