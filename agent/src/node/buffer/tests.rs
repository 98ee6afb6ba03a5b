use super::*;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    Dir(std::env::temp_dir().join(format!("mcpl-buffer-{name}-{}-{nanos}", std::process::id())))
}

fn config(d: &Dir, max: u64, segment: u64, full: FullPolicy) -> BufferConfig {
    BufferConfig { dir: d.0.clone(), max_bytes: max, segment_bytes: segment, full }
}

fn rec(i: u64) -> Vec<u8> {
    // Fixed width (JSON allows the padding spaces), so sizes are exact.
    format!("{{\"record\":{i:>4},\"body\":\"{}\"}}", "x".repeat(40)).into_bytes()
}

fn append_n(b: &mut DiskBuffer, from: u64, n: u64) {
    for i in from..from + n {
        b.append(&[&rec(i)]).unwrap();
    }
}

fn payloads(entries: &[(u64, Vec<u8>)]) -> Vec<u64> {
    entries
        .iter()
        .map(|(_, p)| {
            let v: serde_json::Value = serde_json::from_slice(p).unwrap();
            v["record"].as_u64().unwrap()
        })
        .collect()
}

fn segments(d: &Dir) -> usize {
    std::fs::read_dir(&d.0).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("seg-")).count()
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn entries_are_read_in_order_and_acked_segments_go() {
    let d = dir("basic");
    let (mut b, rec0) = DiskBuffer::open(config(&d, 1 << 20, 512, FullPolicy::Block)).unwrap();
    assert_eq!(rec0, Recovery::default());
    append_n(&mut b, 0, 30);
    assert!(segments(&d) > 3, "small segments roll");
    let first = b.read(10).unwrap();
    assert_eq!(payloads(&first), (0..10).collect::<Vec<_>>());
    assert_eq!(first[0].0, 0);
    let rest = b.read(100).unwrap();
    assert_eq!(payloads(&rest), (10..30).collect::<Vec<_>>());
    assert_eq!(b.pending(), 30);
    b.ack(30).unwrap();
    assert_eq!(b.pending(), 0);
    assert_eq!(segments(&d), 1, "only the segment being written stays");
    assert!(b.read(10).unwrap().is_empty());
    // Entries appended after everything was acknowledged are read, and only they.
    append_n(&mut b, 30, 2);
    assert_eq!(payloads(&b.read(10).unwrap()), [30, 31]);
    b.rewind().unwrap();
    assert_eq!(payloads(&b.read(10).unwrap()), [30, 31]);
}

#[test]
fn a_failed_export_rewinds_to_the_first_unacknowledged_entry() {
    let d = dir("rewind");
    let (mut b, _) = DiskBuffer::open(config(&d, 1 << 20, 300, FullPolicy::Block)).unwrap();
    append_n(&mut b, 0, 12);
    b.read(5).unwrap();
    b.ack(5).unwrap();
    assert_eq!(payloads(&b.read(4).unwrap()), [5, 6, 7, 8]);
    b.rewind().unwrap();
    assert_eq!(payloads(&b.read(100).unwrap()), (5..12).collect::<Vec<_>>());
}

#[test]
fn reopening_recovers_every_unacknowledged_entry_and_nothing_acknowledged() {
    let d = dir("reopen");
    {
        let (mut b, _) = DiskBuffer::open(config(&d, 1 << 20, 400, FullPolicy::Block)).unwrap();
        append_n(&mut b, 0, 20);
        b.read(7).unwrap();
        b.ack(7).unwrap();
        // Dropped without sync or close, as after SIGKILL (the writes are in the files).
    }
    let (mut b, recovery) = DiskBuffer::open(config(&d, 1 << 20, 400, FullPolicy::Block)).unwrap();
    assert_eq!(recovery, Recovery { pending: 13, torn_bytes: 0, lost: 0 });
    assert_eq!(payloads(&b.read(100).unwrap()), (7..20).collect::<Vec<_>>());
    assert_eq!(b.append(&[&rec(20)]).unwrap(), 20..21, "sequences continue");
    assert_eq!(payloads(&b.read(100).unwrap()), [20]);
}

