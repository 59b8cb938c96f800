//! One SMTP session: the command loop and every command except DATA (see `data.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use palisade_smtp_proto::{
    Command, CommandError, CommandFramer, Frame, MAX_COMMAND_LINE, MailParams, Reply, ReversePath,
};
use palisade_spool::{Batch, Origin, Rejection};
use palisade_store::Config;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::SessionSlot;
use super::io::{ReadError, SmtpIo};
use super::rcpt;
use crate::listeners::ListenerRole;
use crate::state::{Counters, Shared};

/// After this many bad commands in one session the client is disconnected.
const MAX_ERRORS: u32 = 10;
/// How often a waiting read looks again at its deadline (stress mode can shorten it).
pub(super) const RECHECK: Duration = Duration::from_secs(1);
/// The junk command limit in stress mode (see `Smtp::stress_threshold_percent`).
const STRESS_JUNK_LIMIT: u32 = 10;
/// RFC 3461 4.1: the DSN parameters (which we offer) may make MAIL and RCPT lines up to 500
/// octets longer than RFC 5321's 512. Every other command keeps the 512 limit.
const MAX_MAIL_RCPT_LINE: usize = MAX_COMMAND_LINE + 500;

pub(super) enum Flow {
    Continue,
    Close,
}

pub(super) struct Transaction {
    pub id: String,
    pub from: ReversePath,
    pub params: MailParams,
    pub rcpts: Vec<rcpt::Accepted>,
    /// Recipients refused with their reply, for tracking when nothing is accepted.
    pub refused: Vec<(String, String)>,
}

