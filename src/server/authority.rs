//! Accepting any `:authority` on the unix socket, and keeping each connection's request side
//! bounded.
//!
//! The HTTP/2 layer beneath tonic (`h2`) resets every stream whose `:authority` is not a
//! valid URI authority. The kubelet and the sidecars (grpc-go) send `localhost`, but gRPC
//! C-core (Python's grpcio and others) sends the socket path, percent-encoded, and grpc-java
//! sends it raw (grpc/grpc#38142, hyperium/h2#487): operators' tools and tests in those
//! languages could not talk to the driver. On a unix socket the authority names nothing, so
//! [`AnyAuthority`] wraps each accepted connection and, on the bytes read from the client,
//! replaces an invalid `:authority` with `localhost` before `h2` sees it.
//!
//! Header blocks are HPACK-compressed with per-connection state. The rewriter gathers each
//! request header block (at most one HEADERS frame and [`MAX_CONTINUATIONS`] CONTINUATION
//! frames, as `h2` allows) and hands it to [`super::hpack::Patcher`], which copies it byte for
//! byte except a bad `:authority`, counts the decoded header list against the limit the server
//! advertises, and never expands the block. Every other frame, and all bytes the server
//! writes, pass through unchanged; a frame between a HEADERS frame and the end of its block is
//! a connection error (RFC 9113 §6.10), as is anything the patcher refuses.
//!
//! The wrapper also ends a connection that takes longer than its handshake time to send the
//! connection preface or to finish a header block, and one that [`super::connections`]
//! evicts to make room for a new client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant, Sleep};

