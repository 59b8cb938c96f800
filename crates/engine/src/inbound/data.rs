//! What happens at DATA: receive the content into the spool, check it, run the filter
//! pipeline, commit, and only then say 250.
//!
//! Content that breaks a rule (too big, a line over 1000 octets, a NUL) is read to its end and
//! refused as a whole: never truncated, never "fixed". A bare CR or LF ends the session (the
//! smuggling class): the content up to there is discarded and nothing is queued.

use std::time::{Duration, Instant};

use palisade_smtp_proto::{DataDecoder, DataEvent, MAX_TEXT_LINE, Reply};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::io::ReadError;
use super::session::{Flow, RECHECK, Session, sender_string};
use std::sync::Arc;

use palisade_policy::SmtpOutcome;

use crate::pipeline::{self, Envelope, EnvelopeRecipient};
use crate::state::{Counters, INSPECT_BUDGET_MIB};

enum Refusal {
    TooBig,
    LongLine,
    Nul,
    Storage(std::io::Error),
}

impl Session {
    pub(super) async fn data(&mut self) -> Flow {
        let Some(tx) = self.tx.as_ref() else {
            return self.reject_data(Reply::new(503, "5.5.1", "Need MAIL command first"));
        };
        if tx.rcpts.is_empty() {
            return self.reject_data(Reply::new(554, "5.5.1", "No valid recipients"));
        }
        let id = tx.id.clone();
        let mut file = match self.shared.spool.create(&id) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(event = "smtp.spool_failed", queue_id = %id, error = %e);
                let r = local_error(e.is_disk_full());
                self.io.reply(&r);
                return Flow::Continue;
            }
        };
        self.io
            .reply(&Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }

        let received = self.received_header(&id);
        let mut refusal: Option<Refusal> = None;
        if let Err(e) = file.write(received.as_bytes()).await {
            refusal = Some(Refusal::Storage(e));
        }
        let max = self.cfg.smtp.max_message_size;
        let data_started = Instant::now();
        let mut received_bytes: u64 = 0;
        let mut decoder = DataDecoder::new(MAX_TEXT_LINE);
        let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            if !self.io.pending().is_empty() {
                out.clear();
                let event = decoder.feed(self.io.pending(), &mut out);
                let consumed = match event {
                    DataEvent::NeedMore => self.io.pending().len(),
                    DataEvent::Done { consumed } | DataEvent::BareCrLf { consumed } => consumed,
                };
                self.io.consume(consumed);
                if refusal.is_none() {
                    if decoder.content_len() > max {
                        refusal = Some(Refusal::TooBig);
                    } else {
                        if let Err(e) = file.write(&out).await {
                            refusal = Some(Refusal::Storage(e));
                        }
                    }
                }
                match event {
                    DataEvent::Done { .. } => break,
                    DataEvent::BareCrLf { .. } => {
                        tracing::warn!(event = "smtp.bare_newline", peer = %self.peer, queue_id = %id, phase = "data");
                        drop(file);
                        let r = Reply::new(
                            521,
                            "5.5.2",
                            format!(
                                "{} Error: bare <CR> or <LF> in message; closing",
                                self.hostname()
                            ),
                        );
                        self.io.reply(&r);
                        if let Some(tx) = self.tx.take() {
                            self.record_rejection(tx, Some(&r)).await;
                        }
                        return Flow::Close;
                    }
                    DataEvent::NeedMore => {}
                }
            }
            // Re-evaluated every RECHECK: stress mode may shorten the wait meanwhile.
            let (read, limit) = loop {
                let (wait, limit) = self.data_wait(data_started, received_bytes);
                if wait.is_zero() {
                    break (Err(ReadError::Timeout), limit);
                }
                match self.io.fill(wait.min(RECHECK)).await {
                    Err(ReadError::Timeout) => continue,
                    r => break (r, limit),
                }
            };
            match read {
                Ok(n) => received_bytes += n as u64,
                Err(e) => {
                    // The client never finished: nothing was promised, the partial file goes.
                    drop(file);
                    let reply = match e {
                        ReadError::Timeout if limit == DataLimit::Rate => {
                            tracing::info!(event = "smtp.data_too_slow", peer = %self.peer,
                                queue_id = %id, bytes = received_bytes,
                                secs = data_started.elapsed().as_secs());
                            Some(Reply::new(
                                421,
                                "4.4.2",
                                format!(
                                    "{} Data rate too low, closing connection",
                                    self.hostname()
                                ),
                            ))
                        }
                        ReadError::Timeout => Some(self.timeout_reply()),
                        ReadError::Evicted => Some(self.evicted_reply()),
                        ReadError::Closed | ReadError::Io(_) => None,
                    };
                    if let Some(r) = reply {
                        self.io.reply(&r);
                    }
                    self.tx = None;
                    return Flow::Close;
                }
            }
        }
        if decoder.line_too_long() && refusal.is_none() {
            refusal = Some(Refusal::LongLine);
        }
        if decoder.saw_nul() && refusal.is_none() {
            refusal = Some(Refusal::Nul);
        }
        let tx = self.tx.take().expect("transaction checked above");
        if let Some(refusal) = refusal {
            drop(file);
            let r = match refusal {
                Refusal::TooBig => Reply::new(
                    552,
                    "5.3.4",
                    format!("Message exceeds the size limit of {max} bytes"),
                ),
                Refusal::LongLine => Reply::new(
                    550,
                    "5.6.0",
                    format!(
                        "Message has a line longer than {} octets; refused, not truncated",
                        MAX_TEXT_LINE - 2
                    ),
                ),
                Refusal::Nul => Reply::new(550, "5.6.0", "Message contains a NUL character"),
                Refusal::Storage(e) => {
                    tracing::error!(event = "smtp.spool_write_failed", queue_id = %id, error = %e);
                    local_error(palisade_spool::is_disk_full(&e))
                }
            };
            self.io.reply(&r);
            self.record_rejection(tx, Some(&r)).await;
            return Flow::Continue;
        }

        let content = match file.finish().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(event = "smtp.spool_write_failed", queue_id = %id, error = %e);
                let r = local_error(palisade_spool::is_disk_full(&e));
                self.io.reply(&r);
                self.record_rejection(tx, Some(&r)).await;
                return Flow::Continue;
            }
        };

        let pipeline = self.shared.pipeline();
        // Held until this message's view is gone (the end of this function).
        let share = (content.size.div_ceil(1024 * 1024) as u32).clamp(1, INSPECT_BUDGET_MIB);
        let wait = Duration::from_secs(self.cfg.filter.timeout_secs);
        let _inspecting = match tokio::time::timeout(
            wait,
            self.shared.inspecting.clone().acquire_many_owned(share),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                tracing::warn!(event = "filter.busy", queue_id = %id, size = content.size,
                    "too many large messages being inspected at once; deferred");
                self.shared.spool.remove_content(&id);
                let r = Reply::new(
                    451,
                    "4.3.2",
                    "Too busy to inspect the message now, try again later",
                );
                self.io.reply(&r);
                self.record_rejection(tx, Some(&r)).await;
                return Flow::Continue;
            }
        };
        // Inbound S/MIME and OpenPGP are opened before anything looks at the content: the checks read
        // the decrypted message, and the decrypted message is what is kept and delivered.
        let mut content = content;
        let crypto = if self.trusted || self.auth_user.is_some() {
            None
        } else {
            match self.open_smime(&id, &pipeline).await {
                Ok(Some((Some(plain), found))) => {
                    match self.shared.spool.replace_content(&id, &plain).await {
                        Ok(c) => {
                            content = c;
                            Some(found)
                        }
                        Err(e) => {
                            tracing::error!(event = "smtp.spool_write_failed", queue_id = %id, error = %e);
                            self.shared.spool.remove_content(&id);
                            let r = local_error(palisade_spool::is_disk_full(&e));
                            self.io.reply(&r);
                            self.record_rejection(tx, Some(&r)).await;
                            return Flow::Continue;
                        }
                    }
                }
                Ok(Some((None, found))) => Some(found),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(event = "smtp.spool_read_failed", queue_id = %id, error = %e);
                    self.shared.spool.remove_content(&id);
                    let r = Reply::new(451, "4.3.0", "Local error, try again later");
                    self.io.reply(&r);
                    self.record_rejection(tx, Some(&r)).await;
                    return Flow::Continue;
                }
            }
        };
        if let Some(c) = &crypto {
            tracing::info!(event = "encryption.opened", queue_id = %id, scheme = %c.scheme, decryption = %c.decryption,
                signature = %c.signature, signer = c.signer_emails.first().map(String::as_str).unwrap_or(""));
        }
        let view = match pipeline::view_of(&self.shared.spool.content_path(&id), pipeline.limits())
            .await
        {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::error!(event = "smtp.spool_read_failed", queue_id = %id, error = %e);
                self.shared.spool.remove_content(&id);
                let r = Reply::new(451, "4.3.0", "Local error, try again later");
                self.io.reply(&r);
                self.record_rejection(tx, Some(&r)).await;
                return Flow::Continue;
            }
        };
        let mut envelope = self.envelope(&id, &tx);
        envelope.crypto = crypto;
        let envelope = Arc::new(envelope);
        let content_path = self.shared.spool.content_path(&id);
        let eval = pipeline
            .evaluate(envelope, view.clone(), Some(&content_path))
            .await;
        let headers = view.tracking();
        match &eval.verdict.smtp_reply {
            SmtpOutcome::Accept => {}
            SmtpOutcome::Reject(r) | SmtpOutcome::Tempfail(r) => {
                let class = if matches!(eval.verdict.smtp_reply, SmtpOutcome::Reject(_)) {
                    palisade_policy::ReplyClass::Permanent
                } else {
                    palisade_policy::ReplyClass::Transient
                };
                let r = r.normalized(class);
                let r = Reply::new(r.code, &r.enhanced, r.text.clone());
                tracing::info!(event = "filter.refused", queue_id = %id, reply = %r.to_string().trim_end());
                self.shared.spool.remove_content(&id);
                self.io.reply(&r);
                let events = super::accept::decision_events(&id, &eval.verdict);
                let verdict = super::accept::verdict_json(&eval);
                let incidents = crate::pipeline::dlp::incidents(&eval, headers.subject.as_deref());
                self.record_rejection_explained(tx, Some(&r), events, Some(verdict), incidents)
                    .await;
                // The sender has the refusal already (from their own server); the people a
                // rule names are told.
                let admins = crate::notify::notices(&eval, headers.subject.as_deref())
                    .into_iter()
                    .filter(|n| n.admin_of_rule.is_some())
                    .collect();
                crate::notify::spawn(self.shared.clone(), admins);
                return Flow::Continue;
            }
        }

        let plan = match self
            .plan(&id, &tx, &content, &eval, &headers, pipeline.signer())
            .await
        {
            Ok(p) => p,
            Err((e, written)) => {
                tracing::error!(event = "smtp.spool_write_failed", queue_id = %id, error = %e);
                for f in written {
                    let _ = std::fs::remove_file(f);
                }
                self.shared.spool.remove_content(&id);
                let r = local_error(palisade_spool::is_disk_full(&e));
                self.io.reply(&r);
                self.record_rejection(tx, Some(&r)).await;
                return Flow::Continue;
            }
        };
        let super::accept::Plan {
            batch,
            queued,
            dsn,
            written,
            original_kept,
        } = plan;
        let held = batch.quarantined.len();
        let to_confirm: Vec<crate::confirm::Held> = batch
            .quarantined
            .iter()
            .filter_map(crate::confirm::Held::of_new)
            .collect();
        let notices = crate::notify::notices(&eval, headers.subject.as_deref());
        match self.shared.spool.commit(batch).await {
            Ok(()) => {
                crate::confirm::spawn_notices(self.shared.clone(), to_confirm, false);
                crate::notify::spawn(self.shared.clone(), notices);
                Counters::inc(&self.shared.counters.accepted);
                tracing::info!(
                    event = "smtp.queued",
                    queue_id = %id,
                    peer = %self.peer,
                    from = %sender_string(&tx.from),
                    rcpts = tx.rcpts.len(),
                    queued = queued.as_ref().map_or(0, |m| m.recipients.len()),
                    quarantined = held,
                    size = content.size,
                    message_id = headers.message_id.as_deref().unwrap_or(""),
                    tls = self.tls.as_deref().unwrap_or(""),
                );
                self.io
                    .reply(&Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
                self.message_accepted();
                if !original_kept {
                    // Nothing delivers the received file itself (edited copies, quarantine
                    // or nothing at all): it goes. A crash before this leaves a file
                    // without a row, which recovery removes.
                    self.shared.spool.remove_artifact(&id, 0);
                }
                if let Some(m) = queued {
                    self.shared
                        .runner()
                        .submit(crate::outbound::queued_from_new(&m));
                }
                if let Some(d) = dsn {
                    self.shared
                        .runner()
                        .submit(crate::outbound::queued_from_new(&d));
                }
            }
            Err(e) => {
                tracing::error!(event = "smtp.commit_failed", queue_id = %id, error = %e);
                for f in written {
                    let _ = std::fs::remove_file(f);
                }
                self.shared.spool.remove_content(&id);
                let r = local_error(e.is_disk_full());
                self.io.reply(&r);
            }
        }
        Flow::Continue
    }

    /// The envelope the checks see.
    /// [`pipeline::Pipeline::open_inbound`] on the received file, off the async threads.
    async fn open_smime(
        &self,
        id: &str,
        pipeline: &Arc<pipeline::Pipeline>,
    ) -> std::io::Result<Option<(Option<Vec<u8>>, pipeline::encryption::Unwrapped)>> {
        let path = self.shared.spool.content_path(id);
        let pipeline = pipeline.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut head = Vec::with_capacity(64 * 1024);
            std::fs::File::open(&path)?
                .take(64 * 1024)
                .read_to_end(&mut head)?;
            pipeline.open_inbound(&head, || std::fs::read(&path))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    fn envelope(&self, id: &str, tx: &super::session::Transaction) -> Envelope {
        Envelope {
            queue_id: id.to_string(),
            listener: self.role.name().to_string(),
            direction: if self.trusted || self.auth_user.is_some() {
                palisade_policy::Direction::Outbound
            } else {
                palisade_policy::Direction::Inbound
            },
            client_ip: self.peer.ip(),
            client_name: self.client_name.get().cloned().flatten(),
            rdns_checked: self.client_name.get().is_some(),
            helo: self.helo.clone(),
            tls: self.tls.clone(),
            auth_user: self.auth_user.clone(),
            trusted: self.trusted,
            sender: sender_string(&tx.from),
            recipients: tx
                .rcpts
                .iter()
                .map(|r| EnvelopeRecipient {
                    address: r.address.clone(),
                    route: r.route.clone(),
                    notify: r.notify.map(|n| n.to_param()),
                    orcpt: r.orcpt.clone(),
                })
                .collect(),
            crypto: None,
        }
    }

    fn reject_data(&mut self, r: Reply) -> Flow {
        self.io.reply(&r);
        Flow::Continue
    }

    /// The trace header this hop adds (RFC 5321 4.4).
    fn received_header(&self, id: &str) -> String {
        let tx = self.tx.as_ref().expect("in a transaction");
        let proto = with_protocol(
            self.esmtp,
            tx.params.smtputf8,
            self.tls.is_some(),
            self.auth_user.is_some(),
        );
        let helo = clean(self.helo.as_deref().unwrap_or("unknown"));
        let date = OffsetDateTime::now_utc()
            .format(&Rfc2822)
            .unwrap_or_default();
        let mut h = format!(
            "Received: from {helo} ([{}])\r\n\tby {} (Palisade) with {proto}",
            self.peer.ip(),
            self.hostname()
        );
        if let Some(tls) = &self.tls {
            h.push_str(&format!("\r\n\t(using {})", clean(tls)));
        }
        h.push_str(&format!("\r\n\tid {id}"));
        // Naming the recipient is only safe when there is one (RFC 5321 7.2).
        if let [only] = tx.rcpts.as_slice() {
            h.push_str(&format!("\r\n\tfor <{}>", clean(&only.address)));
        }
        h.push_str(&format!("; {date}\r\n"));
        h
    }
}

