//! Just enough HPACK (RFC 7541) to patch `:authority` in a request header block, byte for byte
//! everywhere else.
//!
//! [`Patcher::patch`] walks one complete header block, representation by representation,
//! mirroring the client's dynamic table (sizes and a tag per entry, never the values), and
//! copies every representation unchanged except an `:authority` whose value is not a valid URI
//! authority, which it replaces with `localhost`. Nothing is decoded into memory beyond one
//! string at a time, so a block that references a 4 KiB table entry thousands of times costs
//! what its bytes cost, not what it would decode to; and the decoded header list is counted as
//! HTTP/2 counts it (name + value + 32 per field) and refused past [`MAX_HEADER_LIST`], the
//! limit the server itself advertises.
//!
//! Keeping the server's dynamic table in step with the client's: a replaced value that the
//! client added to its table is added to the server's too, never longer than the client's
//! entry, so the server evicts no entry the client still has and every later index means the
//! same field on both sides (the server may keep an extra old entry nobody refers to).

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};

/// The largest decoded header list accepted, counted as RFC 9113 §6.5.2 counts it; the
/// server advertises the same in `SETTINGS_MAX_HEADER_LIST_SIZE` (hyper's default).
pub const MAX_HEADER_LIST: usize = 16 * 1024;

/// The dynamic table size the server allows (`SETTINGS_HEADER_TABLE_SIZE`, HTTP/2's default,
/// which the server keeps).
const TABLE_SIZE: usize = 4096;

/// Per-field overhead in table and header-list sizes (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// What replaces an invalid `:authority`.
const LOCALHOST: &[u8] = b"localhost";

/// Why a header block is refused; the connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The decoded header list is larger than [`MAX_HEADER_LIST`].
    #[error("request header list larger than {MAX_HEADER_LIST} bytes")]
    TooLarge,
    /// Not valid HPACK.
    #[error("malformed request header block: {0}")]
    Malformed(&'static str),
}

/// The static table's fields (RFC 7541 Appendix A), index 1 to 61.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The static table's entry at `index` (1 to 61): for tests that encode as clients do.
pub fn static_entry(index: usize) -> Option<(&'static str, &'static str)> {
    index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)).copied()
}

/// The Huffman decoder (its code table is built once per process).
static HUFFMAN: LazyLock<Mutex<loona_hpack::huffman::HuffmanDecoder>> =
    LazyLock::new(|| Mutex::new(loona_hpack::huffman::HuffmanDecoder::new()));

/// What the patcher knows of a field's name, and of its value when it is `:authority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Other,
    /// `:authority`, with whether its value is a valid URI authority.
    Authority {
        valid: bool,
    },
}

/// One entry of the mirrored dynamic table: its size and its tag, not its text.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// name + value + 32, as the client counts it.
    size: usize,
    /// Length of the name alone (a literal may reuse an entry's name).
    name_len: usize,
    tag: Tag,
}

/// A string literal as it appears in the block.
struct Literal<'a> {
    /// The whole encoding: length prefix and octets.
    raw: &'a [u8],
    /// The octets after the length prefix.
    octets: &'a [u8],
    huffman: bool,
}

impl Literal<'_> {
    /// The decoded octets (Huffman-decoded if needed). Allocates at most what the octets'
    /// length allows (8/5 of it).
    fn decode(&self) -> Result<Vec<u8>, HpackError> {
        if !self.huffman {
            return Ok(self.octets.to_vec());
        }
        let mut huffman = HUFFMAN.lock().unwrap_or_else(|p| p.into_inner());
        huffman.decode(self.octets).map_err(|_| HpackError::Malformed("bad Huffman string"))
    }

    /// The decoded length.
    fn decoded_len(&self) -> Result<usize, HpackError> {
        if self.huffman { self.decode().map(|d| d.len()) } else { Ok(self.octets.len()) }
    }
}

