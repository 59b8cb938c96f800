//! The session's byte stream: a read buffer the framer looks into, a write buffer of replies
//! flushed only when the client is waiting for them (so pipelined commands get their replies in
//! one write), and the STARTTLS switch that throws away anything the client sent in plaintext
//! after the STARTTLS command (CVE-2011-0411).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use palisade_smtp_proto::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use super::SessionSlot;

/// Plain until STARTTLS, then TLS; `None` only while the TLS handshake owns the socket.
type Stream = Option<Either<TcpStream, Box<TlsStream<TcpStream>>>>;

fn not_connected() -> io::Error {
    io::ErrorKind::NotConnected.into()
}

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    Timeout,
    Closed,
    Io(io::Error),
    /// The connection limits gave this session's slot to another client.
    Evicted,
}

pub(crate) struct SmtpIo {
    stream: Stream,
    slot: Arc<SessionSlot>,
    rbuf: Vec<u8>,
    start: usize,
    wbuf: Vec<u8>,
}

const READ_CHUNK: usize = 64 * 1024;
/// The longest a reply may take to be written to the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

impl SmtpIo {
    pub fn new(stream: TcpStream, slot: Arc<SessionSlot>) -> Self {
        SmtpIo {
            stream: Some(Either::Left(stream)),
            slot,
            rbuf: Vec::with_capacity(4096),
            start: 0,
            wbuf: Vec::with_capacity(1024),
        }
    }

    /// Unconsumed input.
    pub fn pending(&self) -> &[u8] {
        &self.rbuf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.rbuf.len() {
            self.rbuf.clear();
            self.start = 0;
        }
    }

    /// Reads more input. The buffer only grows by what one line or DATA chunk needs: the
    /// framer refuses over-long lines and DATA consumes what it reads. Ends early when the
    /// session is evicted (see `ConnLimits`).
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        if self.slot.is_evicted() {
            return Err(ReadError::Evicted);
        }
        if self.start > 0 {
            self.rbuf.drain(..self.start);
            self.start = 0;
        }
        let len = self.rbuf.len();
        self.rbuf.resize(len + READ_CHUNK, 0);
        let slot = &self.slot;
        let res = tokio::select! {
            r = tokio::time::timeout(timeout, async {
                match self.stream.as_mut() {
                    Some(s) => s.read(&mut self.rbuf[len..]).await,
                    None => Err(not_connected()),
                }
            }) => r,
            _ = slot.evicted() => {
                self.rbuf.truncate(len);
                return Err(ReadError::Evicted);
            }
        };
        let n = match res {
            Err(_) => {
                self.rbuf.truncate(len);
                return Err(ReadError::Timeout);
            }
            Ok(Err(e)) => {
                self.rbuf.truncate(len);
                return Err(ReadError::Io(e));
            }
            Ok(Ok(n)) => n,
        };
        self.rbuf.truncate(len + n);
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.slot.touch();
        Ok(n)
    }

    pub fn reply(&mut self, r: &Reply) {
        self.wbuf.extend_from_slice(&r.to_bytes());
    }

    /// Sends the buffered replies. A client that stops reading cannot hold the session
    /// (and its slot) forever: the write gives up after [`WRITE_TIMEOUT`].
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let res = tokio::time::timeout(WRITE_TIMEOUT, async {
            let s = self.stream.as_mut().ok_or_else(not_connected)?;
            s.write_all(&self.wbuf).await?;
            s.flush().await
        })
        .await;
        self.wbuf.clear();
        res.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client not reading replies"))?
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Either::Right(_)))
    }

    /// Switches to TLS after the 220 went out. Whatever the client pipelined after STARTTLS
    /// in plaintext is discarded, never interpreted as if it had come over TLS.
    pub async fn start_tls(
        &mut self,
        acceptor: &TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<String> {
        self.flush().await?;
        self.rbuf.clear();
        self.start = 0;
        let tcp = match self.stream.take() {
            Some(Either::Left(tcp)) => tcp,
            other => {
                self.stream = other;
                return Err(io::Error::other("TLS already active"));
            }
        };
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let desc = crate::tls::describe(tls.get_ref().1);
        self.stream = Some(Either::Right(Box::new(tls)));
        Ok(desc)
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        if let Some(s) = self.stream.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await;
        }
    }
}
