//! Attacks on the file tracker: sequences of filesystem operations (as
//! logrotate, a careless operator or a hostile local writer would do them)
//! under which a line could be lost, read twice without a restart, read
//! corrupted, or the tracker could hang or grow — written by an outside
//! review of the tracker; each failed first and was fixed, but for the one
//! marked `ignore` (a known limit: copies, never a loss).

use std::os::unix::fs::symlink;

use super::tests::{Dir, MAX_LINE, cycle, texts};
use super::*;
use crate::ingest::cursor::CursorFile;
use crate::ingest::file::cursor::Cursor;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Defects
// ---------------------------------------------------------------------------

/// `start_at = "end"`: the source (mod.rs) saves the cursor only when
/// `commit` says something changed, and a first scan that finds the files
/// and reads nothing changes nothing by that measure. Killed before the
/// first line is committed, the relay starts again as a *first* start, and
/// skips to the end again: the lines written meanwhile are lost.
#[test]
fn start_at_end_saves_the_cursor_before_anything_is_read_so_a_kill_loses_nothing() {
    let dir = Dir::new();
    dir.append("a.log", "old\n");
    let globs = vec![dir.glob("a.log")];
    let mut saved: Option<Cursor> = None;
    let mut files = Files::new(globs.clone(), None, StartAt::End, Duration::ZERO, MAX_LINE);
    // Cycles as FileIngest::cycle runs them: save only if commit says so.
    for _ in 0..3 {
        files.scan();
        let read = files.read(1000, 1 << 20).unwrap();
        assert!(read.lines.is_empty());
        if files.commit(&read.advances) {
            saved = Some(files.cursor());
        }
    }
    // A line is written; the relay is killed while its events are being
    // stored (before the commit).
    dir.append("a.log", "new\n");
    files.scan();
    assert_eq!(texts(&files.read(1000, 1 << 20).unwrap()), ["new"]);
    drop(files);
    let was_saved = saved.is_some();
    let mut again = Files::new(globs, saved, StartAt::End, Duration::ZERO, MAX_LINE);
    assert_eq!(
        cycle(&mut again),
        ["new"],
        "the line written after the start (a cursor was saved: {was_saved})"
    );
}

/// logrotate's `copytruncate` (or `cp`) creates the copy, then fills it:
/// the relay, woken by inotify's IN_CREATE, sees it part-written (shorter
/// than where the live file was read to). It is then taken as a new file
/// from byte 0 and every line already read from the live file is read
/// again, without any crash.
#[test]
fn a_copy_seen_while_being_written_waits_and_is_not_read_again() {
    let dir = Dir::new();
    let lines: Vec<String> = (0..100).map(|n| format!("line-{n:04}")).collect();
    for line in &lines {
        dir.append("a.log", &format!("{line}\n"));
    }
    let mut files = dir.files_with(&["a.log*"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files).len(), 100);
    dir.append("a.log", "last\n");
    // cp has written its first chunk when the relay looks.
    let whole = std::fs::read(dir.path("a.log")).unwrap();
    std::fs::write(dir.path("a.log.1"), &whole[..300]).unwrap();
    let first = cycle(&mut files);
    // cp finishes, logrotate truncates.
    std::fs::write(dir.path("a.log.1"), &whole).unwrap();
    dir.truncate("a.log", 0);
    let mut read = first;
    read.extend(cycle(&mut files));
    read.extend(cycle(&mut files));
    let twice: Vec<&String> = lines.iter().filter(|l| read.contains(l)).collect();
    assert!(
        twice.is_empty(),
        "{} lines read again without a restart (first: {:?})",
        twice.len(),
        twice.first()
    );
    assert_eq!(read.iter().filter(|l| *l == "last").count(), 1);
}

