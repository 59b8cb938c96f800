//! What a check can ask for: dispositions (compete), edits (accumulate), copies (accumulate),
//! to whom (scope), and why (explanation).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Reply;

/// Why something happened, carried with every decision and every score contribution, stored
/// with tracking and shown to the operator.
///
/// `score` on a score contribution is its weight in the total; on a decision it is informative
/// only (e.g. the spam score that crossed a threshold) and is never summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The check's name, e.g. `"antivirus"`, `"spf"`, `"policy"`.
    pub stage: String,
    /// The rule inside the check, e.g. `"eicar"`, `"fail"`, `"phi-outbound"`.
    pub rule: String,
    /// Finite values only are meaningful: NaN and infinities are ignored by [`crate::score`]
    /// and written as JSON `null`.
    #[serde(default)]
    pub score: Option<f64>,
    /// One human sentence, e.g. "The attachment invoice.zip contains Eicar-Test-Signature."
    pub sentence: String,
}

impl Explanation {
    pub fn new(
        stage: impl Into<String>,
        rule: impl Into<String>,
        sentence: impl Into<String>,
    ) -> Explanation {
        Explanation {
            stage: stage.into(),
            rule: rule.into(),
            score: None,
            sentence: sentence.into(),
        }
    }

    pub fn with_score(mut self, score: f64) -> Explanation {
        self.score = Some(score);
        self
    }
}

/// What happens to the message for one recipient. Dispositions compete: exactly one wins per
/// recipient, by the precedence documented in [`crate::decide`] (and [`Disposition::rank`]).
///
/// Serialized flat with an `action` tag, e.g. `{"action":"reject","code":550,"enhanced":"5.7.1",
/// "text":"…"}` or `{"action":"quarantine","reason":"virus"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Disposition {
    /// Deliver as addressed. What happens when nothing else is decided.
    Deliver,
    /// Refuse permanently with this reply (5xx). Refusing one recipient of an accepted message
    /// is a silent drop (inbound) or a DSN (outbound, trusted sender): see [`crate::Verdict`].
    Reject(Reply),
    /// Try again later (4xx). After DATA there is one reply for the whole message, so a tempfail
    /// for any recipient defers the whole message.
    Tempfail(Reply),
    /// Keep it in quarantine for an operator (or the recipient) to release or delete.
    Quarantine { reason: String },
    /// Accept and drop without a trace for the sender (tracked for the operator).
    Discard,
    /// Deliver through this route instead of the recipient's normal one.
    Redirect { route: String },
    /// Deliver encrypted. `scheme` names what the rule asks for (e.g. `"smime"`, `"pgp"`,
    /// `"portal"`); `None` lets the encryption stage choose. Until encryption exists
    /// ([`crate::DecideContext::encryption_available`] is false) this becomes a quarantine:
    /// never sent in clear.
    Encrypt {
        #[serde(default)]
        scheme: Option<String>,
    },
    /// Hold until the sender confirms (outbound DLP), then deliver.
    HoldForConfirmation,
}

impl Disposition {
    /// Precedence: the highest rank wins for a recipient; on a tie the first decision in check
    /// order wins. `Encrypt` here is the available case (unavailable encryption is turned into
    /// `Quarantine` before ranking).
    ///
    /// Tempfail > Reject > Quarantine > HoldForConfirmation > Discard > Encrypt > Redirect >
    /// Deliver. Why: a deferral is the only thing SMTP can still say for the whole message
    /// once one check could not finish (the retry checks everything again); a refusal is
    /// final and keeps nothing; keeping (quarantine, hold) beats dropping (discard) so an
    /// operator can still undo; encryption beats a redirect so a rerouted message is never
    /// sent in clear; Deliver is the default.
    pub fn rank(&self) -> u8 {
        match self {
            Disposition::Tempfail(_) => 7,
            Disposition::Reject(_) => 6,
            Disposition::Quarantine { .. } => 5,
            Disposition::HoldForConfirmation => 4,
            Disposition::Discard => 3,
            Disposition::Encrypt { .. } => 2,
            Disposition::Redirect { .. } => 1,
            Disposition::Deliver => 0,
        }
    }

    /// Whether the message goes on towards a recipient (so copies are sent along).
    pub fn sends_on(&self) -> bool {
        matches!(
            self,
            Disposition::Deliver | Disposition::Redirect { .. } | Disposition::Encrypt { .. }
        )
    }

