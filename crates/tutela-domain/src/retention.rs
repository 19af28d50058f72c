//! Retention arithmetic: when a datum must be deleted.
//!
//! Deadlines are computed in calendar terms in UTC: "12 months" after 31 January is the last
//! day of the following January… and one month after 31 January is 28 (or 29) February.

use jiff::{Timestamp, tz::TimeZone};

use crate::register::{Anchor, Period, RetentionRule};

/// Why a deadline can't be computed yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    #[error("the retention period {0:?} is not a valid duration")]
    InvalidPeriod(String),
    #[error("the retention rule counted from `{0}` has no duration")]
    MissingDuration(String),
    #[error("the deadline falls outside the supported date range")]
    OutOfRange,
}

/// Adds a calendar period to an instant (UTC calendar; months clamp to the month's last day).
pub fn add_period(start: Timestamp, period: &Period) -> Result<Timestamp, DeadlineError> {
    let span = period
        .span()
        .ok_or_else(|| DeadlineError::InvalidPeriod(period.canonical()))?;
    let zoned = start.to_zoned_datetime(TimeZone::UTC);
    zoned
        .checked_add(span)
        .map(|z| z.timestamp())
        .map_err(|_| DeadlineError::OutOfRange)
}

/// The deletion deadline for data under `rule` once its anchor event happened at `anchor_at`.
///
/// Returns `Ok(None)` for `while_open` rules: the data goes when the request closes, which is an
/// event, not a date.
pub fn deadline(
    rule: &RetentionRule,
    anchor_at: Timestamp,
) -> Result<Option<Timestamp>, DeadlineError> {
    if matches!(rule.from, Anchor::WhileOpen) {
        return Ok(None);
    }
    let period = rule
        .keep
        .as_ref()
        .ok_or_else(|| DeadlineError::MissingDuration(rule.from.as_str().to_string()))?;
    add_period(anchor_at, period).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rule(from: &str, keep: Option<&str>) -> RetentionRule {
        RetentionRule {
            categories: vec![],
            from: Anchor::parse(from),
            keep: keep.map(Period::parse),
            basis: None,
            law: None,
            extendable_with_consent: false,
            note: None,
        }
    }

    #[test]
    fn month_end_clamps_to_end_of_february() {
        let p = Period::parse("1 month");
        assert_eq!(
            add_period(ts("2026-01-31T10:00:00Z"), &p).unwrap(),
            ts("2026-02-28T10:00:00Z")
        );
        assert_eq!(
            add_period(ts("2028-01-31T10:00:00Z"), &p).unwrap(),
            ts("2028-02-29T10:00:00Z")
        );
    }

    #[test]
    fn days_and_years() {
        assert_eq!(
            deadline(
                &rule("collection", Some("180 days")),
                ts("2026-01-01T00:00:00Z")
            )
            .unwrap(),
            Some(ts("2026-06-30T00:00:00Z"))
        );
        assert_eq!(
            deadline(
                &rule("request_reply", Some("1 year")),
                ts("2028-02-29T12:00:00Z")
            )
            .unwrap(),
            Some(ts("2029-02-28T12:00:00Z"))
        );
        assert_eq!(
            deadline(
                &rule("last_contact", Some("12 months")),
                ts("2026-03-15T08:30:00Z")
            )
            .unwrap(),
            Some(ts("2027-03-15T08:30:00Z"))
        );
    }

    #[test]
    fn while_open_has_no_date_and_missing_duration_is_an_error() {
        assert_eq!(
            deadline(&rule("while_open", None), Timestamp::now()).unwrap(),
            None
        );
        assert!(matches!(
            deadline(&rule("collection", None), Timestamp::now()),
            Err(DeadlineError::MissingDuration(_))
        ));
        assert!(matches!(
            deadline(&rule("collection", Some("soon")), Timestamp::now()),
            Err(DeadlineError::InvalidPeriod(_))
        ));
    }

    #[test]
    fn period_parsing() {
        assert!(Period::parse("180 days").is_valid());
        assert!(Period::parse("1 YEAR").is_valid());
        assert!(!Period::parse("0 days").is_valid());
        assert!(!Period::parse("one year").is_valid());
        assert!(!Period::parse("12 months ago").is_valid());
        assert_eq!(Period::parse("12  Months").canonical(), "12 months");
    }
}
