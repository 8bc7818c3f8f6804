//! The duration syntax.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use sn_config::{format_duration, parse_duration};

#[test]
fn units() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("010s"), Ok(Duration::from_secs(10)));
}

#[test]
fn zero() {
    for zero in ["0", "0s", "0ms", "0m", "0h", "00", "0.0", "0.0s"] {
        assert_eq!(parse_duration(zero), Ok(Duration::ZERO), "{zero}");
    }
}

#[test]
fn fractions_that_are_whole_milliseconds() {
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("0.5h"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_duration("2.25m"), Ok(Duration::from_secs(135)));
    assert_eq!(
        parse_duration("1.500000000000000000000s"),
        Ok(Duration::from_millis(1500))
    );
    let err = parse_duration("1.0005s").unwrap_err();
    assert!(err.contains("finer than a millisecond"), "{err}");
    let err = parse_duration("1.5ms").unwrap_err();
    assert!(err.contains("finer than a millisecond"), "{err}");
    let err = parse_duration("0.1234567890123456s").unwrap_err();
    assert!(err.contains("finer than a millisecond"), "{err}");
}

#[test]
fn bad_units_and_shapes() {
    for bad in [
        "10x",
        "10d",
        "10sec",
        "10 min",
        "s",
        "ms",
        "",
        " ",
        "ten seconds",
        "1e3s",
        "10S",
        "1..5s",
        ".5s",
        "5.s",
        "1_000ms",
        "+5s",
        "5s5",
    ] {
        let err = parse_duration(bad).unwrap_err();
        assert!(
            err.contains(
                "is not a duration; write a number with a unit, like \"10s\", \"500ms\" or \"2m\""
            ),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        parse_duration("10x").unwrap_err(),
        "\"10x\" is not a duration; write a number with a unit, like \"10s\", \"500ms\" or \"2m\""
    );
}

#[test]
fn missing_unit() {
    assert_eq!(
        parse_duration("10").unwrap_err(),
        "\"10\" has no unit; write \"10s\" for seconds or \"10ms\" for milliseconds"
    );
}

#[test]
fn negative() {
    for bad in ["-1s", "-0", " -5ms"] {
        let err = parse_duration(bad).unwrap_err();
        assert!(err.contains("is negative"), "{bad}: {err}");
    }
}

#[test]
fn overflow() {
    for bad in [
        "18446744073709551616ms",
        "99999999999999999999h",
        "5124095576030432h",
        "5124095576030431.5h",
    ] {
        let err = parse_duration(bad).unwrap_err();
        assert!(err.contains("too large"), "{bad}: {err}");
    }
    assert_eq!(
        parse_duration("18446744073709551615ms"),
        Ok(Duration::from_millis(u64::MAX))
    );
}

#[test]
fn format_round_trips() {
    for text in [
        "0s", "1ms", "500ms", "1500ms", "10s", "65535s", "15m", "90m", "1h", "48h",
    ] {
        let duration = parse_duration(text).unwrap();
        assert_eq!(format_duration(duration), text);
    }
}
