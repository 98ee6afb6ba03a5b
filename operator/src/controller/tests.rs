use super::*;

#[test]
fn retries_back_off_from_five_seconds_to_five_minutes() {
    let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(retry_delay(u32::MAX).as_secs(), 300);
}
