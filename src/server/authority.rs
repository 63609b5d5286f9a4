//! Accepting any `:authority` on the unix socket.
//!
//! The HTTP/2 layer beneath tonic (`h2`) resets every stream whose `:authority` is not a
//! valid URI authority. The kubelet and the sidecars (grpc-go) send `localhost`, but gRPC
//! C-core (Python's grpcio and others) sends the socket path, percent-encoded, and grpc-java
//! sends it raw (grpc/grpc#38142, hyperium/h2#487): operators' tools and tests in those
//! languages could not talk to the driver. On a unix socket the authority names nothing, so
//! [`AnyAuthority`] wraps each accepted connection and, on the bytes read from the client,
//! replaces an invalid `:authority` with `localhost` before `h2` sees it.
//!
//! Header blocks are HPACK-compressed with per-connection state, so the wrapper decodes every
//! request header block (tracking the client's dynamic table) and re-encodes it as literals
//! without indexing, which needs no state on the server side. Every other frame, and all
//! bytes the server writes, pass through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The largest frame payload the server accepts (HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`,
/// which tonic keeps).
const MAX_FRAME: usize = 16_384;
/// The largest header block this layer gathers; larger ones end the connection.
const MAX_BLOCK: usize = 1 << 20;
/// HPACK dynamic table size the server allows (`SETTINGS_HEADER_TABLE_SIZE` default).
const TABLE_SIZE: usize = 4096;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A connection whose request headers are rewritten so that any `:authority` is accepted.
pub struct AnyAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    out: Vec<u8>,
    out_pos: usize,
    scratch: Box<[u8]>,
}

impl<S> AnyAuthority<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self { inner, rewriter: Rewriter::default(), out: Vec::new(), out_pos: 0, scratch: vec![0; 16 * 1024].into() }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rewriter.feed(read.filled(), &mut this.out)?;
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
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The client-to-server byte stream, frame by frame.
struct Rewriter {
    /// Bytes of the connection preface still to pass.
    preface_left: usize,
    /// Bytes received and not yet passed on.
    input: Vec<u8>,
    /// Payload bytes of a passed-through frame still to come.
    passthrough: usize,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self { preface_left: PREFACE.len(), input: Vec::new(), passthrough: 0, block: None, decoder }
    }
}

