//! Real CRI-format files on disk: partial lines, a trailing fragment, rotation (rename and
//! a new file, with a late write to the old one), copy-truncate, and restarts that must
//! neither skip nor repeat.

use std::io::Write;

use super::*;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn root(name: &str) -> Dir {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("mcpl-tail-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("tools_github-7f9c_0b5e-uid/server")).unwrap();
    Dir(dir)
}

fn log_path(root: &Dir) -> PathBuf {
    root.0.join("tools_github-7f9c_0b5e-uid/server/0.log")
}

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
    }
}

fn full(n: u32) -> String {
    format!("2026-11-24T10:00:{:02}.000000001Z stdout F line {n}\n", n % 60)
}

fn texts(lines: &[Tailed]) -> Vec<String> {
    lines.iter().map(|t| t.line.content.clone()).collect()
}

#[test]
fn lines_come_with_their_pod_and_partials_joined() {
    let root = root("basic");
    let path = log_path(&root);
    append(
        &path,
        &[&full(1), "2026-11-24T10:00:02Z stderr P {\"msg\":", "\n", "2026-11-24T10:00:03Z stderr F \"joined\"}\n"],
    );
    append(&path, &["2026-11-24T10:00:04Z stdout F frag"]);
    let mut t = Tailer::new(&root.0, BTreeMap::new());
    let lines = t.poll().unwrap();
    assert_eq!(texts(&lines), ["line 1", "{\"msg\":\"joined\"}"]);
    assert_eq!(
        lines[0].source,
        Source {
            namespace: "tools".into(),
            pod: "github-7f9c".into(),
            uid: "0b5e-uid".into(),
            container: "server".into()
        }
    );
    assert_eq!(lines[1].line.stream, cri::Stream::Stderr);
    // The fragment without its line break is read once it is complete.
    append(&path, &["ment\n"]);
    assert_eq!(texts(&t.poll().unwrap()), ["fragment"]);
    assert!(t.poll().unwrap().is_empty());
}

#[test]
fn rotation_drains_the_old_file_then_reads_the_new_one() {
    let root = root("rotate");
    let path = log_path(&root);
    append(&path, &[&full(1), &full(2)]);
    let mut t = Tailer::new(&root.0, BTreeMap::new());
    assert_eq!(texts(&t.poll().unwrap()), ["line 1", "line 2"]);
    append(&path, &[&full(3)]);
    std::fs::rename(&path, path.with_extension("log.20261124-100000")).unwrap();
    // The runtime writes once more to its open handle before reopening.
    append(&path.with_extension("log.20261124-100000"), &[&full(4)]);
    append(&path, &[&full(5)]);
    assert_eq!(texts(&t.poll().unwrap()), ["line 3", "line 4", "line 5"]);
    assert_eq!(t.counts().rotations, 1);
    append(&path, &[&full(6)]);
    assert_eq!(texts(&t.poll().unwrap()), ["line 6"]);
}

#[test]
fn copy_truncate_starts_the_file_over() {
    let root = root("truncate");
    let path = log_path(&root);
    append(&path, &[&full(1), &full(2), &full(3)]);
    let mut t = Tailer::new(&root.0, BTreeMap::new());
    assert_eq!(t.poll().unwrap().len(), 3);
    std::fs::copy(&path, path.with_extension("log.1")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    append(&path, &[&full(4)]);
    assert_eq!(texts(&t.poll().unwrap()), ["line 4"]);
    assert_eq!(t.counts().truncations, 1);
}

#[test]
fn a_restart_neither_skips_nor_repeats() {
    let root = root("restart");
    let path = log_path(&root);
    append(&path, &[&full(1), &full(2), "2026-11-24T10:00:03Z stdout P half "]);
    append(&path, &["\n"]);
    let mut t = Tailer::new(&root.0, BTreeMap::new());
    assert_eq!(texts(&t.poll().unwrap()), ["line 1", "line 2"]);
    let saved = t.positions();
    drop(t);
    // While down: the partial line ends and more lines come.
    append(&path, &["2026-11-24T10:00:04Z stdout F and half\n", &full(5)]);
    let mut t = Tailer::new(&root.0, saved);
    assert_eq!(texts(&t.poll().unwrap()), ["half and half", "line 5"]);
    let saved = t.positions();
    drop(t);
    let mut t = Tailer::new(&root.0, saved);
    assert!(t.poll().unwrap().is_empty(), "nothing is repeated");
}

#[test]
fn a_restart_across_a_rotation_finishes_the_old_file_first() {
    let root = root("restart-rotate");
    let path = log_path(&root);
    append(&path, &[&full(1)]);
    let mut t = Tailer::new(&root.0, BTreeMap::new());
    assert_eq!(texts(&t.poll().unwrap()), ["line 1"]);
    let saved = t.positions();
    drop(t);
    append(&path, &[&full(2)]);
    std::fs::rename(&path, path.with_extension("log.20261124-100000")).unwrap();
    append(&path, &[&full(3)]);
    let mut t = Tailer::new(&root.0, saved);
    assert_eq!(texts(&t.poll().unwrap()), ["line 2", "line 3"]);

    // And a restart while the rotated file is still being drained resumes it too.
    append(&path.with_extension("log.20261124-100000"), &[&full(4)]);
    let saved = t.positions();
    drop(t);
    let mut t = Tailer::new(&root.0, saved);
    assert_eq!(texts(&t.poll().unwrap()), ["line 4"]);
}

#[test]
fn malformed_lines_are_counted_and_filtered_containers_ignored() {
    let root = root("filter");
    let path = log_path(&root);
    append(&path, &["not a cri line\n", &full(1)]);
    std::fs::create_dir_all(root.0.join("tools_web-1_u2/nginx")).unwrap();
    append(&root.0.join("tools_web-1_u2/nginx/0.log"), &[&full(9)]);
    let mut t = Tailer::new(&root.0, BTreeMap::new()).with_filter(|s| s.container == "server");
    assert_eq!(texts(&t.poll().unwrap()), ["line 1"]);
    assert_eq!(t.counts().malformed, 1);
    assert_eq!(Source::from_path(&root.0, &root.0.join("x/0.log")), None);
    assert_eq!(Source::from_path(&root.0, &root.0.join("a_b_c/d/0.log.gz")), None);
}