/// Same, with the copy seen while still empty (cp's open(O_CREAT) fires
/// IN_CREATE before any byte is written).
#[test]
fn a_copy_seen_while_still_empty_is_not_read_again() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files_with(&["a.log*"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.append("a.log", "3\n");
    std::fs::File::create(dir.path("a.log.1")).unwrap();
    assert_eq!(cycle(&mut files), ["3"]);
    std::fs::copy(dir.path("a.log"), dir.path("a.log.1")).unwrap();
    dir.truncate("a.log", 0);
    dir.append("a.log", "4\n");
    assert_eq!(
        sorted(cycle(&mut files)),
        ["4"],
        "1, 2 and 3 were read already"
    );
}

/// A ghost (and a live file matched as a copy's origin) carries the offset
/// but not `skipping`: when the original was truncated in the middle of a
/// refused overlong line, the copy is read from inside that line and its
/// tail comes out as a line of its own.
#[test]
fn a_copy_keeps_skipping_the_refused_overlong_line() {
    let dir = Dir::new();
    dir.append("a.log", &format!("ok\n{}", "x".repeat(100)));
    let mut files = dir.files_with(&["a.log*"], None, Duration::ZERO);
    files.scan();
    let read = files.read(1000, 1 << 20).unwrap();
    let kinds: Vec<LineKind> = read.lines.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [LineKind::Whole, LineKind::Overlong]);
    files.commit(&read.advances);
    dir.append("a.log", "yyyyyyyyyy\nnext\n");
    dir.copytruncate("a.log", "a.log.1");
    assert_eq!(
        cycle(&mut files),
        ["next"],
        "yyyyyyyyyy is the end of the refused line, not a line"
    );
}

/// A file moved out of the glob and back (`mv a.log a.log.tmp; mv
/// a.log.tmp a.log`) while quiet is let go at once (it has not grown for
/// `rotate_wait`), its unended last bytes emitted as a line; back in the
/// glob it is a new file: read again whole, and the line it was writing
/// read twice, once cut.
#[test]
fn a_file_moved_out_of_the_glob_and_back_is_read_on_whole() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\npar");
    let mut files = dir.files_with(&["*.log"], None, Duration::from_millis(20));
    assert_eq!(cycle(&mut files), ["1", "2"]);
    std::thread::sleep(Duration::from_millis(30)); // quiet for rotate_wait
    dir.rename("a.log", "a.log.tmp");
    let out = cycle(&mut files);
    dir.rename("a.log.tmp", "a.log");
    dir.append("a.log", "tial\n");
    let back = cycle(&mut files);
    assert_eq!(
        (out, back),
        (vec![], vec!["partial".to_owned()]),
        "the same file, read on from where it was"
    );
}

/// A line of exactly `max_line_bytes` ended by `\r\n` is taken when its
/// end is in the buffer, refused as overlong when the buffer (sized
/// `max_line + 1` once the batch's bytes are nearly used up) ends between
/// its `\r` and `\n`.
#[test]
fn a_crlf_line_of_exactly_max_line_bytes_is_whole_at_a_buffer_edge() {
    let dir = Dir::new();
    let line = "x".repeat(MAX_LINE);
    dir.append("a.log", &format!("{line}\r\nnext\n"));
    let mut roomy = dir.files_with(&["a.log"], None, Duration::ZERO);
    roomy.scan();
    let read = roomy.read(1000, 1 << 20).unwrap();
    assert_eq!(read.lines[0].kind, LineKind::Whole, "taken with room");
    let mut tight = dir.files_with(&["a.log"], None, Duration::ZERO);
    tight.scan();
    // A byte budget nearly used by other files: room is max_line + 1.
    let read = tight.read(1000, 1).unwrap();
    assert_eq!(
        read.lines[0].kind,
        LineKind::Whole,
        "the same line refused at the buffer edge"
    );
}

/// A new file whose first KiB is a known file's (a fixed preamble: a CSV
/// or W3C header block, a banner) is taken for a copy of it and read from
/// that file's position: everything before that position in the new file
/// is lost. A hostile local writer can use it the other way round.
#[test]
fn a_new_file_with_a_known_files_first_kib_is_read_whole() {
    let dir = Dir::new();
    let preamble: String = (0..16)
        .map(|n| format!("#field-{n:02}: {}\n", "-".repeat(52)))
        .collect();
    assert_eq!(preamble.len(), 1024);
    let mut a = preamble.clone();
    let mut b = preamble.clone();
    for n in 0..50 {
        a.push_str(&format!("a-{n:04}\n"));
        b.push_str(&format!("b-{n:04}\n"));
    }
    dir.append("a.log", &a);
    let mut files = dir.files_with(&["*.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files).len(), 66);
    dir.append("b.log", &b);
    let read = cycle(&mut files);
    let lost: Vec<String> = (0..50)
        .map(|n| format!("b-{n:04}"))
        .filter(|l| !read.contains(l))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} lines of b.log: {:?}..",
        lost.len(),
        lost.first()
    );
}

