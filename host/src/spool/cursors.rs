//! Where each plugin instance is in the spool, kept across restarts.
//!
//! One file, `cursors.json`, maps instance names to the sequence number
//! each reads next. It is replaced atomically (write, sync, rename). A
//! cursor may be a little behind after a crash (it is saved every 100 ms,
//! after each acknowledged batch), which means redelivery — duplicates,
//! never loss. An unreadable file is reported and its cursors are treated
//! as unknown (instances start from the earliest record still spooled).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct CursorFile {
    version: u32,
    cursors: BTreeMap<String, u64>,
}

/// Reads the cursors; a missing file is empty, an unreadable one is empty
/// with a warning explaining what happens next.
pub fn load(path: &Path) -> (BTreeMap<String, u64>, Option<String>) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (BTreeMap::new(), None),
        Err(e) => {
            return (
                BTreeMap::new(),
                Some(format!("cannot read {}: {e}", path.display())),
            );
        }
    };
    match serde_json::from_slice::<CursorFile>(&bytes) {
        Ok(file) if file.version == 1 => (file.cursors, None),
        Ok(file) => (
            BTreeMap::new(),
            Some(format!(
                "{} has unknown version {}",
                path.display(),
                file.version
            )),
        ),
        Err(e) => (
            BTreeMap::new(),
            Some(format!("{} is damaged: {e}", path.display())),
        ),
    }
}

/// Replaces the cursors file atomically; `sync` makes it survive power loss.
pub fn store(path: &Path, cursors: &BTreeMap<String, u64>, sync: bool) -> std::io::Result<()> {
    let file = CursorFile {
        version: 1,
        cursors: cursors.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).expect("cursors serialize");
    super::files::replace_whole(path, &json, sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_a_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursors.json");
        assert_eq!(load(&path), (BTreeMap::new(), None));
        let cursors = BTreeMap::from([("file".to_owned(), 42), ("hec".to_owned(), 7)]);
        store(&path, &cursors, true).unwrap();
        assert_eq!(load(&path).0, cursors);
        std::fs::write(&path, b"{\"version\": 1, \"cursors\": {\"file\": ").unwrap();
        let (loaded, warning) = load(&path);
        assert!(loaded.is_empty());
        assert!(warning.unwrap().contains("damaged"));
    }
}
