//! `retry-after` values (the SDK's rule): any text gives 1..=300, and a plain number in range is
//! read as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prov_mqtt_transport::dps::retry_after;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let secs = retry_after::parse(&text);
    assert!((1..=retry_after::MAX).contains(&secs), "{text:?} -> {secs}");
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.parse::<u64>() {
        Ok(n) if (1..=300).contains(&n) => assert_eq!(u64::from(secs), n, "{text:?}"),
        _ => assert_eq!(secs, retry_after::DEFAULT, "{text:?}"),
    }
});