/// The request-side HPACK state of one connection: see the module docs.
#[derive(Debug)]
pub struct Patcher {
    /// Newest first, as HPACK indexes it.
    table: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Default for Patcher {
    fn default() -> Self {
        Self { table: VecDeque::new(), size: 0, max: TABLE_SIZE }
    }
}

/// Reads an HPACK integer with a `prefix`-bit prefix at the start of `b` (RFC 7541 §5.1).
/// Returns the value and the bytes it took. Values above what a 16 KiB block can use are
/// refused, so nothing overflows.
fn integer(b: &[u8], prefix: u32) -> Result<(usize, usize), HpackError> {
    let max = (1usize << prefix) - 1;
    let first = *b.first().ok_or(HpackError::Malformed("truncated integer"))? as usize & max;
    if first < max {
        return Ok((first, 1));
    }
    let mut value = max;
    for (i, byte) in b.iter().enumerate().skip(1) {
        // Four continuation bytes hold 28 bits: far more than any block here.
        if i > 4 {
            return Err(HpackError::Malformed("integer too large"));
        }
        value += ((*byte & 0x7f) as usize) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(HpackError::Malformed("truncated integer"))
}

/// Writes an HPACK integer (RFC 7541 §5.1) with a `prefix`-bit prefix after `high_bits`
/// (also for tests and tools that encode header blocks as clients do).
pub fn write_integer(out: &mut Vec<u8>, high_bits: u8, prefix: u32, mut n: usize) {
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

/// Reads a string literal at the start of `b`.
fn literal(b: &[u8]) -> Result<Literal<'_>, HpackError> {
    let huffman = b.first().ok_or(HpackError::Malformed("truncated string"))? & 0x80 != 0;
    let (len, n) = integer(b, 7)?;
    let end = n.checked_add(len).filter(|e| *e <= b.len()).ok_or(HpackError::Malformed("truncated string"))?;
    Ok(Literal { raw: &b[..end], octets: &b[n..end], huffman })
}

fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A valid authority no longer than `len` bytes to stand for an invalid one that enters the
/// dynamic table: `localhost`, or its first `len` letters. `None` for an empty value, which
/// nothing shorter can replace.
fn replacement_for_table(len: usize) -> Option<&'static [u8]> {
    (len > 0).then(|| &LOCALHOST[..len.min(LOCALHOST.len())])
}

impl Patcher {
    /// The name length and tag of index `index` (static or dynamic), and the entry's size
    /// without the overhead (name + value).
    fn lookup(&self, index: usize) -> Result<(usize, usize, Tag), HpackError> {
        if index == 0 {
            return Err(HpackError::Malformed("index 0"));
        }
        if let Some((name, value)) = STATIC_TABLE.get(index - 1) {
            let tag = if *name == ":authority" { Tag::Authority { valid: false } } else { Tag::Other };
            return Ok((name.len(), name.len() + value.len(), tag));
        }
        let e = self.table.get(index - 1 - STATIC_TABLE.len()).ok_or(HpackError::Malformed("index out of range"))?;
        Ok((e.name_len, e.size - ENTRY_OVERHEAD, e.tag))
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.table.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.evict_to(self.max.saturating_sub(entry.size));
        if entry.size <= self.max {
            self.size += entry.size;
            self.table.push_front(entry);
        }
    }

