//! SMTP replies as policy data.
//!
//! `palisade_smtp_proto::Reply` is the wire type (several lines, parsed enhanced code) and has no
//! serde support on purpose (that crate depends on nothing but `thiserror`). A policy reply is
//! what a rule or a configuration file states — one code, one enhanced code, one sentence — and
//! is stored as JSON with tracking. The engine turns it into a wire reply with
//! `smtp_proto::Reply::new(r.code, &r.enhanced, r.text.clone())` after [`Reply::normalized`]
//! (which guarantees what that constructor asserts).

use serde::{Deserialize, Serialize};

/// The class of reply a disposition needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyClass {
    /// 4xx: try again later.
    Transient,
    /// 5xx: never.
    Permanent,
}

/// One SMTP reply: `code`, RFC 3463 enhanced code (`"5.7.1"`, or `""` for none), one line of
/// text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub code: u16,
    #[serde(default)]
    pub enhanced: String,
    #[serde(default)]
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: enhanced.to_string(),
            text: text.into(),
        }
    }

    /// Used when a check failed and its failure mode says tempfail.
    pub fn check_failed_tempfail() -> Reply {
        Reply::new(
            451,
            "4.3.0",
            "Message could not be checked now, please try again later",
        )
    }

    /// Used when a check failed and its failure mode says reject.
    pub fn check_failed_reject() -> Reply {
        Reply::new(554, "5.7.0", "Message could not be checked")
    }

    /// Used for a reject decision whose reply is not a valid 5xx reply.
    pub fn default_reject() -> Reply {
        Reply::new(550, "5.7.1", "Message refused by policy")
    }

    /// Used for a tempfail decision whose reply is not a valid 4xx reply.
    pub fn default_tempfail() -> Reply {
        Reply::new(
            451,
            "4.7.1",
            "Message deferred by policy, please try again later",
        )
    }

    /// Used when decide() is asked about a message without recipients (the engine never does).
    pub fn no_recipients() -> Reply {
        Reply::new(554, "5.5.1", "No valid recipients")
    }

    pub fn class(&self) -> Option<ReplyClass> {
        match self.code {
            400..=499 => Some(ReplyClass::Transient),
            500..=599 => Some(ReplyClass::Permanent),
            _ => None,
        }
    }

    /// Whether `enhanced` is empty or an RFC 3463 code `C.S.D` whose class digit matches `code`.
    pub fn enhanced_is_valid(&self) -> bool {
        if self.enhanced.is_empty() {
            return true;
        }
        let parts: Vec<&str> = self.enhanced.split('.').collect();
        let [class, subject, detail] = parts.as_slice() else {
            return false;
        };
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        digits(class, 1)
            && digits(subject, 3)
            && digits(detail, 3)
            && (self.code / 100).to_string() == *class
    }

    /// This reply made fit for `class`: a code of another class gives the default reply of
    /// `class` (keeping the text if there was one); an enhanced code that is malformed or of
    /// another class is dropped; CR, LF and other control characters in the text become spaces.
    /// Total: decide() applies it to every reply a check hands in.
    pub fn normalized(&self, class: ReplyClass) -> Reply {
        let mut reply = if self.class() == Some(class) {
            self.clone()
        } else {
            let mut fallback = match class {
                ReplyClass::Transient => Reply::default_tempfail(),
                ReplyClass::Permanent => Reply::default_reject(),
            };
            if !self.text.trim().is_empty() {
                fallback.text = self.text.clone();
            }
            fallback
        };
        if !reply.enhanced_is_valid() {
            reply.enhanced.clear();
        }
        if reply.text.chars().any(char::is_control) {
            reply.text = reply
                .text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
        }
        reply
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:03}", self.code)?;
        if !self.enhanced.is_empty() {
            write!(f, " {}", self.enhanced)?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}
