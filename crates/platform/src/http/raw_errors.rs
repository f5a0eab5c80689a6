//! hyper answers a request whose head it cannot parse by itself, before any service code runs:
//! 400 (a control character in a header, a malformed method, target or version), 414 (a target
//! over 65,534 bytes) or 431 (a head over its read buffer or over 100 headers), each with an
//! empty body, and then closes the connection. It has no hook to shape that answer, so each
//! connection is wrapped: a response head with one of those statuses, no content type and an
//! empty body (which no kassa handler sends: every error of theirs is a problem) is written out
//! as the same status with a problem+json body. Everything else passes through untouched.
//!
//! The same wrapper holds a listener's limits, which hyper (as axum serves it) does not: a
//! connection must send each request's head within the header-read timeout (and an idle
//! keep-alive connection its next one), or it is closed; and a listener holds at most so many
//! connections at once, the next waiting in the kernel's backlog until one closes.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};

/// The address a request's connection came from, as `ConnectInfo<ClientAddr>` (absent for a
/// request that did not come over the network, such as one the gateway hands a service in its
/// own process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ProblemListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, ProblemListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// A TCP listener whose connections answer hyper's own parse errors as problems, send their
/// request heads in time, and are at most so many at once.
pub(crate) struct ProblemListener {
    pub listener: TcpListener,
    pub header_read_timeout: Duration,
    pub connections: Arc<Semaphore>,
}

impl axum::serve::Listener for ProblemListener {
    type Io = ProblemIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Not accepted until a connection closes: the next one waits in the backlog.
        let permit = self
            .connections
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (inner, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (
            ProblemIo {
                inner,
                replacing: None,
                head: Head::new(self.header_read_timeout),
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection that writes hyper's bare parse-error answers as problems, and is closed when a
/// request's head does not arrive in time.
pub(crate) struct ProblemIo {
    inner: TcpStream,
    replacing: Option<Replacing>,
    head: Head,
    _permit: OwnedSemaphorePermit,
}

/// Waiting for a request head: from the connection's start, and again after each response,
/// until the blank line that ends the head has been read.
struct Head {
    timeout: Duration,
    /// When the head awaited is late; one timer a connection, set again for each head.
    deadline: Pin<Box<Sleep>>,
    /// Whether a head is awaited.
    awaited: bool,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: u8,
}

impl Head {
    fn new(timeout: Duration) -> Self {
        Head {
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            awaited: true,
            matched: 0,
        }
    }

    /// Notes bytes read; the head is in once they complete its blank line.
    fn read(&mut self, bytes: &[u8]) {
        if !self.awaited {
            return;
        }
        for &b in bytes {
            self.matched = match (self.matched, b) {
                (0 | 2, b'\r') => self.matched + 1,
                (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                self.awaited = false;
                self.matched = 0;
                return;
            }
        }
    }

    /// A response went out: the next request's head is awaited from now. The deadline is
    /// polled once, so that its passing wakes the connection even if it reads nothing more.
    fn answered(&mut self, cx: &mut Context<'_>) {
        if !self.awaited {
            self.awaited = true;
            self.deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + self.timeout);
            let _ = self.deadline.as_mut().poll(cx);
        }
    }

    /// Whether the head awaited is late (registering the waker when it is not yet).
    fn late(&mut self, cx: &mut Context<'_>) -> bool {
        self.awaited && self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn late_head() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request head did not arrive within the header-read timeout",
    )
}

/// A bare answer being written as a problem: the bytes going out instead, how many went, and
/// how many hyper asked to write (what it is told once the problem is out).
struct Replacing {
    bytes: Vec<u8>,
    written: usize,
    instead_of: usize,
}

/// The problem to send instead of `head`, when `head` is one of hyper's bare parse-error
/// answers.
fn problem_for(head: &[u8]) -> Option<Vec<u8>> {
    if !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let (status, title, code, detail) = match head.get(9..13)? {
        b"400 " => (
            400,
            "Bad Request",
            "malformed_request",
            "The request could not be parsed: a header holds a character HTTP does not allow, or the method, target or version is malformed.",
        ),
        b"414 " => (
            414,
            "URI Too Long",
            "uri_too_long",
            "The request target is longer than the 65,534 bytes accepted.",
        ),
        b"431 " => (
            431,
            "Request Header Fields Too Large",
            "headers_too_large",
            "The request's headers are too large, or more than 100.",
        ),
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let mut lines = text.split("\r\n").skip(1);
    if !lines.clone().any(|l| l == "content-length: 0")
        || lines.any(|l| l.starts_with("content-type:"))
    {
        return None;
    }
    let body = serde_json::json!({
        "type": format!("urn:kassa:problem:{code}"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    })
    .to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl ProblemIo {
    /// Writes the problem in place of `buf` (hyper's bare answer), across as many polls as the
    /// socket needs; hyper is told the whole of `buf` went once the problem has.
    fn poll_replace(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(r) = self.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while r.written < r.bytes.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &r.bytes[r.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => r.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let told = r.instead_of;
        self.replacing = None;
        Poll::Ready(Ok(told))
    }
}

impl AsyncRead for ProblemIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // A head sent a byte at a time is as late as one never sent.
                if this.head.late(cx) {
                    return Poll::Ready(Err(late_head()));
                }
                this.head.read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.head.late(cx) => Poll::Ready(Err(late_head())),
            other => other,
        }
    }
}

impl AsyncWrite for ProblemIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.head.answered(cx);
        if this.replacing.is_none() {
            match problem_for(buf) {
                Some(bytes) => {
                    this.replacing = Some(Replacing {
                        bytes,
                        written: 0,
                        instead_of: buf.len(),
                    })
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        this.poll_replace(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let (first, more) = (parts.next(), parts.next().is_some());
        match first {
            Some(first) if this.replacing.is_some() || (!more && problem_for(first).is_some()) => {
                Pin::new(this).poll_write(cx, first)
            }
            _ => {
                this.head.answered(cx);
                Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A problem still going out goes out first.
        if this.replacing.is_some() {
            ready!(this.poll_replace(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_answers_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        let problem = String::from_utf8(problem_for(bare).unwrap()).unwrap();
        assert!(
            problem.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{problem}"
        );
        assert!(problem.contains("content-type: application/problem+json"));
        assert!(
            problem.contains(r#""code":"malformed_request""#),
            "{problem}"
        );
        for kept in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert!(problem_for(kept).is_none(), "{}", String::from_utf8_lossy(kept));
        }
    }
}
