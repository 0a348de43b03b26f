//! The `retry-after` rule of the SDK's `parse_retry_after_value`.

/// What a missing or unusable retry-after becomes (`PROV_GET_THROTTLE_TIME`).
pub const DEFAULT: u32 = 1;
/// The largest accepted value (`MAX_PROV_GET_THROTTLE_TIME`).
pub const MAX: u32 = 5 * 60;

/// Seconds from a `retry-after` value: leading ASCII digits are read; anything that is not a
/// number, is below 1 or is above 300 becomes 1 (not clamped to 300: the SDK's rule).
pub fn parse(value: &str) -> u32 {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return DEFAULT;
    }
    match value[..digits].parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX)).contains(&n) => n as u32,
        _ => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_rule_table() {
        let cases = [
            ("3", 3),
            ("300", 300),
            ("301", 1),
            ("0", 1),
            ("", 1),
            ("-5", 1),
            ("abc", 1),
            ("8xyz", 8),
            ("99999999999999999999999", 1),
            ("Wed, 21 Oct 2015 07:28:00 GMT", 1),
            (" 5", 1),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "retry-after {input:?}");
        }
    }
}