#[test]
fn a_torn_last_entry_is_cut_off_and_writing_goes_on() {
    let d = dir("torn");
    {
        let (mut b, _) = DiskBuffer::open(config(&d, 1 << 20, 1 << 20, FullPolicy::Block)).unwrap();
        append_n(&mut b, 0, 5);
    }
    let seg = std::fs::read_dir(&d.0)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .unwrap()
        .path();
    // A crash in the middle of writing the sixth entry: its header and half its body.
    let sixth = rec(5);
    let mut torn = (sixth.len() as u32).to_le_bytes().to_vec();
    torn.extend_from_slice(&crc32(&sixth).to_le_bytes());
    torn.extend_from_slice(&sixth[..10]);
    OpenOptions::new().append(true).open(&seg).unwrap().write_all(&torn).unwrap();
    let (mut b, recovery) = DiskBuffer::open(config(&d, 1 << 20, 1 << 20, FullPolicy::Block)).unwrap();
    assert_eq!(recovery, Recovery { pending: 5, torn_bytes: torn.len() as u64, lost: 0 });
    append_n(&mut b, 5, 2);
    assert_eq!(payloads(&b.read(100).unwrap()), (0..7).collect::<Vec<_>>());
}

#[test]
fn damage_inside_an_older_segment_loses_only_that_segments_rest() {
    let d = dir("damage");
    let entry = HEADER + rec(0).len() as u64;
    {
        let (mut b, _) = DiskBuffer::open(config(&d, 1 << 20, entry * 4, FullPolicy::Block)).unwrap();
        append_n(&mut b, 0, 12); // segments of 4 entries: 0-3, 4-7, 8-11
    }
    let first = d.0.join(format!("seg-{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[(entry + HEADER + 3) as usize] ^= 0xff; // the body of entry 1
    std::fs::write(&first, bytes).unwrap();
    let (mut b, recovery) = DiskBuffer::open(config(&d, 1 << 20, entry * 4, FullPolicy::Block)).unwrap();
    assert_eq!(recovery.lost, 1);
    let read = b.read(100).unwrap();
    assert_eq!(payloads(&read), [0, 4, 5, 6, 7, 8, 9, 10, 11], "entry 1 is damaged; 2 and 3 follow it in that segment");
    assert_eq!(read[1].0, 4, "sequences keep their numbers across the gap");
}

#[test]
fn a_full_buffer_blocks_until_acknowledged_or_drops_the_oldest() {
    let d = dir("full-block");
    let entry = HEADER + rec(0).len() as u64;
    let (mut b, _) = DiskBuffer::open(config(&d, entry * 8, entry * 2, FullPolicy::Block)).unwrap();
    append_n(&mut b, 0, 8);
    assert!(matches!(b.append(&[&rec(8)]), Err(AppendError::Full(_))));
    b.read(4).unwrap();
    b.ack(4).unwrap();
    append_n(&mut b, 8, 2);
    assert_eq!(payloads(&b.read(100).unwrap()), (4..10).collect::<Vec<_>>());
    assert_eq!(b.dropped(), 0);

    let d = dir("full-drop");
    let (mut b, _) = DiskBuffer::open(config(&d, entry * 8, entry * 2, FullPolicy::DropOldest)).unwrap();
    append_n(&mut b, 0, 12);
    assert!(b.bytes() <= entry * 8);
    assert_eq!(b.dropped(), 4, "the two oldest segments went");
    assert_eq!(payloads(&b.read(100).unwrap()), (4..12).collect::<Vec<_>>());
    assert!(matches!(b.append(&[&vec![0u8; MAX_ENTRY + 1]]), Err(AppendError::TooLarge(_))));
}

#[test]
fn a_read_stops_at_its_byte_budget_but_always_returns_an_entry() {
    let d = dir("budget");
    let (mut b, _) = DiskBuffer::open(config(&d, 1 << 20, 512, FullPolicy::Block)).unwrap();
    append_n(&mut b, 0, 10);
    let size = rec(0).len();
    // Stops once the entries read reach the budget: 2.5 entries' worth gives three.
    assert_eq!(payloads(&b.read_up_to(100, size * 5 / 2).unwrap()), [0, 1, 2]);
    // A budget smaller than one entry still makes progress.
    assert_eq!(payloads(&b.read_up_to(100, 1).unwrap()), [3]);
    // The count limit still applies.
    assert_eq!(payloads(&b.read_up_to(2, usize::MAX).unwrap()), [4, 5]);
    assert_eq!(payloads(&b.read_up_to(100, usize::MAX).unwrap()), [6, 7, 8, 9]);
}
