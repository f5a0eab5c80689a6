//! hyper answers a request whose head it cannot parse by itself, before any service code runs:
//! 400 (a control character in a header, a malformed method, target or version), 414 (a target
//! over 65,534 bytes) or 431 (a head over its read buffer or over 100 headers), each with an
//! empty body, and then closes the connection. It has no hook to shape that answer, so each
//! connection is wrapped: a response head with one of those statuses, no content type and an
//! empty body (which no kassa handler sends: every error of theirs is a problem) is written out
//! as the same status with a problem+json body. Everything else passes through untouched.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
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

/// A TCP listener whose connections answer hyper's own parse errors as problems.
pub(crate) struct ProblemListener(pub TcpListener);

impl axum::serve::Listener for ProblemListener {
    type Io = ProblemIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (inner, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (
            ProblemIo {
                inner,
                replacing: None,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that writes hyper's bare parse-error answers as problems.
pub(crate) struct ProblemIo {
    inner: TcpStream,
    replacing: Option<Replacing>,
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
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProblemIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
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
            _ => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
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