    /// Whether something is kept for this recipient (so edits still apply).
    pub fn keeps(&self) -> bool {
        self.sends_on()
            || matches!(
                self,
                Disposition::Quarantine { .. } | Disposition::HoldForConfirmation
            )
    }

    /// The `action` name as serialized, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Disposition::Deliver => "deliver",
            Disposition::Reject(_) => "reject",
            Disposition::Tempfail(_) => "tempfail",
            Disposition::Quarantine { .. } => "quarantine",
            Disposition::Discard => "discard",
            Disposition::Redirect { .. } => "redirect",
            Disposition::Encrypt { .. } => "encrypt",
            Disposition::HoldForConfirmation => "hold_for_confirmation",
        }
    }
}

/// A change to the message. Edits accumulate, in check order, for every recipient in scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Edit {
    AddHeader {
        name: String,
        value: String,
    },
    /// Removes every field of this name (case-insensitive), including ones added by an earlier
    /// `AddHeader`: the engine applies edits in order.
    RemoveHeader {
        name: String,
    },
    /// Prefixes the Subject with `tag` (e.g. `"[SPAM]"`), once.
    TagSubject {
        tag: String,
    },
    /// Removes every `Authentication-Results` field whose authserv-id (RFC 8601 §2.5) is
    /// `authserv_id` (case-insensitive): results claiming to come from us that arrived with
    /// the message (RFC 8601 §5). Fields of other authserv-ids stay.
    RemoveAuthenticationResults {
        authserv_id: String,
    },
    /// Removes these MIME parts from the copy, each replaced in place by a short `text/plain`
    /// part saying what was removed and why. The engine keeps the original (unedited) in
    /// quarantine for the recipients who get the stripped copy, so it can be released.
    StripParts {
        parts: Vec<StrippedPart>,
    },
    /// Signs the copy with the DKIM key of `selector` for `domain` (the engine's keys). Applied
    /// after every other edit, whatever its place in the list: the signature covers the copy
    /// exactly as it leaves.
    DkimSign {
        domain: String,
        selector: String,
    },
    /// Adds an ARC set (RFC 8617: ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results)
    /// as `domain` with the key of `selector`. Applied last, after any `DkimSign`: `chain` is
    /// the validation of the chain the message arrived with (`none`, `pass`, `fail`) and
    /// `results` this hop's Authentication-Results value (authserv-id first), recorded as the
    /// set's ARC-Authentication-Results.
    ArcSeal {
        domain: String,
        selector: String,
        chain: String,
        results: String,
    },
    /// Replaces the copy's content (its `Content-*` fields and body) with an S/MIME
    /// enveloped-data entity for `partner`'s certificates (signed first with the gateway's
    /// key when there is one). Applied after the other edits and before any `DkimSign` /
    /// `ArcSeal`, which then cover the encrypted copy. If it cannot be made, no copy is made:
    /// never clear text instead.
    SmimeEncrypt {
        partner: String,
    },
    /// As [`Edit::SmimeEncrypt`], with OpenPGP (PGP/MIME, RFC 3156) to `partner`'s key,
    /// signed with the gateway's OpenPGP key when there is one.
    PgpEncrypt {
        partner: String,
    },
    /// Removes `tag` (case-insensitive, once, with the space after it) from the Subject: the
    /// `[secure]` a sender typed to ask for encryption does not travel.
    UntagSubject {
        tag: String,
    },
}

/// One MIME part an [`Edit::StripParts`] removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrippedPart {
    /// Its position in the message's MIME view (`1.2`).
    pub section: String,
    /// For people: its file name (or section).
    pub name: String,
    /// Why, in a few words (`executable`).
    pub reason: String,
    /// Its bytes in the message as received: from its first header line to the end of its
    /// body (the boundary delimiters around it are not included and stay).
    pub start: u64,
    pub end: u64,
    /// The text of the `text/plain` part that takes its place (printable ASCII lines).
    pub note: String,
}

impl StrippedPart {
    /// `invoice.pdf.exe (executable)`: for quarantine reasons and logs.
    pub fn summary(&self) -> String {
        format!("{} ({})", self.name, self.reason)
    }
}

/// What a decision asks for: a disposition (competes), an edit (accumulates), or a copy to
/// another address (accumulates; sent only if the message goes on, see
/// [`crate::RecipientVerdict::copies`]).
///
/// Serialized flat, like its parts: `{"action":"bcc","address":"archive@example.org"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FlatAction", into = "FlatAction")]
pub enum Action {
    Dispose(Disposition),
    Edit(Edit),
    /// Send a copy to this address (journaling, supervisor copy).
    Bcc {
        address: String,
    },
}

