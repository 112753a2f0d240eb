//! HTTP/1.1 wire helpers shared by the serving front (requests) and the
//! upstream client (answers): header spans located in a head's bytes, and
//! vectored writes.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::io;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where one header's name and value sit in a head's bytes; the upstream
/// client locates answer headers the same way.
pub struct Span {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

impl Span {
    /// Where `h`, a header httparse found in `buf`, sits in it.
    pub fn of(buf: &[u8], h: &httparse::Header<'_>) -> Span {
        Span {
            name: offsets(buf, h.name.as_bytes()),
            value: offsets(buf, h.value),
        }
    }
}

/// Start and end of `part`, a slice of `buf`, within `buf`.
pub fn offsets(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

/// The headers `spans` locate in `raw`, values sharing its bytes; `None`
/// when one is not valid for the `http` types.
pub fn header_map(raw: &Bytes, spans: &[Span]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for h in spans {
        let name = HeaderName::from_bytes(&raw[h.name.0..h.name.1]).ok()?;
        let value = HeaderValue::from_maybe_shared(raw.slice(h.value.0..h.value.1)).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// Writes `a` then `b` with vectored writes (no copy of a large `b`).
pub async fn write_two(io: &mut TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = io
            .write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}