    /// Copies the complete header block `block` to `out`, with an invalid `:authority`
    /// replaced (see the module docs), and updates the mirrored table. The output is never
    /// more than a few bytes longer than the input. On error the connection must end: the
    /// table no longer matches the client's.
    pub fn patch(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
        let mut list = 0usize;
        let mut authorities = 0;
        let mut at = 0;
        while at < block.len() {
            let rest = &block[at..];
            let b = rest[0];
            let field_size;
            if b & 0x80 != 0 {
                // Indexed header field (§6.1).
                let (index, n) = integer(rest, 7)?;
                let (_, size, tag) = self.lookup(index)?;
                field_size = size;
                if let Tag::Authority { valid } = tag {
                    authorities += 1;
                    if authorities > 1 {
                        return Err(HpackError::Malformed("more than one :authority"));
                    }
                    if !valid {
                        // Literal without indexing, name `:authority` from the static table.
                        out.push(0x01);
                        write_integer(out, 0, 7, LOCALHOST.len());
                        out.extend_from_slice(LOCALHOST);
                        at += n;
                        list += field_size + ENTRY_OVERHEAD;
                        if list > MAX_HEADER_LIST {
                            return Err(HpackError::TooLarge);
                        }
                        continue;
                    }
                }
                out.extend_from_slice(&rest[..n]);
                at += n;
            } else if b & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                let (size, n) = integer(rest, 5)?;
                if size > TABLE_SIZE {
                    return Err(HpackError::Malformed("table size update above the allowed size"));
                }
                self.max = size;
                self.evict_to(size);
                out.extend_from_slice(&rest[..n]);
                at += n;
                continue;
            } else {
                // Literal header field (§6.2): with incremental indexing (01), without
                // indexing (0000) or never indexed (0001).
                let indexing = b & 0xc0 == 0x40;
                let prefix = if indexing { 6 } else { 4 };
                let (index, n) = integer(rest, prefix)?;
                let (name_len, name_tag, name_end) = if index == 0 {
                    let name = literal(&rest[n..])?;
                    // Only a short literal can be `:authority`; longer ones are measured.
                    let decoded = if name.octets.len() <= 40 { Some(name.decode()?) } else { None };
                    let (len, tag) = match decoded {
                        Some(d) if d == b":authority" => (d.len(), Tag::Authority { valid: false }),
                        Some(d) => (d.len(), Tag::Other),
                        None => (name.decoded_len()?, Tag::Other),
                    };
                    (len, tag, n + name.raw.len())
                } else {
                    let (name_len, _, tag) = self.lookup(index)?;
                    (name_len, tag, n)
                };
                let value = literal(&rest[name_end..])?;
                let end = name_end + value.raw.len();
                let (value_len, tag) = match name_tag {
                    Tag::Other => (value.decoded_len()?, Tag::Other),
                    Tag::Authority { .. } => {
                        authorities += 1;
                        if authorities > 1 {
                            // RFC 9113 §8.3: a pseudo-header appears at most once.
                            return Err(HpackError::Malformed("more than one :authority"));
                        }
                        let decoded = value.decode()?;
                        (decoded.len(), Tag::Authority { valid: is_valid_authority(&decoded) })
                    }
                };
                field_size = name_len + value_len;
                let replacement = match tag {
                    Tag::Authority { valid: false } if indexing => replacement_for_table(value_len),
                    Tag::Authority { valid: false } => Some(LOCALHOST),
                    _ => None,
                };
                match replacement {
                    Some(new) => {
                        // Same representation and name bytes; a new raw value.
                        out.extend_from_slice(&rest[..name_end]);
                        write_integer(out, 0, 7, new.len());
                        out.extend_from_slice(new);
                    }
                    None => out.extend_from_slice(&rest[..end]),
                }
                if indexing {
                    // The mirrored entry is the client's: its size and its (invalid) value.
                    self.insert(Entry { size: field_size + ENTRY_OVERHEAD, name_len, tag });
                }
                at += end;
            }
            list += field_size + ENTRY_OVERHEAD;
            if list > MAX_HEADER_LIST {
                return Err(HpackError::TooLarge);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal_field(out: &mut Vec<u8>, high: u8, prefix: u32, name: &[u8], value: &[u8]) {
        write_integer(out, high, prefix, 0);
        write_integer(out, 0, 7, name.len());
        out.extend_from_slice(name);
        write_integer(out, 0, 7, value.len());
        out.extend_from_slice(value);
    }

    fn decode(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> Vec<(String, String)> {
        let fields = decoder.decode(block).unwrap();
        fields.into_iter().map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())).collect()
    }

    #[test]
    fn integers_read_and_write_as_rfc_7541_says() {
        let mut out = Vec::new();
        write_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        assert_eq!(integer(&out, 5).unwrap(), (1337, 3));
        out.clear();
        write_integer(&mut out, 0, 7, 10);
        assert_eq!(out, [10]);
        assert!(integer(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f], 7).is_err());
        assert!(integer(&[0x7f, 0xff], 7).is_err());
    }

