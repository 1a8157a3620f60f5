//! Lets gRPC C-core clients (Python `grpcio`, C++, Ruby, PHP...) call the runner's Unix
//! socket without channel options.
//!
//! For a `unix:/run/x/runner.sock` target C-core (since grpc/grpc#33571, release 1.57)
//! sends the percent-encoded socket path as `:authority`: `run%2Fx%2Frunner.sock`
//! (grpc-java sends the raw path). h2's server parses `:authority` into
//! `http::uri::Authority`, which refuses a `%` outside userinfo (and any `/`), and resets
//! every such stream with PROTOCOL_ERROR; the pull request that would relax it
//! (hyperium/h2#487) is still open, and h2 0.4.20, the latest release, has no setting or
//! hook before that parse. The runner never looks at the authority, so this layer sits
//! between the socket and tonic and replaces an authority h2 would refuse with
//! `localhost`, what such a client sends when given `grpc.default_authority`.
//!
//! That needs the HTTP/2 framing and HPACK state of the client-to-server direction: see
//! [`rewrite`] for how and why every header block is re-encoded. The server-to-client
//! direction passes through untouched. Malformed input ends the connection with an error
//! log, as h2 would end it; memory is bounded per connection by the limits in [`rewrite`].
//!
//! Alternatives not taken: patching or vendoring h2 (a fork to carry), a name for the
//! socket without `/` (the supervisor chooses absolute paths), and a same-length in-place
//! edit of the authority literal (still needs the whole HPACK state, and breaks on
//! Huffman-coded values).

pub mod rewrite;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

pub use rewrite::{RewriteError, Rewriter};

/// How many bytes one read from the socket takes at most.
const READ_CHUNK: usize = 16 * 1024;

/// A server-side connection whose incoming HTTP/2 bytes go through a [`Rewriter`]:
/// what tonic serves instead of the raw `UnixStream`.
pub struct AuthorityFixStream<S> {
    inner: S,
    rewriter: Rewriter,
    /// Bytes just read from `inner`.
    chunk: Box<[u8]>,
    /// Rewritten bytes not yet handed to the reader, from `out_start` on.
    out: Vec<u8>,
    out_start: usize,
    /// Set once the client's bytes were refused: every later read fails too.
    failed: bool,
}

impl<S> AuthorityFixStream<S> {
    /// Wraps a freshly accepted connection (nothing read from it yet).
    pub fn new(inner: S) -> Self {
        AuthorityFixStream {
            inner,
            rewriter: Rewriter::new(),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
            out_start: 0,
            failed: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFixStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_start < this.out.len() {
                let take = buf.remaining().min(this.out.len() - this.out_start);
                buf.put_slice(&this.out[this.out_start..this.out_start + take]);
                this.out_start += take;
                if this.out_start == this.out.len() {
                    this.out.clear();
                    this.out_start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(refused("an earlier frame was refused")));
            }
            let mut read = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream; a frame cut short is h2's to report.
                return Poll::Ready(Ok(()));
            }
            if let Err(error) = this.rewriter.feed(read.filled(), &mut this.out) {
                tracing::error!(%error, "closing a gRPC connection: malformed HTTP/2 from the client");
                this.failed = true;
                this.out.clear();
                this.out_start = 0;
                return Poll::Ready(Err(refused(&error.to_string())));
            }
        }
    }
}

fn refused(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 input refused: {why}"),
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFixStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// tonic asks every served connection for its peer information; it is the socket's.
impl<S: Connected> Connected for AuthorityFixStream<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
