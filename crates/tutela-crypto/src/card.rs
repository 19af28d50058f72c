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

/// Whether `text` contains something that looks like a payment-card number: 13 to 19 digits,
/// possibly split into groups by single separators ("4111 1111 1111 1111",
/// "3782-822463-10005", "4111.1111.1111.1111"), that pass the Luhn check. Digits are ASCII or
/// full-width (`４１１１…`); a separator is a space (also the no-break, thin, narrow no-break and
/// figure spaces), a dash or hyphen (ASCII or Unicode), a dot or a slash. Candidates start and
/// end at group boundaries, so a card followed by more digits ("… 1111 12/28") is still found.
///
/// This is a guard, not a classifier: about one in ten random 13–19-digit numbers passes Luhn,
/// so long order or reference numbers can be flagged too.
pub fn contains_card_number(text: &str) -> bool {
    // Digit values of the current run of groups, and where each group ends in it.
    let mut digits: Vec<u8> = Vec::new();
    let mut group_ends: Vec<usize> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let Some(d) = digit_value(c) else {
            continue;
        };
        digits.push(d);
        while let Some(d) = chars.peek().copied().and_then(digit_value) {
            digits.push(d);
            chars.next();
        }
        group_ends.push(digits.len());
        // A single separator followed by a digit continues the run.
        if chars.peek().copied().is_some_and(is_separator) {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.peek().copied().and_then(digit_value).is_some() {
                chars.next();
                continue;
            }
        }
        if run_has_card(&digits, &group_ends) {
            return true;
        }
        digits.clear();
        group_ends.clear();
    }
    false
}

/// The value of an ASCII or full-width decimal digit.
fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '\u{FF10}'..='\u{FF19}' => Some((c as u32 - 0xFF10) as u8),
        _ => None,
    }
}

/// Characters that may split a card number into groups.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '-'
            | '.'
            | '/'
            | '\u{A0}' // no-break space
            | '\u{2007}' // figure space
            | '\u{2009}' // thin space
            | '\u{202F}' // narrow no-break space
            | '\u{2010}'
            ..='\u{2015}' // hyphens and dashes
            | '\u{2212}' // minus sign
            | '\u{FF0D}' // full-width hyphen-minus
    )
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
            "4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111\u{202f}1111\u{202f}1111\u{202f}1111",
            "4111\u{2013}1111\u{2013}1111\u{2013}1111",
            "４１１１１１１１１１１１１１１１",
            "４１１１ １１１１ 1111 1111",
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
            "4111111111111111111111111",        // 25 digits in one group
            "invoice 41111111 and 11111111",    // two short numbers
            "4111..1111.1111.1111",             // a double separator splits the groups
            "４１１１１１１１１１１１１１１２", // full-width, fails Luhn
            "version 1.2.3.4 on 2026/11/29",
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