fn protocol_error(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl Rewriter {
    /// Takes bytes read from the client and appends what the server should read to `out`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.input.extend_from_slice(data);
        let mut at = 0;
        loop {
            let rest = &self.input[at..];
            if self.preface_left > 0 || self.passthrough > 0 {
                let left = self.preface_left.max(self.passthrough);
                let n = left.min(rest.len());
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&rest[..n]);
                at += n;
                if self.preface_left > 0 {
                    self.preface_left -= n;
                } else {
                    self.passthrough -= n;
                }
                continue;
            }
            if rest.len() < 9 {
                break;
            }
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
            if kind != HEADERS && kind != CONTINUATION {
                // Anything else passes as it is; h2 judges it.
                out.extend_from_slice(&rest[..9]);
                at += 9;
                self.passthrough = len;
                continue;
            }
            if len > MAX_FRAME {
                return Err(protocol_error(format!("header frame of {len} bytes exceeds {MAX_FRAME}")));
            }
            if rest.len() < 9 + len {
                break;
            }
            let payload = &rest[9..9 + len];
            at += 9 + len;
            if kind == HEADERS {
                if self.block.is_some() {
                    return Err(protocol_error("HEADERS frame inside another header block"));
                }
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
                self.block =
                    Some(Block { stream, end_stream: flags & END_STREAM != 0, priority, fragment: fragment.to_vec() });
            } else {
                let block = self
                    .block
                    .as_mut()
                    .filter(|b| b.stream == stream)
                    .ok_or_else(|| protocol_error("CONTINUATION frame outside its header block"))?;
                if block.fragment.len() + payload.len() > MAX_BLOCK {
                    return Err(protocol_error("header block too large"));
                }
                block.fragment.extend_from_slice(payload);
            }
            if flags & END_HEADERS != 0 {
                if let Some(block) = self.block.take() {
                    self.rewrite(block, out)?;
                }
            }
        }
        self.input.drain(..at);
        Ok(())
    }

    /// Decodes a complete header block, fixes its `:authority`, and writes it as frames of
    /// literals without indexing.
    fn rewrite(&mut self, block: Block, out: &mut Vec<u8>) -> io::Result<()> {
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                let value: &[u8] = if &*name == b":authority" && http::uri::Authority::try_from(&*value).is_err() {
                    b"localhost"
                } else {
                    &value
                };
                encode_literal(&mut encoded, &name, value);
            })
            .map_err(|e| protocol_error(format!("undecodable request headers: {e:?}")))?;
        let priority = block.priority.map(|p| p.to_vec()).unwrap_or_default();
        let mut chunks = encoded.chunks(MAX_FRAME - priority.len()).peekable();
        let first = chunks.next().unwrap_or(&[]);
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        write_frame(out, HEADERS, flags, block.stream, &[&priority, first]);
        let rest: Vec<&[u8]> = encoded[first.len()..].chunks(MAX_FRAME).collect();
        for (i, chunk) in rest.iter().enumerate() {
            let flags = if i + 1 == rest.len() { END_HEADERS } else { 0 };
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

/// HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2), no Huffman.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    for s in [name, value] {
        encode_int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

/// HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1).
fn encode_int(out: &mut Vec<u8>, high_bits: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(high_bits | n as u8);
        return;
    }
    out.push(high_bits | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
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

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut client = PREFACE.to_vec();
        // SETTINGS, then two requests: the second uses the dynamic table the first filled.
        write_frame(&mut client, 0x4, 0, 0, &[&[]]);
        let req: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/csi.v1.Identity/GetPluginInfo"),
            (b":authority", b"%2Ftmp%2Fcsi.sock"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ];
        client.extend(headers_frame(&mut encoder, 1, &req));
        write_frame(&mut client, 0x0, END_STREAM, 1, &[&[0, 0, 0, 0, 0]]);
        client.extend(headers_frame(&mut encoder, 3, &req));
        let mut good = req.clone();
        good[3].1 = b"localhost";
        client.extend(headers_frame(&mut encoder, 5, &good));

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
    fn a_valid_authority_is_kept_and_large_blocks_are_split() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut client = PREFACE.to_vec();
        let big = vec![b'x'; 40_000];
        let req: Vec<(&[u8], &[u8])> = vec![(b":authority", b"localhost:1234"), (b"x-big", &big)];
        let block = encoder.encode(req.iter().map(|(n, v)| (*n, *v)));
        // The client splits its block too.
        let (a, b) = block.split_at(MAX_FRAME);
        let (b, c) = b.split_at(MAX_FRAME);
        write_frame(&mut client, HEADERS, END_STREAM, 1, &[a]);
        write_frame(&mut client, CONTINUATION, 0, 1, &[b]);
        write_frame(&mut client, CONTINUATION, END_HEADERS, 1, &[c]);
        let mut rw = Rewriter::default();
        let mut out = Vec::new();
        rw.feed(&client, &mut out).unwrap();
        let blocks = decode_all(&out);
        assert_eq!(authority(&blocks[0]), "localhost:1234");
        assert_eq!(blocks[0][1].1.len(), 40_000);
        // The first frame still ends the stream.
        assert_eq!(out[PREFACE.len() + 4] & END_STREAM, END_STREAM);
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
    }

    #[test]
    fn integers_encode_as_rfc_7541_says() {
        let mut out = Vec::new();
        encode_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        encode_int(&mut out, 0, 7, 10);
        assert_eq!(out, [10]);
    }
}
