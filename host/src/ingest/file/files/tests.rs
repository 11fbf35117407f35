//! The file tracker on a real directory: rotation both ways, truncation,
//! restarts from a saved cursor, long and partial lines, and a property
//! test of random writers, rotations, failed cycles and restarts in which
//! no line may be lost.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;

use proptest::prelude::*;

use super::*;

/// The longest line the tests' sources take.
pub(super) const MAX_LINE: usize = 64;

/// A directory with a log file in it, and a way to read it as a source
/// would.
pub(super) struct Dir {
    pub(super) dir: tempfile::TempDir,
}

impl Dir {
    pub(super) fn new() -> Self {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(super) fn glob(&self, glob: &str) -> String {
        self.path(glob).to_string_lossy().into_owned()
    }

    pub(super) fn append(&self, name: &str, text: &str) {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn files(&self, glob: &str, cursor: Option<Cursor>) -> Files {
        self.files_with(&[glob], cursor, Duration::ZERO)
    }

    pub(super) fn files_with(
        &self,
        globs: &[&str],
        cursor: Option<Cursor>,
        rotate_wait: Duration,
    ) -> Files {
        Files::new(
            globs.iter().map(|g| self.glob(g)).collect(),
            cursor,
            StartAt::Beginning,
            rotate_wait,
            MAX_LINE,
        )
    }

    pub(super) fn rename(&self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to)).unwrap();
    }

    pub(super) fn truncate(&self, name: &str, len: u64) {
        OpenOptions::new()
            .write(true)
            .open(self.path(name))
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    /// What logrotate's `copytruncate` does.
    pub(super) fn copytruncate(&self, from: &str, to: &str) {
        std::fs::copy(self.path(from), self.path(to)).unwrap();
        self.truncate(from, 0);
    }
}

/// One cycle that succeeds: scan, read, commit; the lines' text.
pub(super) fn cycle(files: &mut Files) -> Vec<String> {
    files.scan();
    let read = files.read(1000, 1 << 20).unwrap();
    files.commit(&read.advances);
    texts(&read)
}

pub(super) fn texts(read: &Read) -> Vec<String> {
    read.lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.data).into_owned())
        .collect()
}

#[test]
fn whole_lines_are_read_and_a_partial_last_line_waits_for_its_end() {
    let dir = Dir::new();
    dir.append("a.log", "one\r\n\n  \ntwo\nthr");
    let mut files = dir.files("a.log", None);
    assert_eq!(cycle(&mut files), ["one", "two"]);
    assert_eq!(cycle(&mut files), Vec::<String>::new());
    dir.append("a.log", "ee\n");
    assert_eq!(cycle(&mut files), ["three"]);
    let read = {
        dir.append("a.log", "four\n");
        files.scan();
        files.read(10, 1 << 20).unwrap()
    };
    assert_eq!(read.lines[0].offset, 19, "a line says where it begins");
    assert_eq!(read.lines[0].path, dir.path("a.log"));
}

/// Until committed, the same lines are read again: a cycle whose events
/// did not become durable loses nothing.
#[test]
fn positions_move_only_when_committed() {
    let dir = Dir::new();
    dir.append("a.log", "one\ntwo\nthree\n");
    let mut files = dir.files("a.log", None);
    files.scan();
    let first = files.read(2, 1 << 20).unwrap();
    assert_eq!(texts(&first), ["one", "two"]);
    files.scan();
    assert_eq!(texts(&files.read(2, 1 << 20).unwrap()), ["one", "two"]);
    files.commit(&first.advances);
    assert_eq!(cycle(&mut files), ["three"]);
}

#[test]
fn a_file_renamed_away_is_read_to_its_end_before_the_new_one() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files("a.log", None);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.append("a.log", "3\n");
    dir.rename("a.log", "a.log.1");
    // The writer appends to the renamed file until it reopens.
    dir.append("a.log.1", "4\n");
    dir.append("a.log", "5\n");
    assert_eq!(cycle(&mut files), ["3", "4", "5"]);
    assert_eq!(
        files.len(),
        1,
        "the renamed file, read and idle, was let go"
    );
}

/// A `copytruncate` copy begins as the generation it copies did: it is
/// read from where that generation was left, so its lines are neither
/// lost nor read twice — matched by the glob, or, with only the live name
/// in `paths`, found beside the live file.
#[test]
fn a_copytruncate_copy_is_read_from_where_the_original_was_left() {
    for (glob, tracked_after) in [("a.log*", 2), ("a.log", 1)] {
        let dir = Dir::new();
        dir.append("a.log", "1\n2\n");
        let mut files = dir.files(glob, None);
        assert_eq!(cycle(&mut files), ["1", "2"]);
        dir.append("a.log", "3\n4\n");
        dir.copytruncate("a.log", "a.log.1");
        dir.append("a.log", "5\n");
        let mut read = cycle(&mut files);
        read.sort();
        assert_eq!(read, ["3", "4", "5"], "{glob}");
        assert_eq!(cycle(&mut files), Vec::<String>::new(), "{glob}");
        // Unmatched, read and idle, the copy is let go.
        assert_eq!(files.len(), tracked_after, "{glob}");
    }
}