/// Truncated to a size above `HEAD_BYTES` (so the fingerprint still
/// matches) and written past the old position before the next look: not
/// noticed. What was written between the truncation point and the old
/// position is lost, and reading resumes in the middle of a line.
#[test]
fn truncated_above_the_head_and_rewritten_past_the_position_is_read_again() {
    let dir = Dir::new();
    let mut written: Vec<String> = (0..200).map(|n| format!("old-{n:04}")).collect();
    for line in &written {
        dir.append("a.log", &format!("{line}\n"));
    }
    let mut files = dir.files_with(&["a.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files).len(), 200);
    let size = std::fs::metadata(dir.path("a.log")).unwrap().len();
    dir.truncate("a.log", 166 * 9); // at a line end, above HEAD_BYTES
    for n in 0..100 {
        let line = format!("new-line-{n:04}");
        written.push(line.clone());
        dir.append("a.log", &format!("{line}\n"));
    }
    assert!(std::fs::metadata(dir.path("a.log")).unwrap().len() > size);
    let read = cycle(&mut files);
    let invented: Vec<&String> = read.iter().filter(|l| !written.contains(l)).collect();
    let lost: Vec<String> = (0..100)
        .map(|n| format!("new-line-{n:04}"))
        .filter(|l| !read.contains(l))
        .collect();
    assert!(
        invented.is_empty() && lost.is_empty(),
        "read lines nobody wrote: {invented:?}; lost {} new lines, first {:?}",
        lost.len(),
        lost.first()
    );
}

/// Truncated and rewritten between `scan` and `read` (both in the same
/// blocking call in mod.rs, so a narrow window): `read` trusts the
/// scan's size and position and reads the new generation from the old
/// offset, mid-line; the next scan notices the new head and reads it all
/// again.
#[test]
fn truncated_between_scan_and_read_reads_no_cut_line() {
    let dir = Dir::new();
    let mut written = Vec::new();
    for n in 0..10 {
        written.push(format!("old-{n}"));
        dir.append("a.log", &format!("old-{n}\n"));
    }
    let mut files = dir.files_with(&["a.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files).len(), 10);
    for n in 10..13 {
        written.push(format!("old-{n}"));
        dir.append("a.log", &format!("old-{n}\n"));
    }
    files.scan();
    dir.truncate("a.log", 0);
    for n in 0..10 {
        written.push(format!("new-generation-{n}"));
        dir.append("a.log", &format!("new-generation-{n}\n"));
    }
    let read = files.read(1000, 1 << 20).unwrap();
    files.commit(&read.advances);
    let mut all = texts(&read);
    all.extend(cycle(&mut files));
    let invented: Vec<&String> = all.iter().filter(|l| !written.contains(l)).collect();
    assert!(invented.is_empty(), "read lines nobody wrote: {invented:?}");
}

/// More than `GHOSTS` (32) files copytruncated between two looks (one
/// logrotate run over a directory, with `olddir`, so the copies sort
/// after every live file): the first generations' ghosts are evicted in
/// the same scan, before their copies are looked at; those copies are read
/// from byte 0, again.
#[test]
fn more_than_32_copytruncates_in_one_scan_read_no_copy_again() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path("old")).unwrap();
    let mut files = dir.files_with(&["*.log", "old/*"], None, Duration::ZERO);
    for n in 0..40 {
        dir.append(&format!("f{n:02}.log"), &format!("f{n:02}-1\n"));
    }
    assert_eq!(cycle(&mut files).len(), 40);
    for n in 0..40 {
        let name = format!("f{n:02}.log");
        dir.append(&name, &format!("f{n:02}-2\n"));
        dir.copytruncate(&name, &format!("old/{name}.1"));
    }
    let read = cycle(&mut files);
    let again: Vec<&String> = read.iter().filter(|l| l.ends_with("-1")).collect();
    assert!(again.is_empty(), "read again: {again:?}");
    assert_eq!(read.len(), 40);
}

/// Two copies of one generation appear in the same scan (the copy, and an
/// operator's backup of it): the second matches the first, tracked but
/// not yet read, at the ghost's offset: the lines after it are read from
/// both.
#[test]
#[ignore = "known limit: both copies are read past the generation's position (copies, not a loss); see docs/sources.md"]
fn two_copies_of_one_generation_in_one_scan_read_its_new_lines_twice() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files_with(&["a.log*"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.append("a.log", "3\n");
    dir.copytruncate("a.log", "a.log.1");
    std::fs::copy(dir.path("a.log.1"), dir.path("a.log.1.bak")).unwrap();
    assert_eq!(cycle(&mut files), ["3"]);
}

/// A glob that matches the relay's own state (`paths = ["/var/lib/x/**"]`
/// or a data_dir under the log directory): each cycle's save makes a new
/// `cursor.json` (a new inode), which the next cycle reads, commits and
/// saves again: the source never goes idle, and with the default
/// `rotate_wait` every replaced cursor stays tracked, so the cursor grows.
#[test]
fn a_glob_matching_the_relays_data_dir_never_reads_it() {
    let dir = Dir::new();
    dir.append("a.log", "1\n");
    // The relay's data directory, under a glob by mistake: it is never read.
    let data = dir.path("data");
    let mut files = Files::excluding(
        vec![dir.glob("a.log"), dir.glob("data/sources/x/*")],
        None,
        StartAt::Beginning,
        Duration::from_secs(5),
        MAX_LINE,
        Some(&data),
    );
    let cursor = CursorFile::<Cursor>::new(&data.join("sources/x"));
    let mut busy = 0;
    for _ in 0..20 {
        files.scan();
        let read = files.read(1000, 1 << 20).unwrap();
        if files.commit(&read.advances) {
            busy += 1;
            cursor.save(&files.cursor()).unwrap();
        }
    }
    assert!(
        busy <= 2 && files.len() <= 2,
        "{busy} of 20 cycles busy, {} files tracked, cursor {} bytes",
        files.len(),
        std::fs::metadata(cursor.path()).unwrap().len()
    );
}

/// A `**` glob follows symlinked directories: two links to `.` (a hostile
/// local writer's `ln -s . a; ln -s . b`) would make the expansion explore
/// 2^40 paths (until ELOOP). It is refused by the configuration and never
/// expanded: the scan ends.
#[test]
fn a_double_star_glob_is_not_expanded_so_a_symlink_loop_cannot_hang_the_scan() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path("app")).unwrap();
    dir.append("app/a.log", "1\n");
    symlink(".", dir.path("app/x")).unwrap();
    symlink(".", dir.path("app/y")).unwrap();
    let glob = dir.glob("app/**/*.log");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut files = Files::new(
            vec![glob],
            None,
            StartAt::Beginning,
            Duration::ZERO,
            MAX_LINE,
        );
        files.scan();
        let _ = done.send(files.len());
    });
    let tracked = finished.recv_timeout(Duration::from_secs(3));
    assert_eq!(tracked, Ok(0), "the scan did not finish in 3 s");
}