use super::connections::Connection;
use super::hpack::{HpackError, Patcher};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest frame payload the server accepts (HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`,
/// which the server keeps).
pub const MAX_FRAME: usize = 16_384;
/// CONTINUATION frames a header block may have besides its last one (what `h2` allows for a
/// 16 KiB header list and 16 KiB frames).
pub const MAX_CONTINUATIONS: usize = 5;
/// How many bytes one read takes from the socket (on the stack, not kept per connection).
const READ_CHUNK: usize = 8 * 1024;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A connection whose request headers are rewritten so that any `:authority` is accepted,
/// and which ends when its client stalls mid-handshake or it is evicted.
pub struct AnyAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    out: Vec<u8>,
    out_pos: usize,
    /// Tracked by the server's connection registry (absent in tests of the wrapper alone).
    connection: Option<Arc<Connection>>,
    handshake_time: Duration,
    /// When the preface or the open header block must be complete.
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<S> AnyAuthority<S> {
    /// Wraps a freshly accepted connection; the preface and every header block must arrive
    /// within `handshake_time` of their first byte.
    ///
    /// Must be called within the Tokio runtime (the timer starts now).
    pub fn new(inner: S, connection: Option<Arc<Connection>>, handshake_time: Duration) -> Self {
        let mut this = Self {
            inner,
            rewriter: Rewriter::default(),
            out: Vec::new(),
            out_pos: 0,
            connection,
            handshake_time,
            deadline: None,
            waiting: false,
        };
        this.track_waiting();
        this
    }

    /// Arms or disarms the handshake timer after the rewriter's state changed.
    fn track_waiting(&mut self) {
        let waiting = self.rewriter.is_waiting();
        if waiting && !self.waiting {
            let at = Instant::now() + self.handshake_time;
            match &mut self.deadline {
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        self.waiting = waiting;
    }

    /// The error that ends a connection whose client is past its handshake time.
    fn overdue(&self) -> Option<io::Error> {
        let sleep = self.deadline.as_ref().filter(|_| self.waiting)?;
        (Instant::now() >= sleep.deadline()).then(|| {
            let what = if self.rewriter.preface_left > 0 { "the connection preface" } else { "a header block" };
            io::Error::new(io::ErrorKind::TimedOut, format!("the client did not finish {what} in time"))
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(conn) = &this.connection
                && conn.is_evicted()
            {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "connection closed to make room for a new client",
                )));
            }
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                    if this.out.capacity() > 4 * MAX_FRAME {
                        this.out.shrink_to(MAX_FRAME);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(conn) = &this.connection {
                        conn.park(cx.waker());
                    }
                    if this.waiting
                        && let Some(sleep) = &mut this.deadline
                        && sleep.as_mut().poll(cx).is_ready()
                        && let Some(e) = this.overdue()
                    {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Pending;
                }
            }
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rewriter.feed(read.filled(), &mut this.out)?;
            // A client that trickles its header block byte by byte is still held to the time.
            if let Some(e) = this.overdue() {
                return Poll::Ready(Err(e));
            }
            this.track_waiting();
            if let Some(conn) = &this.connection {
                conn.touch(this.rewriter.preface_left == 0, this.rewriter.requests > 0);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AnyAuthority<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// What the server reads for a client byte stream delivered in `chunks` (for tests and
/// fuzzing): the stream with every invalid `:authority` replaced, or the error that ends the
/// connection.
pub fn rewrite_stream(chunks: &[&[u8]]) -> io::Result<Vec<u8>> {
    let mut rewriter = Rewriter::default();
    let mut out = Vec::new();
    for chunk in chunks {
        rewriter.feed(chunk, &mut out)?;
    }
    Ok(out)
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    /// The HEADERS frame's END_STREAM flag and priority fields, kept for the rewritten frame.
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    continuations: usize,
}

/// The client-to-server byte stream, frame by frame.
struct Rewriter {
    /// Bytes of the connection preface still to pass.
    preface_left: usize,
    /// Bytes received and not yet passed on: a partial frame header, or a partial HEADERS or
    /// CONTINUATION frame (at most one frame).
    input: Vec<u8>,
    /// Payload bytes of a passed-through frame still to come.
    passthrough: usize,
    block: Option<Block>,
    patcher: Patcher,
    /// Header blocks passed on.
    requests: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            preface_left: PREFACE.len(),
            input: Vec::new(),
            passthrough: 0,
            block: None,
            patcher: Patcher::default(),
            requests: 0,
        }
    }
}

fn protocol_error(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl From<HpackError> for io::Error {
    fn from(e: HpackError) -> Self {
        protocol_error(e.to_string())
    }
}

impl Rewriter {
    /// True while the client owes the rest of something that must arrive promptly: the
    /// preface, a frame header, or a header block.
    fn is_waiting(&self) -> bool {
        self.preface_left > 0 || self.block.is_some() || !self.input.is_empty()
    }

    /// Takes bytes read from the client and appends what the server should read to `out`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut data = data;
        // Bytes that pass through (the preface, a passed frame's payload) are copied straight
        // from what was read; only frame headers and header frames are held.
        loop {
            if self.input.is_empty() && (self.preface_left > 0 || self.passthrough > 0) {
                let left = if self.preface_left > 0 { self.preface_left } else { self.passthrough };
                let n = left.min(data.len());
                if n == 0 {
                    return Ok(());
                }
                if self.preface_left > 0 {
                    if data[..n] != PREFACE[PREFACE.len() - self.preface_left..][..n] {
                        return Err(protocol_error("not an HTTP/2 connection preface"));
                    }
                    self.preface_left -= n;
                } else {
                    self.passthrough -= n;
                }
                out.extend_from_slice(&data[..n]);
                data = &data[n..];
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            // Gather the next frame header, then the frame if it is a header frame.
            let need_header = 9usize.saturating_sub(self.input.len());
            if need_header > 0 {
                let n = need_header.min(data.len());
                self.input.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.input.len() < 9 {
                    return Ok(());
                }
            }
            let h = &self.input;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            if self.block.is_some() && kind != CONTINUATION {
                return Err(protocol_error("a frame other than CONTINUATION inside a header block"));
            }
            if kind != HEADERS && kind != CONTINUATION {
                // Anything else passes as it is; h2 judges it.
                out.extend_from_slice(&self.input);
                self.input.clear();
                self.passthrough = len;
                continue;
            }
            if len > MAX_FRAME {
                return Err(protocol_error(format!("header frame of {len} bytes exceeds {MAX_FRAME}")));
            }
            let need = 9 + len - self.input.len();
            let n = need.min(data.len());
            self.input.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.input.len() < 9 + len {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.input);
            self.header_frame(kind, flags, stream, &frame[9..], out)?;
            // Keep the buffer's allocation for the next frame, unless it grew large.
            if frame.capacity() <= MAX_FRAME + 9 {
                self.input = frame;
                self.input.clear();
            }
        }
    }

    /// Handles one complete HEADERS or CONTINUATION frame.
    fn header_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if kind == HEADERS {
            let mut p = payload;
            let mut pad = 0;
            if flags & PADDED != 0 {
                pad = *p.first().ok_or_else(|| protocol_error("empty padded HEADERS frame"))? as usize;
                p = &p[1..];
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                let fields: [u8; 5] =
                    p.get(..5).and_then(|s| s.try_into().ok()).ok_or_else(|| protocol_error("short HEADERS"))?;
                priority = Some(fields);
                p = &p[5..];
            }
            let fragment = p
                .get(..p.len().checked_sub(pad).ok_or_else(|| protocol_error("bad padding"))?)
                .ok_or_else(|| protocol_error("bad padding"))?;
            self.block = Some(Block {
                stream,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment: fragment.to_vec(),
                continuations: 0,
            });
        } else {
            let block = self
                .block
                .as_mut()
                .filter(|b| b.stream == stream)
                .ok_or_else(|| protocol_error("CONTINUATION frame outside its header block"))?;
            if flags & END_HEADERS == 0 {
                block.continuations += 1;
                if block.continuations > MAX_CONTINUATIONS {
                    return Err(protocol_error(format!(
                        "header block of more than {} CONTINUATION frames",
                        MAX_CONTINUATIONS + 1
                    )));
                }
            }
            block.fragment.extend_from_slice(payload);
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.rewrite(block, out)?;
        }
        Ok(())
    }

    /// Patches a complete header block and writes it as a HEADERS frame (with the original's
    /// END_STREAM and priority) and as many CONTINUATION frames as its size needs.
    fn rewrite(&mut self, block: Block, out: &mut Vec<u8>) -> io::Result<()> {
        let mut patched = Vec::with_capacity(block.fragment.len() + 16);
        self.patcher.patch(&block.fragment, &mut patched)?;
        self.requests += 1;
        drop(block.fragment);
        let priority = block.priority.map(|p| p.to_vec()).unwrap_or_default();
        let first_len = patched.len().min(MAX_FRAME - priority.len());
        let (first, rest) = patched.split_at(first_len);
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        write_frame(out, HEADERS, flags, block.stream, &[&priority, first]);
        let chunks: Vec<&[u8]> = rest.chunks(MAX_FRAME).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let flags = if i + 1 == chunks.len() { END_HEADERS } else { 0 };
            write_frame(out, CONTINUATION, flags, block.stream, &[chunk]);
        }
        Ok(())
    }
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(encoder: &mut loona_hpack::Encoder<'_>, stream: u32, headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let block = encoder.encode(headers.iter().map(|(n, v)| (*n, *v)));
        let mut out = Vec::new();
        write_frame(&mut out, HEADERS, END_HEADERS, stream, &[&block]);
        out
    }

    /// The header blocks the server decodes from `bytes` (after the preface).
    fn decode_all(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut at = PREFACE.len();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while at + 9 <= bytes.len() {
            let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            let payload = &bytes[at + 9..at + 9 + len];
            at += 9 + len;
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
        }
        blocks
    }

    fn authority(headers: &[(Vec<u8>, Vec<u8>)]) -> String {
        let (_, v) = headers.iter().find(|(n, _)| n == b":authority").unwrap();
        String::from_utf8(v.clone()).unwrap()
    }

    fn grpc_request(authority: &'static [u8]) -> Vec<(&'static [u8], &'static [u8])> {
        vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/csi.v1.Identity/GetPluginInfo"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut client = PREFACE.to_vec();
        // SETTINGS, then two requests: the second uses the dynamic table the first filled.
        write_frame(&mut client, 0x4, 0, 0, &[&[]]);
        let req = grpc_request(b"%2Ftmp%2Fcsi.sock");
        client.extend(headers_frame(&mut encoder, 1, &req));
        write_frame(&mut client, 0x0, END_STREAM, 1, &[&[0, 0, 0, 0, 0]]);
        client.extend(headers_frame(&mut encoder, 3, &req));
        client.extend(headers_frame(&mut encoder, 5, &grpc_request(b"localhost")));

        // Fed one byte at a time, as a slow client would deliver it.
        let mut rw = Rewriter::default();
        let mut out = Vec::new();
        for b in &client {
            rw.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert!(out.starts_with(PREFACE));
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 3);
        for b in &blocks {
            assert_eq!(authority(b), "localhost");
            assert_eq!(b.len(), 6);
            assert!(b.iter().any(|(n, v)| n == b":path" && v == b"/csi.v1.Identity/GetPluginInfo"));
        }
        // The DATA frame passed unchanged.
        assert!(out.windows(14).any(|w| w == [0, 0, 5, 0, END_STREAM, 0, 0, 0, 1, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn a_block_with_a_valid_authority_passes_byte_for_byte_and_split_blocks_are_joined() {
        let mut encoder = loona_hpack::Encoder::new();
        let big = vec![b'x'; 9_000];
        let req: Vec<(&[u8], &[u8])> = vec![(b":authority", b"localhost:1234"), (b"x-big", &big)];
        let block = encoder.encode(req.iter().map(|(n, v)| (*n, *v)));
        let mut client = PREFACE.to_vec();
        // The client splits its block in three frames.
        let (a, rest) = block.split_at(4000);
        let (b, c) = rest.split_at(4000);
        write_frame(&mut client, HEADERS, END_STREAM, 1, &[a]);
        write_frame(&mut client, CONTINUATION, 0, 1, &[b]);
        write_frame(&mut client, CONTINUATION, END_HEADERS, 1, &[c]);
        let out = rewrite_stream(&[&client]).unwrap();
        // One HEADERS frame holding the client's block unchanged, still ending the stream.
        let mut want = PREFACE.to_vec();
        write_frame(&mut want, HEADERS, END_STREAM | END_HEADERS, 1, &[&block]);
        assert_eq!(out, want);
        assert_eq!(authority(&decode_all(&out)[0]), "localhost:1234");
    }

    /// One HEADERS frame of 16 KiB that adds a 4 KiB table entry and then names it thousands of
    /// times decodes to about 50 MB: it is refused after a few references, and the rewriter
    /// never holds more than the frame.
    #[test]
    fn an_hpack_bomb_is_refused_without_decoding_it() {
        let mut block = vec![0x40, 0x01, b'x'];
        // Value length 4000: 0x7f then 4000 - 127 as a varint.
        block.push(0x7f);
        let mut n = 4000 - 127;
        while n >= 128 {
            block.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        block.push(n as u8);
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.resize(MAX_FRAME, 0xbe);
        let mut client = PREFACE.to_vec();
        write_frame(&mut client, HEADERS, END_HEADERS | END_STREAM, 1, &[&block]);
        let err = rewrite_stream(&[&client]).unwrap_err();
        assert!(err.to_string().contains("header list larger than 16384"), "{err}");
    }

    #[test]
    fn continuation_floods_and_frames_inside_a_block_end_the_connection() {
        let open = |client: &mut Vec<u8>| write_frame(client, HEADERS, 0, 1, &[&[0x82]]);
        // Zero-length CONTINUATION frames: h2 would never see them.
        let mut client = PREFACE.to_vec();
        open(&mut client);
        for _ in 0..=MAX_CONTINUATIONS {
            write_frame(&mut client, CONTINUATION, 0, 1, &[]);
        }
        let err = rewrite_stream(&[&client]).unwrap_err();
        assert!(err.to_string().contains("CONTINUATION"), "{err}");
        // As many as h2 allows are fine.
        let mut client = PREFACE.to_vec();
        open(&mut client);
        for _ in 0..MAX_CONTINUATIONS {
            write_frame(&mut client, CONTINUATION, 0, 1, &[]);
        }
        write_frame(&mut client, CONTINUATION, END_HEADERS, 1, &[&[0x84]]);
        assert!(rewrite_stream(&[&client]).is_ok());
        // A PING between HEADERS and its CONTINUATION (RFC 9113 §6.10).
        let mut client = PREFACE.to_vec();
        open(&mut client);
        write_frame(&mut client, 0x6, 0, 0, &[&[0; 8]]);
        write_frame(&mut client, CONTINUATION, END_HEADERS, 1, &[&[0x84]]);
        let err = rewrite_stream(&[&client]).unwrap_err();
        assert!(err.to_string().contains("inside a header block"), "{err}");
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let mut client = PREFACE.to_vec();
        write_frame(&mut client, HEADERS, END_HEADERS, 1, &[&[0xff, 0xff, 0xff, 0xff]]);
        let mut out = Vec::new();
        assert!(Rewriter::default().feed(&client, &mut out).is_err());
        let mut client = PREFACE.to_vec();
        write_frame(&mut client, CONTINUATION, END_HEADERS, 1, &[&[0x82]]);
        assert!(Rewriter::default().feed(&client, &mut out).is_err());
        let mut client = PREFACE.to_vec();
        client.extend_from_slice(&[0xff, 0xff, 0xff, HEADERS, 0, 0, 0, 0, 1]);
        assert!(Rewriter::default().feed(&client, &mut out).is_err());
        assert!(Rewriter::default().feed(b"GET / HTTP/1.1\r\n", &mut out).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stalls_in_its_preface_or_a_header_block_is_dropped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let time = Duration::from_secs(5);
        // Stalls in the preface.
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = AnyAuthority::new(server, None, time);
        client.write_all(&PREFACE[..10]).await.unwrap();
        let mut buf = vec![0; 1024];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 10);
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        // Completes the preface, idles (fine), then stalls in a header block.
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = AnyAuthority::new(server, None, time);
        client.write_all(PREFACE).await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), PREFACE.len());
        let idle = tokio::time::timeout(time * 3, conn.read(&mut buf)).await;
        assert!(idle.is_err(), "an idle connection is not the handshake's business");
        let mut frame = Vec::new();
        write_frame(&mut frame, HEADERS, 0, 1, &[&[0x82]]);
        client.write_all(&frame).await.unwrap();
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
