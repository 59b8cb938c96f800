//! The SMTP client that hands queued mail to the next hop.
//!
//! One [`ClientConn`] is one connection: greeting, EHLO (HELO if refused), STARTTLS per the
//! TLS policy, then any number of transactions (the queue runner reuses a connection for every
//! message waiting for the same destination). Transactions are pipelined when the server
//! offers PIPELINING (RFC 2920). Every read has a timeout; a connection that misbehaves is
//! dropped, never reused.

use std::path::Path;
use std::time::Duration;

use palisade_smtp_proto::{
    Capabilities, DotStuffer, Notify, Reply, Ret, parse_reply, xtext_encode,
};
use palisade_store::config::OutboundTls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::route::Target;
use crate::tls::ClientTls;

/// Why a connection could not be used; `tls` when the destination's TLS policy failed (no
/// STARTTLS, a refused or failed handshake, a certificate that does not verify).
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    pub message: String,
    pub tls: bool,
}

/// Plain until STARTTLS, then TLS.
type ClientStream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The envelope of one transaction.
pub(crate) struct Envelope<'a> {
    pub sender: &'a str,
    pub size: u64,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub envid: Option<&'a str>,
    pub ret: Option<Ret>,
}

pub(crate) struct RcptSpec<'a> {
    pub address: &'a str,
    pub notify: Option<Notify>,
    pub orcpt: Option<&'a str>,
}

pub(crate) struct ClientConn {
    stream: ClientStream,
    rbuf: Vec<u8>,
    caps: Capabilities,
    pub remote: String,
    pub tls: Option<String>,
    timeout: Duration,
    /// Set when the connection can no longer be trusted to be in sync.
    broken: bool,
}

/// Limit on one reply's size; the parser refuses longer lines itself.
const MAX_REPLY_BUF: usize = 64 * 1024;