pub(crate) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: Arc<Config>,
    pub(super) role: ListenerRole,
    pub(super) io: SmtpIo,
    pub(super) peer: SocketAddr,
    pub(super) helo: Option<String>,
    pub(super) esmtp: bool,
    pub(super) tls: Option<String>,
    pub(super) trusted: bool,
    /// The submission account that authenticated with SMTP AUTH, if any.
    pub(super) auth_user: Option<String>,
    /// The client's forward-confirmed reverse DNS name, looked up in the background from the
    /// connection on; whatever is known when a message's checks start is what they see.
    /// Set when the reverse DNS lookup finished: the forward-confirmed name, or `None`.
    pub(super) client_name: Arc<std::sync::OnceLock<Option<String>>>,
    pub(super) tx: Option<Transaction>,
    framer: CommandFramer,
    errors: u32,
    /// Junk commands since the last accepted message (see `Smtp::junk_command_limit`).
    junk: u32,
    /// When the session began (for `max_session_secs`).
    pub(super) started: Instant,
    /// When we began waiting for the current command line.
    line_started: Instant,
    stop: watch::Receiver<bool>,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        role: ListenerRole,
        stream: TcpStream,
        peer: SocketAddr,
        _local: Option<SocketAddr>,
        slot: Arc<SessionSlot>,
    ) -> Self {
        let cfg = shared.config();
        let trusted = cfg.is_trusted(peer.ip());
        let stop = shared.shutdown_signal();
        let client_name = Arc::new(std::sync::OnceLock::new());
        if let Some(resolver) = shared.runner().resolver() {
            let slot = client_name.clone();
            let ip = peer.ip();
            tokio::spawn(async move {
                // Only an answer counts: a lookup that failed leaves the name unknown.
                if let Some(name) = crate::outbound::route::verified_name(&resolver, ip).await {
                    let _ = slot.set(name);
                }
            });
        }
        Session {
            client_name,
            shared,
            cfg,
            role,
            io: SmtpIo::new(stream, slot),
            peer,
            helo: None,
            esmtp: false,
            tls: None,
            trusted,
            auth_user: None,
            tx: None,
            framer: CommandFramer::new(MAX_MAIL_RCPT_LINE),
            errors: 0,
            junk: 0,
            started: Instant::now(),
            line_started: Instant::now(),
            stop,
        }
    }

    /// Clients in trusted networks and authenticated submission accounts may send anywhere.
    pub(super) fn may_relay(&self) -> bool {
        self.trusted || self.auth_user.is_some()
    }

    pub(super) fn hostname(&self) -> &str {
        &self.cfg.system.hostname
    }

    /// Whether the server is near its connection limit: every timeout becomes the short one.
    pub(super) fn stressed(&self) -> bool {
        let open = self.shared.counters.sessions.load(Ordering::Relaxed);
        open * 100
            >= u64::from(self.cfg.smtp.max_connections)
                * u64::from(self.cfg.smtp.stress_threshold_percent)
    }

    /// The time a client has for one command line (or a TLS handshake).
    pub(super) fn command_timeout(&self) -> Duration {
        let secs = if self.stressed() {
            self.cfg
                .smtp
                .stress_timeout_secs
                .min(self.cfg.smtp.command_timeout_secs)
        } else {
            self.cfg.smtp.command_timeout_secs
        };
        Duration::from_secs(secs)
    }

    /// When the session must end, whatever it is doing.
    pub(super) fn session_deadline(&self) -> Instant {
        self.started + Duration::from_secs(self.cfg.smtp.max_session_secs)
    }

    /// How long the next read for a command line may wait: what is left of the line's time
    /// and of the session's. Zero means the time is up.
    fn command_wait(&self) -> Duration {
        let deadline = (self.line_started + self.command_timeout()).min(self.session_deadline());
        deadline.saturating_duration_since(Instant::now())
    }

    /// A message was accepted: the junk allowance starts again.
    pub(super) fn message_accepted(&mut self) {
        self.junk = 0;
    }

    /// Counts a command that moves no mail; too many close the session.
    fn junk_command(&mut self) -> Option<Flow> {
        self.junk += 1;
        let limit = if self.stressed() {
            STRESS_JUNK_LIMIT.min(self.cfg.smtp.junk_command_limit)
        } else {
            self.cfg.smtp.junk_command_limit
        };
        if self.junk > limit {
            tracing::info!(event = "smtp.junk_limit", peer = %self.peer, commands = self.junk);
            self.io.reply(&Reply::new(
                421,
                "4.7.0",
                format!(
                    "{} Too many commands without mail, closing",
                    self.hostname()
                ),
            ));
            return Some(Flow::Close);
        }
        None
    }

    /// The reply to a session whose slot went to another client.
    pub(super) fn evicted_reply(&self) -> Reply {
        tracing::info!(event = "smtp.evicted_session", peer = %self.peer);
        Reply::new(
            421,
            "4.7.0",
            format!(
                "{} Too many connections from your address, closing",
                self.hostname()
            ),
        )
    }

    pub(super) fn timeout_reply(&self) -> Reply {
        tracing::info!(event = "smtp.timeout", peer = %self.peer, stressed = self.stressed(),
            session_secs = self.started.elapsed().as_secs());
        Reply::new(
            421,
            "4.4.2",
            format!("{} Timeout, closing connection", self.hostname()),
        )
    }

    pub(super) fn origin(&self) -> Origin {
        Origin {
            listener: self.role.name().into(),
            client_ip: self.peer.ip().to_string(),
            client_helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
            auth_user: self.auth_user.clone(),
        }
    }

    pub async fn run(&mut self) {
        tracing::debug!(event = "smtp.connect", peer = %self.peer, role = self.role.name());
        if self.shared.is_shutting_down() {
            self.io.reply(&Reply::new(
                421,
                "4.3.2",
                format!("{} Service shutting down", self.hostname()),
            ));
            self.io.shutdown().await;
            return;
        }
        let greeting = Reply::new(220, "", format!("{} ESMTP Palisade", self.hostname()));
        self.io.reply(&greeting);
        while let Flow::Continue = self.step().await {}
        self.end_transaction().await;
        self.io.shutdown().await;
        tracing::debug!(event = "smtp.disconnect", peer = %self.peer);
    }

    /// Frames and handles one command, reading more input when needed.
    pub(super) fn framer_next(&mut self) -> Frame {
        self.framer.next(self.io.pending())
    }

    async fn step(&mut self) -> Flow {
        match self.framer.next(self.io.pending()) {
            Frame::Line { consumed } => {
                let line = self.io.pending()[..consumed - 2].to_vec();
                self.io.consume(consumed);
                let verb = line.get(..4).unwrap_or(&line);
                let long_ok = [&b"MAIL"[..], b"RCPT", b"AUTH"]
                    .iter()
                    .any(|v| verb.eq_ignore_ascii_case(v));
                if consumed > MAX_COMMAND_LINE && !long_ok {
                    self.io.reply(&Reply::new(500, "5.5.2", "Line too long"));
                    self.line_started = Instant::now();
                    return self.count_error();
                }
                let flow = self.command(&line).await;
                self.line_started = Instant::now();
                flow
            }
            Frame::TooLong { consumed, complete } => {
                self.io.consume(consumed);
                if complete {
                    self.io.reply(&Reply::new(500, "5.5.2", "Line too long"));
                    return self.count_error();
                }
                self.read_more().await
            }
            Frame::BareLf { .. } | Frame::BareCr { .. } => {
                tracing::warn!(event = "smtp.bare_newline", peer = %self.peer);
                self.io.reply(&Reply::new(
                    521,
                    "5.5.2",
                    format!(
                        "{} Error: bare <CR> or <LF> received; closing",
                        self.hostname()
                    ),
                ));
                Flow::Close
            }
            Frame::Incomplete => self.read_more().await,
        }
    }

    async fn read_more(&mut self) -> Flow {
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }
        // The wait is re-evaluated every RECHECK: stress mode may shorten it meanwhile.
        let read = loop {
            let timeout = self.command_wait();
            if timeout.is_zero() {
                break Some(Err(ReadError::Timeout));
            }
            let idle = self.tx.is_none();
            let stop = &mut self.stop;
            let r = tokio::select! {
                r = self.io.fill(timeout.min(RECHECK)) => Some(r),
                _ = async { let _ = stop.wait_for(|s| *s).await; }, if idle => None,
            };
            if !matches!(r, Some(Err(ReadError::Timeout))) {
                break r;
            }
        };
        let Some(read) = read else {
            // Draining: an idle session is told to come back later.
            self.io.reply(&Reply::new(
                421,
                "4.3.2",
                format!("{} Service shutting down", self.hostname()),
            ));
            return Flow::Close;
        };
        match read {
            Ok(_) => Flow::Continue,
            Err(ReadError::Timeout) => {
                let r = self.timeout_reply();
                self.io.reply(&r);
                Flow::Close
            }
            Err(ReadError::Evicted) => {
                let r = self.evicted_reply();
                self.io.reply(&r);
                Flow::Close
            }
            Err(ReadError::Closed) => Flow::Close,
            Err(ReadError::Io(e)) => {
                tracing::debug!(event = "smtp.read_failed", peer = %self.peer, error = %e);
                Flow::Close
            }
        }
    }

    fn count_error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.io.reply(&Reply::new(
                421,
                "4.7.0",
                format!("{} Too many errors, closing", self.hostname()),
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    pub(super) fn reject(&mut self, r: Reply) -> Flow {
        let bad = r.code >= 500;
        self.io.reply(&r);
        if bad {
            self.count_error()
        } else {
            Flow::Continue
        }
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let smtputf8 = self.tx.as_ref().is_some_and(|t| t.params.smtputf8);
        let cmd = match Command::parse(line, smtputf8) {
            Ok(c) => c,
            Err(e) => {
                let is_mail = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"MAIL");
                let reply = match &e {
                    CommandError::BadAddress(a) if is_source_route(a) => relay_denied(),
                    _ => e.reply(is_mail),
                };
                return self.reject(reply);
            }
        };
        if matches!(
            cmd,
            Command::Ehlo(_)
                | Command::Helo(_)
                | Command::Rset
                | Command::Noop
                | Command::Vrfy(_)
                | Command::Expn(_)
                | Command::Help
        ) && let Some(flow) = self.junk_command()
        {
            return flow;
        }
        match cmd {
            Command::Ehlo(name) => self.hello(name, true),
            Command::Helo(name) => self.hello(name, false),
            Command::Mail { from, params } => self.mail(from, params).await,
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => self.data().await,
            Command::Rset => {
                self.end_transaction().await;
                self.io.reply(&Reply::new(250, "2.0.0", "Ok"));
                Flow::Continue
            }
            Command::Noop => {
                self.io.reply(&Reply::new(250, "2.0.0", "Ok"));
                Flow::Continue
            }
            Command::Quit => {
                self.io.reply(&Reply::new(221, "2.0.0", "Bye"));
                Flow::Close
            }
            Command::StartTls => self.starttls().await,
            Command::Vrfy(_) => {
                self.io.reply(&Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message",
                ));
                Flow::Continue
            }
            Command::Expn(_) => self.reject(Reply::new(502, "5.5.1", "EXPN not available")),
            Command::Help => {
                self.io.reply(&Reply::new(214, "2.0.0", "See RFC 5321"));
                Flow::Continue
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::Bdat => {
                self.reject(Reply::new(502, "5.5.1", "CHUNKING not offered; use DATA"))
            }
        }
    }

    fn hello(&mut self, name: String, esmtp: bool) -> Flow {
        // A new greeting resets the transaction (RFC 5321 4.1.4); nothing was promised yet.
        self.tx = None;
        self.esmtp = esmtp;
        let host = self.hostname().to_string();
        self.helo = Some(name);
        if !esmtp {
            self.io.reply(&Reply::new(250, "", host));
            return Flow::Continue;
        }
        let mut lines = vec![
            format!(
                "{host} Hello {} [{}]",
                self.helo.as_deref().unwrap_or(""),
                self.peer.ip()
            ),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.smtp.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "DSN".into(),
        ];
        if !self.io.is_tls() && self.shared.tls().is_some() {
            lines.push("STARTTLS".into());
        }
        // Authentication only where it is used (submission) and only under TLS.
        if self.role == ListenerRole::Submission && self.io.is_tls() && self.auth_user.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        self.io.reply(&Reply::multi(250, lines));
        Flow::Continue
    }

    async fn starttls(&mut self) -> Flow {
        if self.io.is_tls() {
            return self.reject(Reply::new(503, "5.5.1", "TLS already active"));
        }
        let Some(acceptor) = self.shared.tls() else {
            return self.reject(Reply::new(502, "5.5.1", "STARTTLS not available"));
        };
        self.io
            .reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        match self.io.start_tls(&acceptor, self.command_timeout()).await {
            Ok(desc) => {
                tracing::debug!(event = "smtp.tls", peer = %self.peer, tls = %desc);
                // RFC 3207 4.2: forget everything learned before TLS.
                self.tls = Some(desc);
                self.helo = None;
                self.esmtp = false;
                self.tx = None;
                Flow::Continue
            }
            Err(e) => {
                tracing::info!(event = "smtp.tls_failed", peer = %self.peer, error = %e);
                Flow::Close
            }
        }
    }

    async fn mail(&mut self, from: ReversePath, params: MailParams) -> Flow {
        if self.helo.is_none() {
            return self.reject(Reply::new(503, "5.5.1", "Send EHLO first"));
        }
        if self.tx.is_some() {
            return self.reject(Reply::new(503, "5.5.1", "Nested MAIL command"));
        }
        if self.shared.is_shutting_down() {
            self.io.reply(&Reply::new(
                421,
                "4.3.2",
                format!("{} Service shutting down", self.hostname()),
            ));
            return Flow::Close;
        }
        if self.role == ListenerRole::Submission && !self.may_relay() {
            return self.reject(Reply::new(530, "5.7.0", "Authentication required"));
        }
        let max = self.cfg.smtp.max_message_size;
        if let Some(size) = params.size.filter(|s| *s > max) {
            return self.reject(Reply::new(
                552,
                "5.3.4",
                format!("Message size {size} exceeds the limit of {max} bytes"),
            ));
        }
        let reserve = self.cfg.smtp.min_free_disk_mb * 1024 * 1024 + params.size.unwrap_or(0);
        match self.shared.spool.free_space() {
            Ok(free) if free < reserve => {
                tracing::error!(
                    event = "smtp.disk_low",
                    free,
                    reserve,
                    "refusing mail: spool disk nearly full"
                );
                self.io.reply(&Reply::new(
                    452,
                    "4.3.1",
                    "Insufficient system storage, try again later",
                ));
                return Flow::Continue;
            }
            Err(e) => tracing::warn!(event = "smtp.statvfs_failed", error = %e),
            Ok(_) => {}
        }
        self.tx = Some(Transaction {
            id: palisade_spool::Spool::new_id(),
            from,
            params,
            rcpts: Vec::new(),
            refused: Vec::new(),
        });
        self.io.reply(&Reply::new(250, "2.1.0", "Ok"));
        Flow::Continue
    }

    fn rcpt(
        &mut self,
        to: palisade_smtp_proto::ForwardPath,
        params: palisade_smtp_proto::RcptParams,
    ) -> Flow {
        let may_relay = self.may_relay();
        let Some(tx) = self.tx.as_mut() else {
            return self.reject(Reply::new(503, "5.5.1", "Need MAIL command first"));
        };
        if tx.rcpts.len() >= self.cfg.smtp.max_recipients as usize {
            self.io
                .reply(&Reply::new(452, "4.5.3", "Too many recipients"));
            return Flow::Continue;
        }
        match rcpt::check(&self.cfg, may_relay, &to, &params) {
            Ok(accepted) => {
                tx.rcpts.push(accepted);
                self.io.reply(&Reply::new(250, "2.1.5", "Ok"));
                Flow::Continue
            }
            Err(reply) => {
                tracing::info!(event = "smtp.rcpt_refused", peer = %self.peer, rcpt = %to_string(&to), reply = %reply);
                tx.refused.push((to_string(&to), reply.to_string()));
                self.reject(reply)
            }
        }
    }

    /// Ends the transaction in progress without a message: tracked if it refused anything.
    pub(super) async fn end_transaction(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        if tx.refused.is_empty() {
            return;
        }
        self.record_rejection(tx, None).await;
    }

    /// Tracks a transaction that produced no message.
    pub(super) async fn record_rejection(&mut self, tx: Transaction, reply: Option<&Reply>) {
        self.record_rejection_explained(tx, reply, Vec::new(), None, Vec::new())
            .await
    }

    /// Tracks a transaction that produced no message, with the tracking events that explain
    /// why (the filters' decisions) and the filter verdict (JSON), so that what the checks
    /// found (a virus's name, a spam score) is kept for refused mail too.
    pub(super) async fn record_rejection_explained(
        &mut self,
        tx: Transaction,
        reply: Option<&Reply>,
        events: Vec<palisade_spool::Event>,
        verdict: Option<String>,
        incidents: Vec<palisade_store::mail::NewIncident>,
    ) {
        Counters::inc(&self.shared.counters.rejected);
        let mut rcpts: Vec<String> = tx.rcpts.iter().map(|r| r.address.clone()).collect();
        rcpts.extend(tx.refused.iter().map(|(r, _)| r.clone()));
        let reply = match reply {
            Some(r) => r.to_string(),
            None => tx
                .refused
                .last()
                .map(|(_, r)| r.clone())
                .unwrap_or_default(),
        };
        let rejection = Rejection {
            id: tx.id,
            ts: palisade_store::now_unix(),
            origin: self.origin(),
            sender: sender_string(&tx.from),
            rcpts,
            reply,
            verdict,
        };
        if let Err(e) = self
            .shared
            .spool
            .commit(Batch {
                rejected: vec![rejection],
                events,
                incidents,
                ..Default::default()
            })
            .await
        {
            tracing::warn!(event = "smtp.track_failed", error = %e);
        }
    }
}

pub(super) fn sender_string(from: &ReversePath) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.to_string(),
    }
}

fn to_string(to: &palisade_smtp_proto::ForwardPath) -> String {
    match to {
        palisade_smtp_proto::ForwardPath::Postmaster => "postmaster".into(),
        palisade_smtp_proto::ForwardPath::Mailbox(m) => m.to_string(),
    }
}

fn is_source_route(e: &palisade_smtp_proto::AddressError) -> bool {
    matches!(e, palisade_smtp_proto::AddressError::SourceRoute)
}

pub(super) fn relay_denied() -> Reply {
    Reply::new(554, "5.7.1", "Relay access denied")
}