impl Action {
    pub fn deliver() -> Action {
        Action::Dispose(Disposition::Deliver)
    }
    pub fn reject(reply: Reply) -> Action {
        Action::Dispose(Disposition::Reject(reply))
    }
    pub fn tempfail(reply: Reply) -> Action {
        Action::Dispose(Disposition::Tempfail(reply))
    }
    pub fn quarantine(reason: impl Into<String>) -> Action {
        Action::Dispose(Disposition::Quarantine {
            reason: reason.into(),
        })
    }
    pub fn discard() -> Action {
        Action::Dispose(Disposition::Discard)
    }
    pub fn redirect(route: impl Into<String>) -> Action {
        Action::Dispose(Disposition::Redirect {
            route: route.into(),
        })
    }
    pub fn encrypt(scheme: Option<String>) -> Action {
        Action::Dispose(Disposition::Encrypt { scheme })
    }
    pub fn hold_for_confirmation() -> Action {
        Action::Dispose(Disposition::HoldForConfirmation)
    }
    pub fn add_header(name: impl Into<String>, value: impl Into<String>) -> Action {
        Action::Edit(Edit::AddHeader {
            name: name.into(),
            value: value.into(),
        })
    }
    pub fn remove_header(name: impl Into<String>) -> Action {
        Action::Edit(Edit::RemoveHeader { name: name.into() })
    }
    pub fn tag_subject(tag: impl Into<String>) -> Action {
        Action::Edit(Edit::TagSubject { tag: tag.into() })
    }
    pub fn dkim_sign(domain: impl Into<String>, selector: impl Into<String>) -> Action {
        Action::Edit(Edit::DkimSign {
            domain: domain.into(),
            selector: selector.into(),
        })
    }
    pub fn strip_parts(parts: Vec<StrippedPart>) -> Action {
        Action::Edit(Edit::StripParts { parts })
    }

    pub fn remove_authentication_results(authserv_id: impl Into<String>) -> Action {
        Action::Edit(Edit::RemoveAuthenticationResults {
            authserv_id: authserv_id.into(),
        })
    }
    pub fn bcc(address: impl Into<String>) -> Action {
        Action::Bcc {
            address: address.into(),
        }
    }
}

impl From<Disposition> for Action {
    fn from(d: Disposition) -> Action {
        Action::Dispose(d)
    }
}

impl From<Edit> for Action {
    fn from(e: Edit) -> Action {
        Action::Edit(e)
    }
}

/// The serialized form of [`Action`]: one flat, tagged object, so a stored decision and a
/// configured rule read `{"action":"tag_subject","tag":"[SPAM]"}`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum FlatAction {
    Deliver,
    Reject(Reply),
    Tempfail(Reply),
    Quarantine {
        reason: String,
    },
    Discard,
    Redirect {
        route: String,
    },
    Encrypt {
        #[serde(default)]
        scheme: Option<String>,
    },
    HoldForConfirmation,
    AddHeader {
        name: String,
        value: String,
    },
    RemoveHeader {
        name: String,
    },
    TagSubject {
        tag: String,
    },
    StripParts {
        parts: Vec<StrippedPart>,
    },
    RemoveAuthenticationResults {
        authserv_id: String,
    },
    DkimSign {
        domain: String,
        selector: String,
    },
    ArcSeal {
        domain: String,
        selector: String,
        chain: String,
        results: String,
    },
    Bcc {
        address: String,
    },
    SmimeEncrypt {
        partner: String,
    },
    PgpEncrypt {
        partner: String,
    },
    UntagSubject {
        tag: String,
    },
}