impl ClientConn {
    /// Connects, reads the greeting, says EHLO and negotiates TLS per `tls`. A failure
    /// says whether the destination's TLS policy was what failed.
    pub async fn connect(
        target: &Target,
        helo: &str,
        tls: &ClientTls,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<ClientConn, ConnectFailure> {
        let plain = |message: String| ConnectFailure {
            message,
            tls: false,
        };
        let enforced = matches!(tls.mode, OutboundTls::Required | OutboundTls::Verified);
        // A TLS failure is the policy's only when the policy demands TLS (opportunistic TLS
        // that fails is an ordinary connection failure: the next host is tried).
        let policy = |message: String| ConnectFailure {
            message,
            tls: enforced,
        };
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(target.addr))
            .await
            .map_err(|_| plain(format!("{target}: connection timed out")))?
            .map_err(|e| plain(format!("{target}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let mut c = ClientConn {
            stream: Either::Left(tcp),
            rbuf: Vec::new(),
            caps: Capabilities::default(),
            remote: target.to_string(),
            tls: None,
            timeout,
            broken: false,
        };
        let greeting = c.read_reply().await.map_err(plain)?;
        if greeting.code != 220 {
            return Err(plain(format!("{target} greeted with: {greeting}")));
        }
        c.hello(helo).await.map_err(plain)?;
        if tls.mode != OutboundTls::None && c.caps.starttls {
            c.send(b"STARTTLS\r\n").await.map_err(plain)?;
            let r = c.read_reply().await.map_err(plain)?;
            if r.code != 220 {
                if enforced {
                    return Err(policy(format!("{target}: STARTTLS refused: {r}")));
                }
                // Opportunistic: carry on in plaintext on this connection.
                return Ok(c);
            }
            let Either::Left(tcp) = c.stream else {
                return Err(plain("TLS already active".into()));
            };
            let name = ServerName::try_from(target.name.clone())
                .unwrap_or_else(|_| ServerName::IpAddress(target.addr.ip().into()));
            let tls_stream = tokio::time::timeout(timeout, tls.connector.connect(name, tcp))
                .await
                .map_err(|_| policy(format!("{target}: TLS handshake timed out")))?
                .map_err(|e| policy(format!("{target}: TLS handshake failed: {e}")))?;
            let session = tls_stream.get_ref().1;
            let how = if tls.mode == OutboundTls::Verified {
                format!(
                    "certificate verified for {}",
                    crate::tls::verified_name(session, &target.name, &tls.names)
                )
            } else {
                "certificate not verified".to_string()
            };
            c.tls = Some(format!("{}, {how}", crate::tls::describe(session)));
            c.stream = Either::Right(Box::new(tls_stream));
            c.rbuf.clear();
            c.hello(helo).await.map_err(plain)?;
        } else if enforced {
            return Err(policy(format!(
                "{target}: STARTTLS is required ({}) but not offered",
                tls.source
            )));
        }
        Ok(c)
    }

    async fn hello(&mut self, helo: &str) -> Result<(), String> {
        self.send(format!("EHLO {helo}\r\n").as_bytes()).await?;
        let r = self.read_reply().await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&r);
            return Ok(());
        }
        self.send(format!("HELO {helo}\r\n").as_bytes()).await?;
        let r = self.read_reply().await?;
        if r.code != 250 {
            return Err(format!("{}: HELO refused: {r}", self.remote));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let res = tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.broken = true;
                Err(format!("{}: write failed: {e}", self.remote))
            }
            Err(_) => {
                self.broken = true;
                Err(format!("{}: write timed out", self.remote))
            }
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            match parse_reply(&self.rbuf) {
                Ok(Some((reply, consumed))) => {
                    self.rbuf.drain(..consumed);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(format!("{}: malformed reply: {e}", self.remote));
                }
            }
            if self.rbuf.len() > MAX_REPLY_BUF {
                self.broken = true;
                return Err(format!("{}: reply too long", self.remote));
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout(self.timeout, self.stream.read(&mut chunk)).await {
                Err(_) => {
                    self.broken = true;
                    return Err(format!("{}: timed out waiting for a reply", self.remote));
                }
                Ok(Err(e)) => {
                    self.broken = true;
                    return Err(format!("{}: read failed: {e}", self.remote));
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                self.broken = true;
                return Err(format!("{}: connection closed", self.remote));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Runs one transaction. `Ok` holds the final reply for each recipient, in order: the
    /// MAIL reply if MAIL failed, the RCPT reply if the recipient was refused, else the reply
    /// to the end of data. `Err` means the connection failed and nothing can be concluded
    /// about recipients whose final reply was not seen (they must be retried).
    pub async fn transaction(
        &mut self,
        env: &Envelope<'_>,
        rcpts: &[RcptSpec<'_>],
        content: &Path,
    ) -> Result<Vec<Reply>, String> {
        if env.smtputf8 && !self.caps.smtputf8 {
            let r = Reply::new(
                553,
                "5.6.7",
                format!("{} does not support SMTPUTF8", self.remote),
            );
            return Ok(vec![r; rcpts.len()]);
        }
        let mut mail = format!("MAIL FROM:<{}>", env.sender);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", env.size));
        }
        if env.eight_bit && self.caps.eightbitmime {
            mail.push_str(" BODY=8BITMIME");
        }
        if env.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if let Some(ret) = env.ret {
                mail.push_str(&format!(" RET={}", ret.as_param()));
            }
            if let Some(envid) = env.envid {
                mail.push_str(&format!(" ENVID={}", xtext_encode(envid)));
            }
        }
        mail.push_str("\r\n");
        let rcpt_lines: Vec<String> = rcpts
            .iter()
            .map(|r| {
                let mut l = format!("RCPT TO:<{}>", r.address);
                if self.caps.dsn {
                    if let Some(n) = r.notify {
                        l.push_str(&format!(" NOTIFY={}", n.to_param()));
                    }
                    if let Some(o) = r.orcpt {
                        let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o));
                        l.push_str(&format!(" ORCPT={kind};{}", xtext_encode(addr)));
                    }
                }
                l.push_str("\r\n");
                l
            })
            .collect();

        let mut rcpt_replies: Vec<Reply> = Vec::with_capacity(rcpts.len());
        let data_reply;
        if self.caps.pipelining {
            let mut batch = mail.into_bytes();
            for l in &rcpt_lines {
                batch.extend_from_slice(l.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.send(&batch).await?;
            let mail_reply = self.read_reply().await?;
            for _ in rcpts {
                rcpt_replies.push(self.read_reply().await?);
            }
            data_reply = self.read_reply().await?;
            if !mail_reply.is_positive() {
                self.abort_data(&data_reply).await?;
                return Ok(vec![mail_reply; rcpts.len()]);
            }
        } else {
            self.send(mail.as_bytes()).await?;
            let mail_reply = self.read_reply().await?;
            if !mail_reply.is_positive() {
                self.rset().await?;
                return Ok(vec![mail_reply; rcpts.len()]);
            }
            for l in &rcpt_lines {
                self.send(l.as_bytes()).await?;
                rcpt_replies.push(self.read_reply().await?);
            }
            if !rcpt_replies.iter().any(|r| r.is_positive()) {
                self.rset().await?;
                return Ok(rcpt_replies);
            }
            self.send(b"DATA\r\n").await?;
            data_reply = self.read_reply().await?;
        }

        let accepted = rcpt_replies.iter().any(|r| r.is_positive());
        if data_reply.code != 354 {
            if accepted {
                // Every accepted recipient gets the DATA refusal as its outcome.
                self.rset().await?;
                return Ok(rcpt_replies
                    .into_iter()
                    .map(|r| {
                        if r.is_positive() {
                            data_reply.clone()
                        } else {
                            r
                        }
                    })
                    .collect());
            }
            self.rset().await?;
            return Ok(rcpt_replies);
        }
        if !accepted {
            // A server that says 354 with no recipient: end the empty transaction.
            self.abort_data(&data_reply).await?;
            return Ok(rcpt_replies);
        }
        self.send_content(content).await?;
        let final_reply = self.read_reply().await?;
        Ok(rcpt_replies
            .into_iter()
            .map(|r| {
                if r.is_positive() {
                    final_reply.clone()
                } else {
                    r
                }
            })
            .collect())
    }

    /// After a pipelined DATA that got 354 although the transaction failed: send an empty
    /// body so the server ends the transaction, then reset.
    async fn abort_data(&mut self, data_reply: &Reply) -> Result<(), String> {
        if data_reply.code == 354 {
            self.send(b".\r\n").await?;
            let _ = self.read_reply().await?;
        }
        self.rset().await
    }

    async fn send_content(&mut self, path: &Path) -> Result<(), String> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("spool file {}: {e}", path.display()))?;
        let mut stuffer = DotStuffer::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut out = Vec::with_capacity(72 * 1024);
        loop {
            let n = file.read(&mut chunk).await.map_err(|e| {
                // The server is mid-DATA; the connection cannot be reused.
                self.broken = true;
                format!("spool file {}: {e}", path.display())
            })?;
            if n == 0 {
                break;
            }
            out.clear();
            stuffer.feed(&chunk[..n], &mut out);
            self.send(&out).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.send(&out).await
    }

    pub async fn rset(&mut self) -> Result<(), String> {
        self.send(b"RSET\r\n").await?;
        let r = self.read_reply().await?;
        if r.code != 250 {
            self.broken = true;
        }
        Ok(())
    }

    pub async fn quit(mut self) {
        if self.broken {
            return;
        }
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.read_reply()).await;
        }
        let _ = self.stream.shutdown().await;
    }
}
