//! SMTP AUTH (RFC 4954) on the submission listener: PLAIN and LOGIN, only under TLS, only
//! for `submission` accounts, with the console's throttling and an audit entry for every
//! attempt (`smtp_auth.*`). A successful login lets the session relay like a trusted network.

use palisade_smtp_proto::{Frame, Reply};
use palisade_store::AuditLog;
use palisade_store::accounts::{Accounts, Credentials, Throttle};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::io::ReadError;
use super::session::{Flow, Session};
use crate::listeners::ListenerRole;

enum Step {
    Value(String),
    Reply(Reply),
    Close,
}

impl Session {
    pub(super) async fn auth(&mut self, mechanism: String, initial: Option<String>) -> Flow {
        if self.role != ListenerRole::Submission {
            return self.reject_auth(Reply::new(
                502,
                "5.5.1",
                "AUTH is only offered on the submission port",
            ));
        }
        if self.auth_user.is_some() {
            return self.reject_auth(Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.reject_auth(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if !self.io.is_tls() {
            return self.reject_auth(Reply::new(
                538,
                "5.7.11",
                "Encryption required: use STARTTLS first",
            ));
        }
        let (user, password) = match mechanism.as_str() {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => Step::Value(r),
                    None => self.challenge("").await,
                };
                let response = match self.decoded(response) {
                    Ok(r) => r,
                    Err(flow) => return flow,
                };
                // authzid \0 authcid \0 passwd; acting for someone else is not supported.
                let parts: Vec<&str> = response.split('\0').collect();
                match parts.as_slice() {
                    [authz, user, pass] if authz.is_empty() || authz == user => {
                        (user.to_string(), pass.to_string())
                    }
                    _ => {
                        return self.reject_auth(Reply::new(
                            501,
                            "5.5.2",
                            "Malformed PLAIN response",
                        ));
                    }
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => Step::Value(r),
                    None => self.challenge("VXNlcm5hbWU6").await,
                };
                let user = match self.decoded(user) {
                    Ok(u) => u,
                    Err(flow) => return flow,
                };
                let pass = self.challenge("UGFzc3dvcmQ6").await;
                let pass = match self.decoded(pass) {
                    Ok(p) => p,
                    Err(flow) => return flow,
                };
                (user, pass)
            }
            _ => {
                return self.reject_auth(Reply::new(
                    504,
                    "5.5.4",
                    "Unrecognized authentication type",
                ));
            }
        };

        let shared = self.shared.clone();
        let Ok(_permit) = shared.auth_checks.try_acquire() else {
            tracing::warn!(event = "smtp.auth_busy", peer = %self.peer, user = %user);
            return self.reject_auth(busy());
        };
        let data = self.shared.data.clone();
        let source = self.peer.ip().to_string();
        let name = user.clone();
        // The submission port's trusted networks are familiar to every account: a stranger's
        // failures elsewhere never hold them back (see store::accounts::throttle).
        let throttle = Throttle {
            trusted_networks: self.cfg.smtp.trusted_networks.clone(),
            ..Throttle::default()
        };
        let checked = tokio::task::spawn_blocking(move || {
            let mut accounts = Accounts::open(&data.config_db())?;
            let mut audit = AuditLog::open(&data.audit_db())?;
            accounts.authenticate_submission(&mut audit, &name, &password, &source, &throttle)
        })
        .await;
        match checked {
            Ok(Ok(Credentials::Valid(u))) => {
                tracing::info!(event = "smtp.auth", peer = %self.peer, user = %u.name);
                self.auth_user = Some(u.name);
                self.io
                    .reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                Flow::Continue
            }
            Ok(Ok(Credentials::Refused)) => {
                tracing::info!(event = "smtp.auth_failed", peer = %self.peer, user = %user);
                self.reject_auth(Reply::new(
                    535,
                    "5.7.8",
                    "Authentication credentials invalid",
                ))
            }
            Ok(Ok(Credentials::Throttled { retry_after_secs })) => {
                tracing::warn!(event = "smtp.auth_throttled", peer = %self.peer, user = %user,
                    retry_after_secs);
                self.reject_auth(Reply::new(
                    454,
                    "4.7.0",
                    format!(
                        "Too many failed authentications, try again in {retry_after_secs} seconds"
                    ),
                ))
            }
            Ok(Ok(Credentials::Busy)) => {
                tracing::warn!(event = "smtp.auth_busy", peer = %self.peer, user = %user);
                self.reject_auth(busy())
            }
            Ok(Err(e)) => {
                tracing::error!(event = "smtp.auth_error", error = %e);
                self.reject_auth(Reply::new(454, "4.7.0", "Temporary authentication failure"))
            }
            Err(e) => {
                tracing::error!(event = "smtp.auth_error", error = %e);
                self.reject_auth(Reply::new(454, "4.7.0", "Temporary authentication failure"))
            }
        }
    }

    fn reject_auth(&mut self, r: Reply) -> Flow {
        self.reject(r)
    }

    /// Sends a 334 challenge and reads the client's one-line answer.
    async fn challenge(&mut self, text: &str) -> Step {
        self.io.reply(&Reply::new(334, "", text));
        if self.io.flush().await.is_err() {
            return Step::Close;
        }
        // The answer is a command line like any other: one deadline for all of it.
        let deadline =
            (std::time::Instant::now() + self.command_timeout()).min(self.session_deadline());
        loop {
            match self.framer_next() {
                Frame::Line { consumed } => {
                    let line = self.io.pending()[..consumed - 2].to_vec();
                    self.io.consume(consumed);
                    return Step::Value(String::from_utf8_lossy(&line).into_owned());
                }
                Frame::TooLong { consumed, complete } => {
                    self.io.consume(consumed);
                    if complete {
                        return Step::Reply(Reply::new(500, "5.5.2", "Line too long"));
                    }
                }
                Frame::BareLf { .. } | Frame::BareCr { .. } => return Step::Close,
                Frame::Incomplete => {
                    let wait = deadline.saturating_duration_since(std::time::Instant::now());
                    match self.io.fill(wait).await {
                        Ok(_) => {}
                        Err(ReadError::Timeout) => {
                            let r = self.timeout_reply();
                            self.io.reply(&r);
                            return Step::Close;
                        }
                        Err(ReadError::Evicted) => {
                            let r = self.evicted_reply();
                            self.io.reply(&r);
                            return Step::Close;
                        }
                        Err(ReadError::Closed) | Err(ReadError::Io(_)) => return Step::Close,
                    }
                }
            }
        }
    }

    /// Base64-decodes a response; `*` cancels, `=` is the empty initial response.
    fn decoded(&mut self, step: Step) -> Result<String, Flow> {
        let value = match step {
            Step::Value(v) => v,
            Step::Reply(r) => return Err(self.reject_auth(r)),
            Step::Close => return Err(Flow::Close),
        };
        let value = value.trim();
        if value == "*" {
            return Err(self.reject_auth(Reply::new(501, "5.0.0", "Authentication cancelled")));
        }
        if value == "=" {
            return Ok(String::new());
        }
        match B64
            .decode(value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(s) => Ok(s),
            None => Err(self.reject_auth(Reply::new(501, "5.5.2", "Cannot decode the response"))),
        }
    }
}

/// The reply when too many authentications are being checked at once.
fn busy() -> Reply {
    Reply::new(
        454,
        "4.7.0",
        "Temporary authentication failure: server busy, try again shortly",
    )
}