/// The copy can be seen before the truncation (a scan between logrotate's
/// copy and its truncate): it is a copy of the live file then.
#[test]
fn a_copy_seen_before_the_truncation_starts_where_the_live_file_was() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files("a.log*", None);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.append("a.log", "3\n");
    std::fs::copy(dir.path("a.log"), dir.path("a.log.1")).unwrap();
    let mut read = cycle(&mut files);
    read.sort();
    assert_eq!(
        read,
        ["3", "3"],
        "the live file and its copy both hold 3 now"
    );
    OpenOptions::new()
        .write(true)
        .open(dir.path("a.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    dir.append("a.log", "4\n");
    assert_eq!(cycle(&mut files), ["4"]);
}

#[test]
fn a_file_truncated_in_place_is_read_again_from_its_beginning() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files("a.log", None);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.copytruncate("a.log", "elsewhere");
    dir.append("a.log", "3\n");
    files.scan();
    assert_eq!(cycle(&mut files), ["3"]);
    // Rewritten past the old position before the relay looked: its first
    // bytes tell.
    dir.copytruncate("a.log", "elsewhere");
    dir.append("a.log", "four-four\n");
    assert_eq!(cycle(&mut files), ["four-four"]);
}

fn restart(files: &Files, dir: &Dir, glob: &str) -> Files {
    let cursor = serde_json::from_value(serde_json::to_value(files.cursor()).unwrap()).unwrap();
    dir.files(glob, Some(cursor))
}

/// A restart reads on from the saved positions, finds a file renamed while
/// the relay was down by its inode, and tells a new file that took the
/// old inode from the old one by its first bytes.
#[test]
fn a_restart_reads_on_follows_renames_and_tells_reused_inodes() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files("a.log", None);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.append("a.log", "3\n");
    let mut again = restart(&files, &dir, "a.log");
    assert_eq!(cycle(&mut again), ["3"]);

    // Down: the file is rotated away by rename, a new one created.
    dir.append("a.log", "4\n");
    dir.rename("a.log", "a.log.1");
    dir.append("a.log", "5\n");
    let mut again = restart(&again, &dir, "a.log");
    assert_eq!(cycle(&mut again), ["4", "5"]);

    // Down: the file is replaced by another of the same size or more.
    std::fs::remove_file(dir.path("a.log")).unwrap();
    dir.append("a.log", "six-six-six\n");
    let mut again = restart(&again, &dir, "a.log");
    assert_eq!(cycle(&mut again), ["six-six-six"]);
}

/// With the rotated names in the glob, two rotations while the relay was
/// down lose nothing and read nothing twice.
#[test]
fn two_rotations_while_down_lose_nothing_when_the_glob_holds_the_rotated_names() {
    let dir = Dir::new();
    dir.append("a.log", "1\n");
    let mut files = dir.files("a.log*", None);
    assert_eq!(cycle(&mut files), ["1"]);
    dir.append("a.log", "2\n");
    dir.rename("a.log", "a.log.1");
    dir.append("a.log", "3\n");
    dir.rename("a.log.1", "a.log.2");
    dir.rename("a.log", "a.log.1");
    dir.append("a.log", "4\n");
    let mut again = restart(&files, &dir, "a.log*");
    let mut read = cycle(&mut again);
    read.sort();
    assert_eq!(read, ["2", "3", "4"]);
}

#[test]
fn an_overlong_line_is_refused_once_and_skipped_to_its_end() {
    let dir = Dir::new();
    let long = "x".repeat(200);
    dir.append("a.log", &format!("ok\n{long}\nafter\n"));
    let mut files = dir.files("a.log", None);
    files.scan();
    let read = files.read(10, 1 << 20).unwrap();
    let kinds: Vec<LineKind> = read.lines.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [LineKind::Whole, LineKind::Overlong, LineKind::Whole]
    );
    files.commit(&read.advances);

    // Without its end in sight: refused at once, then skipped as it grows.
    dir.append("a.log", &"y".repeat(100));
    files.scan();
    let read = files.read(10, 1 << 20).unwrap();
    assert_eq!(read.lines.len(), 1);
    assert_eq!(read.lines[0].kind, LineKind::Overlong);
    files.commit(&read.advances);
    dir.append("a.log", &format!("{}\nnext\n", "y".repeat(500)));
    assert_eq!(cycle(&mut files), ["next"]);
}

#[test]
fn start_at_end_skips_what_the_first_start_finds_only() {
    let dir = Dir::new();
    dir.append("a.log", "old\n");
    let mut files = Files::new(
        vec![dir.path("*.log").to_string_lossy().into_owned()],
        None,
        StartAt::End,
        Duration::ZERO,
        64,
    );
    assert_eq!(cycle(&mut files), Vec::<String>::new());
    dir.append("a.log", "new\n");
    dir.append("b.log", "all of b\n");
    let mut read = cycle(&mut files);
    read.sort();
    assert_eq!(read, ["all of b", "new"]);
}

