//! Durations written as text: `"500ms"`, `"10s"`, `"15m"`, `"1h"`, `"0"`.

use std::time::Duration;

const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];
/// Digits after the decimal point that are looked at; more can only be trailing zeros.
const MAX_FRACTION_DIGITS: usize = 12;

/// Parses a duration: a non-negative number and a unit, `ms`, `s`, `m` (minutes) or `h`, like
/// `"500ms"`, `"10s"`, `"15m"`, `"1h"` or `"1.5s"`. A zero may be written without a unit
/// (`"0"`). The result must be a whole number of milliseconds.
///
/// The error is a complete sentence quoting `text` and showing how to write it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let not_a_duration = || {
        format!(
            "{text:?} is not a duration; write a number with a unit, like \"10s\", \"500ms\" or \"2m\""
        )
    };
    if trimmed.starts_with('-') {
        return Err(format!(
            "{text:?} is negative; a duration is zero or more, like \"0\" or \"10s\""
        ));
    }
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed
        .split_at_checked(number_end)
        .ok_or_else(not_a_duration)?;
    let unit = unit.trim_start();
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(not_a_duration());
    }
    let is_zero = number.chars().all(|c| c == '0' || c == '.');
    if unit.is_empty() {
        if is_zero {
            return Ok(Duration::ZERO);
        }
        return Err(format!(
            "{text:?} has no unit; write \"{number}s\" for seconds or \"{number}ms\" for milliseconds"
        ));
    }
    let Some(&(_, unit_ms)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(not_a_duration());
    };
    let too_large = || format!("{text:?} is too large for a duration");
    let whole_ms = whole
        .parse::<u64>()
        .ok()
        .and_then(|w| w.checked_mul(unit_ms))
        .ok_or_else(too_large)?;
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > MAX_FRACTION_DIGITS {
        return Err(finer_than_ms(text));
    }
    let mut fraction_ms = 0u64;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| not_a_duration())?;
        let scale = 10u128.pow(u32::try_from(fraction.len()).unwrap_or(u32::MAX));
        let scaled = digits * u128::from(unit_ms);
        if !scaled.is_multiple_of(scale) {
            return Err(finer_than_ms(text));
        }
        fraction_ms = u64::try_from(scaled / scale).map_err(|_| too_large())?;
    }
    let total = whole_ms.checked_add(fraction_ms).ok_or_else(too_large)?;
    Ok(Duration::from_millis(total))
}

fn finer_than_ms(text: &str) -> String {
    format!(
        "{text:?} is finer than a millisecond; durations are whole milliseconds, like \"1500ms\""
    )
}

/// Formats a duration the way it would be written in the file, in the largest unit that
/// represents it exactly: `"1h"`, `"15m"`, `"10s"`, `"500ms"`, and `"0s"` for zero.
/// Parts below a millisecond are dropped.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (name, unit_ms) in UNITS.iter().rev() {
        let unit_ms = u128::from(*unit_ms);
        if ms.is_multiple_of(unit_ms) {
            return format!("{}{name}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(65535)), "65535s");
    }
}
