//! Byte ranges: the `Range` header of blob GETs and the `Content-Range` header
//! of chunked upload PATCHes.

/// An inclusive byte range `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Never zero: an inclusive range holds at least one byte.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    #[error("malformed range {0:?}")]
    Malformed(String),
    #[error("range not satisfiable for {size} bytes")]
    Unsatisfiable { size: u64 },
}

fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses a `Range: bytes=…` request header against an object of `size` bytes.
/// Supports `a-b`, `a-` and the suffix form `-n`. Other units, and several
/// ranges, are ignored (`None`: serve the whole object), as RFC 9110 allows.
pub fn parse_range(header: &str, size: u64) -> Result<Option<ByteRange>, RangeError> {
    let malformed = || RangeError::Malformed(header.chars().take(100).collect());
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.trim().split_once('-').ok_or_else(malformed)?;
    let unsatisfiable = RangeError::Unsatisfiable { size };
    let range = match (a, b) {
        ("", n) => {
            let n = number(n).ok_or_else(malformed)?;
            if n == 0 || size == 0 {
                return Err(unsatisfiable);
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        }
        (a, "") => ByteRange {
            start: number(a).ok_or_else(malformed)?,
            end: size.saturating_sub(1),
        },
        (a, b) => {
            let (start, end) = (
                number(a).ok_or_else(malformed)?,
                number(b).ok_or_else(malformed)?,
            );
            if end < start {
                return Err(malformed());
            }
            ByteRange {
                start,
                end: end.min(size.saturating_sub(1)),
            }
        }
    };
    if range.start >= size {
        return Err(unsatisfiable);
    }
    Ok(Some(range))
}

/// Parses an upload chunk's `Content-Range`: `start-end` as the distribution
/// spec writes it, or the HTTP form `bytes start-end/total` some clients send.
pub fn parse_content_range(header: &str) -> Result<ByteRange, RangeError> {
    let malformed = || RangeError::Malformed(header.chars().take(100).collect());
    let s = header.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    let (a, b) = s.split_once('-').ok_or_else(malformed)?;
    let (start, end) = (
        number(a).ok_or_else(malformed)?,
        number(b).ok_or_else(malformed)?,
    );
    if end < start {
        return Err(malformed());
    }
    Ok(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        let r = |start, end| Ok(Some(ByteRange { start, end }));
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), r(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), r(50, 99));
        let unsatisfiable = Err(RangeError::Unsatisfiable { size: 100 });
        assert_eq!(parse_range("bytes=100-", 100), unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), unsatisfiable);
        // Ignored: several ranges, other units.
        assert_eq!(parse_range("bytes=0-1,5-9", 100), Ok(None));
        assert_eq!(parse_range("lines=0-9", 100), Ok(None));
        assert_eq!(parse_range("0-9", 100), Ok(None));
        for bad in [
            "bytes=9-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=--1",
            "bytes=1-+2",
            "bytes= -1-2",
        ] {
            assert!(
                matches!(parse_range(bad, 100), Err(RangeError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("0-99"),
            Ok(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_content_range("bytes 100-199/*"),
            Ok(ByteRange {
                start: 100,
                end: 199
            })
        );
        for bad in ["", "5", "9-1", "-1-2", "a-b", "1-"] {
            assert!(parse_content_range(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn satisfiable_ranges_lie_inside(s in "bytes=[0-9-]{0,12}", size in 0u64..1000) {
            if let Ok(Some(r)) = parse_range(&s, size) {
                prop_assert!(r.start <= r.end && r.end < size);
            }
        }

        #[test]
        fn content_range_never_panics(s in "\\PC{0,40}") {
            if let Ok(r) = parse_content_range(&s) {
                prop_assert!(r.start <= r.end);
            }
        }
    }
}