impl From<FlatAction> for Action {
    fn from(f: FlatAction) -> Action {
        match f {
            FlatAction::Deliver => Action::deliver(),
            FlatAction::Reject(r) => Action::reject(r),
            FlatAction::Tempfail(r) => Action::tempfail(r),
            FlatAction::Quarantine { reason } => Action::quarantine(reason),
            FlatAction::Discard => Action::discard(),
            FlatAction::Redirect { route } => Action::redirect(route),
            FlatAction::Encrypt { scheme } => Action::encrypt(scheme),
            FlatAction::HoldForConfirmation => Action::hold_for_confirmation(),
            FlatAction::AddHeader { name, value } => Action::add_header(name, value),
            FlatAction::RemoveHeader { name } => Action::remove_header(name),
            FlatAction::TagSubject { tag } => Action::tag_subject(tag),
            FlatAction::StripParts { parts } => Action::strip_parts(parts),
            FlatAction::RemoveAuthenticationResults { authserv_id } => {
                Action::remove_authentication_results(authserv_id)
            }
            FlatAction::DkimSign { domain, selector } => Action::dkim_sign(domain, selector),
            FlatAction::ArcSeal {
                domain,
                selector,
                chain,
                results,
            } => Action::Edit(Edit::ArcSeal {
                domain,
                selector,
                chain,
                results,
            }),
            FlatAction::Bcc { address } => Action::bcc(address),
            FlatAction::SmimeEncrypt { partner } => Action::Edit(Edit::SmimeEncrypt { partner }),
            FlatAction::PgpEncrypt { partner } => Action::Edit(Edit::PgpEncrypt { partner }),
            FlatAction::UntagSubject { tag } => Action::Edit(Edit::UntagSubject { tag }),
        }
    }
}

impl From<Action> for FlatAction {
    fn from(a: Action) -> FlatAction {
        match a {
            Action::Dispose(d) => match d {
                Disposition::Deliver => FlatAction::Deliver,
                Disposition::Reject(r) => FlatAction::Reject(r),
                Disposition::Tempfail(r) => FlatAction::Tempfail(r),
                Disposition::Quarantine { reason } => FlatAction::Quarantine { reason },
                Disposition::Discard => FlatAction::Discard,
                Disposition::Redirect { route } => FlatAction::Redirect { route },
                Disposition::Encrypt { scheme } => FlatAction::Encrypt { scheme },
                Disposition::HoldForConfirmation => FlatAction::HoldForConfirmation,
            },
            Action::Edit(e) => match e {
                Edit::AddHeader { name, value } => FlatAction::AddHeader { name, value },
                Edit::RemoveHeader { name } => FlatAction::RemoveHeader { name },
                Edit::TagSubject { tag } => FlatAction::TagSubject { tag },
                Edit::StripParts { parts } => FlatAction::StripParts { parts },
                Edit::RemoveAuthenticationResults { authserv_id } => {
                    FlatAction::RemoveAuthenticationResults { authserv_id }
                }
                Edit::DkimSign { domain, selector } => FlatAction::DkimSign { domain, selector },
                Edit::ArcSeal {
                    domain,
                    selector,
                    chain,
                    results,
                } => FlatAction::ArcSeal {
                    domain,
                    selector,
                    chain,
                    results,
                },
                Edit::SmimeEncrypt { partner } => FlatAction::SmimeEncrypt { partner },
                Edit::PgpEncrypt { partner } => FlatAction::PgpEncrypt { partner },
                Edit::UntagSubject { tag } => FlatAction::UntagSubject { tag },
            },
            Action::Bcc { address } => FlatAction::Bcc { address },
        }
    }
}

/// To whom a decision applies. Recipient indexes are positions in the `recipients` slice given
/// to [`crate::decide`] (RCPT order); indexes out of range are ignored.
///
/// JSON: `"message"` or `{"recipients":[0,2]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every recipient.
    #[default]
    Message,
    /// These recipients only (an empty set applies to no one).
    Recipients(BTreeSet<usize>),
}

impl Scope {
    pub fn recipients(indexes: impl IntoIterator<Item = usize>) -> Scope {
        Scope::Recipients(indexes.into_iter().collect())
    }

    pub fn includes(&self, index: usize) -> bool {
        match self {
            Scope::Message => true,
            Scope::Recipients(set) => set.contains(&index),
        }
    }
}

/// One thing a check decided, for whom, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(default)]
    pub scope: Scope,
    pub action: Action,
    pub explanation: Explanation,
    /// Monitor mode: the rule records what it would have done but does not enforce it. A
    /// monitored decision never changes a disposition, an edit or a copy; it is returned in
    /// [`crate::RecipientVerdict::monitored`].
    #[serde(default)]
    pub monitor: bool,
}

impl Decision {
    pub fn new(scope: Scope, action: impl Into<Action>, explanation: Explanation) -> Decision {
        Decision {
            scope,
            action: action.into(),
            explanation,
            monitor: false,
        }
    }

    /// This decision in monitor mode.
    pub fn monitored(mut self) -> Decision {
        self.monitor = true;
        self
    }
}
