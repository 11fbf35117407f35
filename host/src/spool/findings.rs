//! What recovery found wrong, kept in `spool/findings.ndjson` so that it
//! is not forgotten once the relay has moved on.
//!
//! Opening the spool repairs what it can and delivers the rest; after
//! that, cursors move past a gap and the segments holding damage are
//! deleted, so a later scan would find nothing wrong. Every finding of an
//! open is appended here (once: a finding seen again is not repeated), and
//! `auditrelay spool verify` reports them until an operator who has dealt
//! with them moves the file away. One JSON object per line:
//! `{"found": "<RFC 3339 time>", "finding": "<what>"}`.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One finding, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// When the spool was opened and found it (RFC 3339, UTC).
    pub found: String,
    /// What was found, as the recovery report says it.
    pub finding: String,
}

/// The findings recorded at `path` (none if there is no file); lines that
/// cannot be read are returned as findings saying so.
pub fn read(path: &Path) -> Result<Vec<Finding>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| Finding {
                found: String::new(),
                finding: format!("a line of {} cannot be read: {line:.200}", path.display()),
            })
        })
        .collect())
}

/// Appends each of `findings` not recorded yet, and syncs the file.
pub fn record(path: &Path, findings: &[String]) -> std::io::Result<()> {
    let known = read(path).unwrap_or_default();
    let found = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut lines = Vec::new();
    for finding in findings {
        if !known.iter().any(|k| &k.finding == finding) {
            let line = Finding {
                found: found.clone(),
                finding: finding.clone(),
            };
            lines.extend(serde_json::to_vec(&line).expect("findings serialize"));
            lines.push(b'\n');
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&lines)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_recorded_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("findings.ndjson");
        assert_eq!(read(&path), Ok(Vec::new()));
        record(&path, &["records 5..9 lost".into()]).unwrap();
        record(
            &path,
            &["records 5..9 lost".into(), "bytes 0..32 damaged".into()],
        )
        .unwrap();
        let findings: Vec<String> = read(&path)
            .unwrap()
            .into_iter()
            .map(|f| f.finding)
            .collect();
        assert_eq!(findings, ["records 5..9 lost", "bytes 0..32 damaged"]);
        std::fs::write(&path, b"{\"found\": \n").unwrap();
        assert!(read(&path).unwrap()[0].finding.contains("cannot be read"));
    }
}