/// The bytes a file ends with, never ended by a newline, are a line once
/// the file is let go of (rotated away and done growing).
#[test]
fn the_unended_last_line_of_a_rotated_file_is_read_when_it_is_let_go() {
    let dir = Dir::new();
    dir.append("a.log", "1\npart");
    let mut files = dir.files("a.log", None);
    assert_eq!(cycle(&mut files), ["1"]);
    dir.rename("a.log", "a.log.1");
    files.scan();
    let read = files.read(10, 1 << 20).unwrap();
    assert_eq!(texts(&read), ["part"]);
    assert_eq!(read.lines[0].kind, LineKind::Unterminated);
    files.commit(&read.advances);
    assert_eq!(files.len(), 0);
}

/// What a random day does to a file source.
#[derive(Debug, Clone)]
enum Step {
    /// The writer appends lines, the last one perhaps in two parts.
    Write { lines: u8, split: bool },
    /// logrotate with `create`.
    RenameRotate,
    /// logrotate with `copytruncate`.
    CopyTruncate,
    /// A cycle whose events become durable, reading at most this many.
    Cycle { lines: u8 },
    /// A cycle whose events do not (the spool refused them).
    FailedCycle,
    /// The relay is killed and starts from its saved cursor.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..20, any::<bool>()).prop_map(|(lines, split)| Step::Write { lines, split }),
        1 => Just(Step::RenameRotate),
        1 => Just(Step::CopyTruncate),
        4 => (1u8..30).prop_map(|lines| Step::Cycle { lines }),
        1 => Just(Step::FailedCycle),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the writer, logrotate and the relay do, in any order, every
    /// line written is read: with the rotated names in the glob, rotation
    /// by rename or copy, failed cycles and restarts lose none. Only a
    /// restart may read a line again (its cycle's save did not happen).
    #[test]
    fn no_line_is_lost_whatever_the_rotation_and_the_crashes(steps in prop::collection::vec(step(), 1..60)) {
        let dir = Dir::new();
        let glob = "a.log*";
        let mut files = dir.files(glob, None);
        let mut saved = files.cursor();
        let mut written = 0u32;
        let mut pending_part: Option<String> = None;
        let mut rotations = 0u32;
        let mut read: BTreeMap<String, u32> = BTreeMap::new();
        let mut restarts = 0u32;
        let take = |files: &mut Files, saved: &mut Cursor, max: usize, read: &mut BTreeMap<String, u32>| {
            files.scan();
            let got = files.read(max, 1 << 20).unwrap();
            for line in texts(&got) {
                *read.entry(line).or_default() += 1;
            }
            files.commit(&got.advances);
            *saved = files.cursor();
        };
        for step in steps {
            match step {
                Step::Write { lines, split } => {
                    if let Some(rest) = pending_part.take() {
                        dir.append("a.log", &rest);
                    }
                    for _ in 0..lines {
                        written += 1;
                        dir.append("a.log", &format!("line-{written:06}\n"));
                    }
                    if split {
                        written += 1;
                        let line = format!("line-{written:06}\n");
                        dir.append("a.log", &line[..4]);
                        pending_part = Some(line[4..].to_owned());
                    }
                }
                Step::RenameRotate | Step::CopyTruncate => {
                    // logrotate rotates whole lines: a writer's partial
                    // line is finished first.
                    if let Some(rest) = pending_part.take() {
                        dir.append("a.log", &rest);
                    }
                    rotations += 1;
                    let to = format!("a.log.{rotations}");
                    if !dir.path("a.log").exists() {
                        continue;
                    }
                    if matches!(step, Step::RenameRotate) {
                        dir.rename("a.log", &to);
                        dir.append("a.log", "");
                    } else {
                        dir.copytruncate("a.log", &to);
                    }
                }
                Step::Cycle { lines } => take(&mut files, &mut saved, lines as usize, &mut read),
                Step::FailedCycle => {
                    files.scan();
                    let _ = files.read(1000, 1 << 20).unwrap();
                }
                Step::Restart => {
                    restarts += 1;
                    files = dir.files(glob, Some(saved.clone()));
                }
            }
        }
        if let Some(rest) = pending_part.take() {
            dir.append("a.log", &rest);
        }
        for _ in 0..20 {
            take(&mut files, &mut saved, 1000, &mut read);
        }
        let lost: Vec<String> = (1..=written)
            .map(|n| format!("line-{n:06}"))
            .filter(|line| !read.contains_key(line))
            .collect();
        prop_assert!(lost.is_empty(), "lost {lost:?}");
        prop_assert_eq!(read.len() as u32, written, "lines read that nobody wrote");
        if restarts == 0 {
            let twice: Vec<_> = read.iter().filter(|(_, n)| **n > 1).collect();
            prop_assert!(twice.is_empty(), "read twice without a restart: {:?}", twice);
        }
    }
}
