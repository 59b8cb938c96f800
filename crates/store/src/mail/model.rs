//! The typed queue model and its one mapping from stored text: states, kinds and DSN
//! parameters are enums everywhere outside this file. A value that does not parse is a
//! [`StoreError::BadValue`] naming the table and column, never a silent default.

use std::fmt;
use std::str::FromStr;

use palisade_smtp_proto::{Body, Notify, Ret};
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// Where a queued recipient stands. Stored (and serialized) lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Still to be delivered (possibly deferred to `next_attempt`).
    Queued,
    Delivered,
    /// Permanently failed or expired: a bounce is due if NOTIFY asks for one.
    Failed,
}

impl RcptState {
    pub fn as_str(self) -> &'static str {
        match self {
            RcptState::Queued => "queued",
            RcptState::Delivered => "delivered",
            RcptState::Failed => "failed",
        }
    }
}

impl fmt::Display for RcptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RcptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "queued" => Ok(RcptState::Queued),
            "delivered" => Ok(RcptState::Delivered),
            "failed" => Ok(RcptState::Failed),
            other => Err(format!("unknown recipient state {other:?}")),
        }
    }
}

/// What kind of message a queue entry is. Bounces are never bounced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Mail,
    Dsn,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Mail => "mail",
            MessageKind::Dsn => "dsn",
        }
    }
}

impl FromStr for MessageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mail" => Ok(MessageKind::Mail),
            "dsn" => Ok(MessageKind::Dsn),
            other => Err(format!("unknown message kind {other:?}")),
        }
    }
}

/// Where a quarantined message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineState {
    /// Held in `DIR/quarantine/`, waiting for an operator (or expiry).
    Held,
    /// Enqueued again (`released_as` names the new queue id); the held file is gone.
    Released,
    /// Deleted by an operator or expired; the held file is gone.
    Deleted,
}

impl QuarantineState {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineState::Held => "held",
            QuarantineState::Released => "released",
            QuarantineState::Deleted => "deleted",
        }
    }
}

impl fmt::Display for QuarantineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuarantineState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "held" => Ok(QuarantineState::Held),
            "released" => Ok(QuarantineState::Released),
            "deleted" => Ok(QuarantineState::Deleted),
            other => Err(format!("unknown quarantine state {other:?}")),
        }
    }
}

/// A DSN parameter as it is stored: its wire value (`8BITMIME`, `FULL`, `SUCCESS,FAILURE`).
pub(crate) trait StoredParam: Sized {
    fn stored(&self) -> String;
}

impl StoredParam for Body {
    fn stored(&self) -> String {
        self.as_param().to_owned()
    }
}

impl StoredParam for Ret {
    fn stored(&self) -> String {
        self.as_param().to_owned()
    }
}

impl StoredParam for Notify {
    fn stored(&self) -> String {
        self.to_param()
    }
}

pub(crate) fn stored<T: StoredParam>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(StoredParam::stored)
}

/// Parses a stored value; the error names where it came from.
pub(crate) fn parse<T: FromStr>(
    table: &'static str,
    column: &'static str,
    value: String,
) -> Result<T> {
    value.parse().map_err(|_| StoreError::BadValue {
        table,
        column,
        value,
    })
}

pub(crate) fn parse_opt<T: FromStr>(
    table: &'static str,
    column: &'static str,
    value: Option<String>,
) -> Result<Option<T>> {
    value.map(|v| parse(table, column, v)).transpose()
}

/// Serde for `Option<Body | Ret | Notify>` as the parameter's wire value (the JSON shape the
/// queue had when these were strings).
pub(crate) mod opt_param {
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::StoredParam;

    pub fn serialize<T: StoredParam, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.stored()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                s.parse()
                    .map_err(|_| serde::de::Error::custom(format!("bad parameter value {s:?}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_unknown_values_are_errors() {
        for s in [RcptState::Queued, RcptState::Delivered, RcptState::Failed] {
            assert_eq!(s.as_str().parse::<RcptState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in [
            QuarantineState::Held,
            QuarantineState::Released,
            QuarantineState::Deleted,
        ] {
            assert_eq!(s.as_str().parse::<QuarantineState>(), Ok(s));
        }
        for k in [MessageKind::Mail, MessageKind::Dsn] {
            assert_eq!(k.as_str().parse::<MessageKind>(), Ok(k));
        }
        let err = parse::<RcptState>("queue_rcpt", "state", "Queued".into()).unwrap_err();
        assert!(err.to_string().contains("queue_rcpt.state"), "{err}");
        assert!(parse::<MessageKind>("queue_message", "kind", "bounce".into()).is_err());
        assert!(parse_opt::<Body>("queue_message", "body", Some("BINARYMIME".into())).is_err());
        assert_eq!(
            parse_opt::<Ret>("queue_message", "ret", Some("HDRS".into())).unwrap(),
            Some(Ret::Hdrs)
        );
    }
}
