//! Where a source is in what it reads (a file source in its files, a
//! poller in an API), kept in `<data_dir>/sources/<name>/cursor.json` and
//! replaced whole (written beside it, synced, renamed over, the directory
//! synced) only once the events before it are durable in the spool.
//!
//! A cursor that cannot be read is never trusted and never deleted: it is
//! moved aside and the source starts again from its beginning, which makes
//! copies (told apart by `(source, id)`), where skipping would lose.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a source keeps in its cursor file.
pub trait CursorState: Serialize + DeserializeOwned {
    /// The format written; a cursor of another version is not read.
    const VERSION: u32;
}

/// What was found where the cursor is kept.
pub enum Loaded<T> {
    /// No cursor: the source has never read (or its cursor was moved away).
    Fresh,
    /// The cursor.
    Cursor(T),
    /// It could not be read; it was moved aside to `aside` so that the
    /// source starts again from its beginning (copies, never a loss).
    Unreadable {
        /// Why.
        error: String,
        /// Where it is now.
        aside: PathBuf,
    },
}

/// The cursor file of a source whose state lives in `dir`.
pub struct CursorFile<T> {
    path: PathBuf,
    state: PhantomData<fn() -> T>,
}

impl<T> Clone for CursorFile<T> {
    fn clone(&self) -> Self {
        CursorFile {
            path: self.path.clone(),
            state: PhantomData,
        }
    }
}

/// The file's shape: the version beside the state's own fields.
#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u32,
    #[serde(flatten)]
    state: T,
}

/// Only the version, read first so that another version is named as such.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl<T: CursorState> CursorFile<T> {
    /// The cursor in `dir` (`cursor.json`).
    pub fn new(dir: &Path) -> Self {
        CursorFile {
            path: dir.join("cursor.json"),
            state: PhantomData,
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads it. A cursor that cannot be parsed (or is of another version)
    /// is moved aside, never trusted.
    pub fn load(&self) -> std::io::Result<Loaded<T>> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
            Err(error) => return Err(error),
        };
        let error = match serde_json::from_slice::<VersionOnly>(&text) {
            Ok(found) if found.version != T::VERSION => format!(
                "it is of version {}, this relay reads version {}",
                found.version,
                T::VERSION
            ),
            _ => match serde_json::from_slice::<Versioned<T>>(&text) {
                Ok(read) => return Ok(Loaded::Cursor(read.state)),
                Err(error) => error.to_string(),
            },
        };
        let aside = self.path.with_extension(format!(
            "json.unreadable-{}",
            jiff::Timestamp::now().as_second()
        ));
        std::fs::rename(&self.path, &aside)?;
        Ok(Loaded::Unreadable { error, aside })
    }

    /// Replaces it with `state`, durably: after a crash the file is the
    /// old cursor or the new one, whole.
    pub fn save(&self, state: &T) -> std::io::Result<()> {
        let dir = self.path.parent().expect("the cursor is in a directory");
        std::fs::create_dir_all(dir)?;
        let mut text = serde_json::to_vec(&Versioned {
            version: T::VERSION,
            state,
        })
        .expect("a cursor serializes");
        text.push(b'\n');
        crate::spool::files::replace_whole(&self.path, &text, true)
    }
}