    /// RFC 7541 C.4: requests with Huffman-coded literals and a reused table entry pass
    /// unchanged.
    #[test]
    fn valid_blocks_pass_byte_for_byte_with_huffman_and_indexing() {
        let first =
            [0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let second = [0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf];
        let mut patcher = Patcher::default();
        let mut server = loona_hpack::Decoder::new();
        for block in [&first[..], &second[..]] {
            let mut out = Vec::new();
            patcher.patch(block, &mut out).unwrap();
            assert_eq!(out, block);
            let fields = decode(&mut server, &out);
            assert!(fields.contains(&(":authority".into(), "www.example.com".into())), "{fields:?}");
        }
        assert_eq!(patcher.size, 57 + 53);
    }

    /// An invalid `:authority` entering the table is replaced by a valid value no longer than
    /// the client's, so that with the client's table exactly full the server evicts nothing the
    /// client still refers to.
    #[test]
    fn a_replaced_table_entry_keeps_both_tables_in_step() {
        let mut block = Vec::new();
        // Two entries and an authority of one byte fill the client's table to exactly 4096.
        literal_field(&mut block, 0x40, 6, b"x-a", &vec![b'a'; 1991]);
        literal_field(&mut block, 0x40, 6, b"x-b", &vec![b'b'; 1992]);
        literal_field(&mut block, 0x40, 6, b":authority", b"%");
        let mut patcher = Patcher::default();
        let mut out = Vec::new();
        patcher.patch(&block, &mut out).unwrap();
        assert_eq!(patcher.size, 4096);
        let mut server = loona_hpack::Decoder::new();
        let fields = decode(&mut server, &out);
        assert_eq!(fields[2], (":authority".into(), "l".into()));
        // The next request names all three entries: the oldest (64) must still be x-a, and
        // the authority entry (62) is sent as a literal localhost.
        let next = [0xbe, 0xbf, 0xc0];
        let mut out = Vec::new();
        patcher.patch(&next, &mut out).unwrap();
        let fields = decode(&mut server, &out);
        assert_eq!(fields[0], (":authority".into(), "localhost".into()));
        assert_eq!(fields[1].0, "x-b");
        assert_eq!(fields[2].0, "x-a");
        assert_eq!(fields[2].1.len(), 1991);
    }

    #[test]
    fn every_representation_of_a_bad_authority_is_replaced() {
        let bad = b"%2Ftmp%2Fcsi.sock";
        let mut patcher = Patcher::default();
        let mut server = loona_hpack::Decoder::new();
        for (high, prefix) in [(0x00, 4), (0x10, 4), (0x40, 6)] {
            let mut block = vec![0x83];
            // Name from the static table (index 1), and as a literal.
            write_integer(&mut block, high, prefix, 1);
            write_integer(&mut block, 0, 7, bad.len());
            block.extend_from_slice(bad);
            let mut out = Vec::new();
            patcher.patch(&block, &mut out).unwrap();
            assert_eq!(decode(&mut server, &out)[1], (":authority".into(), "localhost".into()));
            let mut block = Vec::new();
            literal_field(&mut block, high, prefix, b":authority", bad);
            let mut out = Vec::new();
            patcher.patch(&block, &mut out).unwrap();
            assert_eq!(decode(&mut server, &out)[0], (":authority".into(), "localhost".into()));
        }
        // The static entry itself (an empty authority).
        let mut out = Vec::new();
        patcher.patch(&[0x81], &mut out).unwrap();
        assert_eq!(decode(&mut server, &out)[0], (":authority".into(), "localhost".into()));
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let mut patcher = Patcher::default();
        let mut out = Vec::new();
        for block in [&[0x80][..], &[0xff, 0x00], &[0x3f, 0xe2, 0x1f], &[0x40, 0x05, b'a'], &[0x81, 0x81]] {
            assert!(patcher.patch(block, &mut out).is_err(), "{block:?}");
        }
    }
}
