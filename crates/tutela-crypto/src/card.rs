//! Payment-card number (PAN) detection, so that card data is refused before it is stored.

const MIN_PAN: usize = 13;
const MAX_PAN: usize = 19;

/// Whether `digits` (ASCII digits only, at least 2) passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.len() < 2 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let values: Vec<u8> = b.iter().map(|c| c - b'0').collect();
    luhn(&values)
}

/// Luhn over digit values 0..=9.
fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Whether `text` contains something that looks like a payment-card number: 13 to 19 ASCII
/// digits, possibly split into groups by single spaces or dashes ("4111 1111 1111 1111",
/// "3782-822463-10005"), that pass the Luhn check. Candidates start and end at group
/// boundaries, so a card followed by more digits ("… 1111 12/28") is still found.
///
/// This is a guard, not a classifier: about one in ten random 13–19-digit numbers passes Luhn,
/// so long order or reference numbers can be flagged too.
pub fn contains_card_number(text: &str) -> bool {
    let b = text.as_bytes();
    // Digit values of the current run of groups, and where each group ends in it.
    let mut digits: Vec<u8> = Vec::new();
    let mut group_ends: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] - b'0');
            i += 1;
        }
        group_ends.push(digits.len());
        // A single space or dash followed by a digit continues the run.
        if i + 1 < b.len() && matches!(b[i], b' ' | b'-') && b[i + 1].is_ascii_digit() {
            i += 1;
            continue;
        }
        if run_has_card(&digits, &group_ends) {
            return true;
        }
        digits.clear();
        group_ends.clear();
    }
    false
}

fn run_has_card(digits: &[u8], group_ends: &[usize]) -> bool {
    let mut start = 0;
    for (gi, &first_end) in group_ends.iter().enumerate() {
        for &end in &group_ends[gi..] {
            let len = end - start;
            if len > MAX_PAN {
                break;
            }
            if len >= MIN_PAN && luhn(&digits[start..end]) {
                return true;
            }
        }
        start = first_end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_check() {
        for ok in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "79927398713",
            "00",
        ] {
            assert!(luhn_valid(ok), "{ok}");
        }
        for bad in [
            "4111111111111112",
            "79927398710",
            "",
            "0",
            "4111 1111 1111 1111",
            "41111x1111111111",
            "４１",
        ] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn detects_test_pans() {
        for text in [
            "4111 1111 1111 1111",
            "my card is 4111111111111111, thanks",
            "5555-5555-5555-4444",
            "amex 378282246310005.",
            "3782-822463-10005",
            "card:4111 1111 1111 1111 exp 12/28",
            "4111 1111 1111 1111 12/28",
            "pay 5555-5555-5555-4444 12 28 cvv 123",
            "6011111111111117",
            "4000 0566 5566 5556",
        ] {
            assert!(contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn ignores_non_cards() {
        // 16 digits that fail Luhn.
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("1234567812345678"));
        assert!(!luhn_valid("8273645091827364"));
        for text in [
            "",
            "no digits here",
            "4111 1111 1111 1112",
            "1234-5678-1234-5678",
            "8273645091827364",
            "Order #2024-000123-45 shipped",
            "order number 100045678923",
            "call +33 6 12 34 56 78 or 01 23 45 67 89",
            "0033612345678",
            "+1 (555) 123-4567",
            "2026-11-29 12:00:00",
            "4111  1111  1111  1111", // double spaces split the groups
            "4111_1111_1111_1111",
            "4111111111111111111111111",     // 25 digits in one group
            "invoice 41111111 and 11111111", // two short numbers
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let long = "1 ".repeat(10_000);
        let _ = contains_card_number(&long);
        let _ = contains_card_number("é4111-1111-1111-1111é");
        assert!(contains_card_number("é4111-1111-1111-1111é"));
        assert!(!contains_card_number("-"));
        assert!(!contains_card_number("1-"));
        assert!(!contains_card_number(&"9".repeat(100_000)));
    }
}