/// The reply when the spool cannot take the message: 452 when the disk is full (the client
/// should try another MX or later), else a generic 451.
fn local_error(disk_full: bool) -> Reply {
    if disk_full {
        Reply::new(452, "4.3.1", "Insufficient system storage")
    } else {
        Reply::new(451, "4.3.0", "Local error, try again later")
    }
}

/// The `with` keyword of the Received header (RFC 3848; RFC 6531 section 3.7.3 for SMTPUTF8
/// transactions: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA).
fn with_protocol(esmtp: bool, smtputf8: bool, tls: bool, auth: bool) -> String {
    if !esmtp {
        return "SMTP".into();
    }
    let base = if smtputf8 { "UTF8SMTP" } else { "ESMTP" };
    format!(
        "{base}{}{}",
        if tls { "S" } else { "" },
        if auth { "A" } else { "" }
    )
}

/// Keeps client-supplied text from breaking the header's structure.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Which limit the next read in DATA runs into first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataLimit {
    /// No byte for `data_timeout_secs` (or the session's end).
    Silence,
    /// The average rate fell below `min_data_rate` after the grace period.
    Rate,
}

impl Session {
    /// How long the next read in DATA may wait, and which limit ends it: the silence limit,
    /// the session's end, or the moment the average rate since DATA began would fall below
    /// the minimum (after the grace period) if nothing more arrives.
    fn data_wait(&self, started: Instant, bytes: u64) -> (Duration, DataLimit) {
        let smtp = &self.cfg.smtp;
        let stressed = self.stressed();
        let short = |secs: u64| {
            if stressed {
                secs.min(smtp.stress_timeout_secs)
            } else {
                secs
            }
        };
        let now = Instant::now();
        let silence =
            (now + Duration::from_secs(short(smtp.data_timeout_secs))).min(self.session_deadline());
        if smtp.min_data_rate == 0 {
            return (silence.saturating_duration_since(now), DataLimit::Silence);
        }
        // bytes / elapsed >= rate  <=>  elapsed <= bytes / rate.
        let allowed = Duration::from_secs(short(smtp.data_rate_grace_secs)).max(
            Duration::from_secs_f64(bytes as f64 / smtp.min_data_rate as f64),
        );
        let rate = started + allowed;
        if rate < silence {
            (rate.saturating_duration_since(now), DataLimit::Rate)
        } else {
            (silence.saturating_duration_since(now), DataLimit::Silence)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_protocol;

    #[test]
    fn received_protocol_names() {
        let cases = [
            ((false, false, false, false), "SMTP"),
            ((false, true, true, true), "SMTP"),
            ((true, false, false, false), "ESMTP"),
            ((true, false, true, false), "ESMTPS"),
            ((true, false, false, true), "ESMTPA"),
            ((true, false, true, true), "ESMTPSA"),
            ((true, true, false, false), "UTF8SMTP"),
            ((true, true, true, false), "UTF8SMTPS"),
            ((true, true, false, true), "UTF8SMTPA"),
            ((true, true, true, true), "UTF8SMTPSA"),
        ];
        for ((esmtp, utf8, tls, auth), want) in cases {
            assert_eq!(with_protocol(esmtp, utf8, tls, auth), want);
        }
    }
}
