//! Small encoding helpers: hex (with a branch-free decoder for secrets) and length prefixes.

use std::fmt::Write as _;

/// Lower-case hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Value of one hex digit, or a value with bits above 0xf set when `c` is not a hex digit.
/// Branch-free (after base16ct), so decoding a secret does not leak it through timing.
fn hex_nibble(c: u8) -> u16 {
    let c = i16::from(c);
    let mut ret: i16 = -1;
    // '0'..='9' (0x30..=0x39) -> c - 0x30
    ret += (((0x2f - c) & (c - 0x3a)) >> 8) & (c - 47);
    // 'A'..='F' (0x41..=0x46) -> c - 0x37
    ret += (((0x40 - c) & (c - 0x47)) >> 8) & (c - 54);
    // 'a'..='f' (0x61..=0x66) -> c - 0x57
    ret += (((0x60 - c) & (c - 0x67)) >> 8) & (c - 86);
    ret.cast_unsigned()
}

/// Decode exactly `2 * N` hex digits (either case) into `out`. Branch-free over the digits;
/// only the length check branches. Returns `false` (and leaves `out` zeroed) on bad input.
pub(crate) fn hex_decode_ct<const N: usize>(text: &[u8], out: &mut [u8; N]) -> bool {
    if text.len() != 2 * N {
        return false;
    }
    let mut err: u16 = 0;
    for (dst, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let hi = hex_nibble(pair[0]);
        let lo = hex_nibble(pair[1]);
        err |= (hi | lo) >> 4;
        *dst = ((hi << 4) | (lo & 0xf)).to_le_bytes()[0];
    }
    if err != 0 {
        out.fill(0);
        return false;
    }
    true
}

/// Append `bytes` preceded by its length as a big-endian u64, so that a sequence of fields
/// has exactly one parse.
pub(crate) fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let bytes: [u8; 4] = [0x00, 0x9a, 0xff, 0x10];
        assert_eq!(hex_lower(&bytes), "009aff10");
        let mut out = [0u8; 4];
        assert!(hex_decode_ct(b"009AfF10", &mut out));
        assert_eq!(out, bytes);
        for bad in [
            &b"009aff1"[..],
            b"009aff100",
            b"009aff1g",
            b"009aff1/",
            b"009aff1:",
            b"@09aff10",
            b"009aff1G",
        ] {
            let mut out = [7u8; 4];
            assert!(!hex_decode_ct(bad, &mut out), "{bad:?}");
            if bad.len() == 8 {
                assert_eq!(out, [0; 4]);
            }
        }
        // Every byte value: exactly the 22 hex digits decode.
        let valid = (0u8..=255).filter(|&c| hex_nibble(c) <= 0xf).count();
        assert_eq!(valid, 22);
        for c in 0u8..=255 {
            let expected = (c as char).to_digit(16).map(|d| d as u16);
            assert_eq!(hex_nibble(c) <= 0xf, expected.is_some(), "{c}");
            if let Some(d) = expected {
                assert_eq!(hex_nibble(c), d);
            }
        }
    }
}
