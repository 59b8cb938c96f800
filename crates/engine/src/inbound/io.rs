//! The session's byte stream: a read buffer the framer looks into, a write buffer of replies
//! flushed only when the client is waiting for them (so pipelined commands get their replies in
//! one write), and the STARTTLS switch that throws away anything the client sent in plaintext
//! after the STARTTLS command (CVE-2011-0411).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_smtp_proto::Reply;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::SessionSlot;

pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TLS handshake owns the socket.
    Swapping,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Swapping => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Swapping => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Swapping => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Swapping => Poll::Ready(Ok(())),
        }
    }
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
            stream: Stream::Plain(stream),
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
            r = tokio::time::timeout(timeout, self.stream.read(&mut self.rbuf[len..])) => r,
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
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        })
        .await;
        self.wbuf.clear();
        res.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client not reading replies"))?
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
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
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Swapping) else {
            return Err(io::Error::other("TLS already active"));
        };
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let desc = crate::tls::describe(tls.get_ref().1);
        self.stream = Stream::Tls(Box::new(tls));
        Ok(desc)
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown()).await;
    }
}
