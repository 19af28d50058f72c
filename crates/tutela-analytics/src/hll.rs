//! HyperLogLog (2^14 one-byte registers, standard error about 0.8 %) over pseudonyms, which are
//! already uniformly distributed keyed hashes: unique visitors over a range of days without
//! counting distinct values over millions of rows.

/// Register-index bits.
pub const P: u32 = 14;
/// Number of registers (and bytes of a sketch).
pub const M: usize = 1 << P;

/// Adds a pseudonym to a sketch.
pub fn add(regs: &mut [u8], visitor: i64) {
    debug_assert_eq!(regs.len(), M);
    // Mix once more so that sketches never depend on how the pseudonym was truncated.
    let mut x = visitor as u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let idx = (x >> (64 - P)) as usize;
    let rest = (x << P) | (1 << (P - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    if regs[idx] < rank {
        regs[idx] = rank;
    }
}

/// Merges `other` into `into` (register-wise maximum); sketches of another size are ignored.
pub fn merge(into: &mut [u8], other: &[u8]) {
    if other.len() != into.len() {
        return;
    }
    for (a, b) in into.iter_mut().zip(other) {
        if *b > *a {
            *a = *b;
        }
    }
}

/// The cardinality estimate (linear counting for small values).
pub fn estimate(regs: &[u8]) -> f64 {
    let m = regs.len() as f64;
    let zeros = regs.iter().filter(|r| **r == 0).count() as f64;
    let sum: f64 = regs.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / sum;
    if raw <= 2.5 * m && zeros > 0.0 {
        m * (m / zeros).ln()
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_within_two_percent_and_merges() {
        let mut a = vec![0u8; M];
        let mut b = vec![0u8; M];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i64
        };
        for _ in 0..100_000 {
            add(&mut a, next());
        }
        let shared: Vec<i64> = (0..50_000).map(|_| next()).collect();
        for v in &shared {
            add(&mut a, *v);
            add(&mut b, *v);
        }
        let ea = estimate(&a);
        assert!((ea - 150_000.0).abs() / 150_000.0 < 0.02, "{ea}");
        merge(&mut a, &b);
        let union = estimate(&a);
        assert!((union - 150_000.0).abs() / 150_000.0 < 0.02, "{union}");
        let mut small = vec![0u8; M];
        for v in [1i64, 2, 3, 2, 1] {
            add(&mut small, v);
        }
        assert_eq!(estimate(&small).round(), 3.0);
        assert_eq!(estimate(&vec![0u8; M]), 0.0);
    }
}