// ---------------------------------------------------------------------------
// Guards (pass: edges that hold)
// ---------------------------------------------------------------------------

/// A file matched under two names (a symlink and its target, or two hard
/// links) is one file: read once; a dangling symlink is no file.
#[test]
fn a_file_under_two_names_is_read_once() {
    let dir = Dir::new();
    dir.append("a.log", "1\n");
    symlink(dir.path("a.log"), dir.path("current.log")).unwrap();
    std::fs::hard_link(dir.path("a.log"), dir.path("b.log")).unwrap();
    symlink(dir.path("nowhere"), dir.path("dangling.log")).unwrap();
    let mut files = dir.files_with(&["*.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files), ["1"]);
    dir.append("a.log", "2\n");
    assert_eq!(cycle(&mut files), ["2"]);
    assert_eq!(files.len(), 1);
}

/// A FIFO or a directory in the glob, or put where a tracked file was
/// (while running or while down), is skipped: never opened (opening a FIFO
/// would block the scan), nothing read, the old file read to its end.
#[test]
fn a_fifo_or_directory_in_place_of_a_file_is_skipped_without_blocking() {
    let dir = Dir::new();
    dir.append("a.log", "1\n");
    dir.append("b.log", "b1\n");
    let mut files = dir.files_with(&["*.log"], None, Duration::ZERO);
    assert_eq!(sorted(cycle(&mut files)), ["1", "b1"]);
    let saved = files.cursor();
    dir.append("a.log", "2\n");
    dir.append("b.log", "b2\n");
    dir.rename("a.log", "a.old");
    dir.rename("b.log", "b.old");
    let fifo = std::ffi::CString::new(dir.path("a.log").to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(dir.path("b.log")).unwrap();
    let mut again = dir.files_with(&["*.log"], Some(saved), Duration::ZERO);
    assert_eq!(sorted(cycle(&mut again)), ["2", "b2"], "after a restart");
    assert_eq!(sorted(cycle(&mut files)), ["2", "b2"], "while running");
    assert_eq!(cycle(&mut files), Vec::<String>::new());
}

/// An overlong line whose newline is the first byte past the buffer, and
/// a line of exactly `max_line_bytes` at the buffer edge, with `max_lines`
/// stopping mid-buffer and a restart while skipping: one refusal, nothing
/// else lost or split.
#[test]
fn line_ends_at_the_buffer_edge_and_max_lines_mid_buffer() {
    let dir = Dir::new();
    let long = "L".repeat(MAX_LINE + 1);
    let exact = "E".repeat(MAX_LINE);
    dir.append("a.log", &format!("{long}\n{exact}\na\nb\nc\n"));
    let mut files = dir.files_with(&["a.log"], None, Duration::ZERO);
    files.scan();
    // Room is max_line + 2: the buffer holds the long line's \n.
    let read = files.read(1000, 1).unwrap();
    assert_eq!(read.lines.len(), 1);
    assert_eq!(read.lines[0].kind, LineKind::Overlong);
    files.commit(&read.advances);
    // A restart keeps the position.
    let mut files = dir.files_with(&["a.log"], Some(files.cursor()), Duration::ZERO);
    files.scan();
    // The buffer is the exact line and its \n.
    let read = files.read(1000, 1).unwrap();
    assert_eq!(texts(&read), std::slice::from_ref(&exact));
    assert_eq!(read.lines[0].kind, LineKind::Whole);
    files.commit(&read.advances);
    files.scan();
    let read = files.read(2, 1 << 20).unwrap();
    assert_eq!(texts(&read), ["a", "b"]);
    files.commit(&read.advances);
    assert_eq!(cycle(&mut files), ["c"]);
}

/// `\r\n` split across two reads (the writer wrote `\r`, then `\n`; or
/// the buffer ended between them): one line, without the `\r`.
#[test]
fn crlf_split_across_reads_is_one_line() {
    let dir = Dir::new();
    dir.append("a.log", "abc\r");
    let mut files = dir.files_with(&["a.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files), Vec::<String>::new());
    dir.append("a.log", "\ndef\r\n");
    assert_eq!(cycle(&mut files), ["abc", "def"]);
}

/// Truncated to exactly the position, then appended to: read on, nothing
/// read twice. Deleted and recreated under the same name (a new inode while
/// the old one is held open): the old file's rest and the new file both
/// read, once.
#[test]
fn truncated_at_the_position_and_recreated_under_the_same_name() {
    let dir = Dir::new();
    dir.append("a.log", "1\n2\n");
    let mut files = dir.files_with(&["a.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files), ["1", "2"]);
    dir.append("a.log", "unread\n");
    dir.truncate("a.log", 4);
    dir.append("a.log", "3\n");
    assert_eq!(cycle(&mut files), ["3"]);
    dir.append("a.log", "4\n");
    std::fs::remove_file(dir.path("a.log")).unwrap();
    dir.append("a.log", "1\n"); // same first bytes, shorter
    // It may be a copy being written, so it waits (a second at least)
    // before it is taken for a new file: late, never lost.
    let mut read = cycle(&mut files);
    assert_eq!(read, ["4"]);
    std::thread::sleep(Duration::from_millis(1100));
    read.extend(cycle(&mut files));
    assert_eq!(read, ["4", "1"]);
    assert_eq!(cycle(&mut files), Vec::<String>::new());
}

/// A file renamed out of the glob while the relay is down, then hard
/// linked elsewhere and its name removed: found by inode in its directory
/// through the remaining link, read on from its position.
#[test]
fn a_file_rotated_out_of_the_glob_while_down_is_found_by_inode() {
    let dir = Dir::new();
    dir.append("a.log", "1\n");
    let mut files = dir.files_with(&["a.log"], None, Duration::ZERO);
    assert_eq!(cycle(&mut files), ["1"]);
    let saved = files.cursor();
    drop(files);
    dir.append("a.log", "2\n");
    dir.rename("a.log", "a.log-20240101");
    std::fs::hard_link(dir.path("a.log-20240101"), dir.path("keep")).unwrap();
    std::fs::remove_file(dir.path("a.log-20240101")).unwrap();
    dir.append("a.log", "3\n");
    let mut again = dir.files_with(&["a.log"], Some(saved), Duration::ZERO);
    assert_eq!(sorted(cycle(&mut again)), ["2", "3"]);
}
