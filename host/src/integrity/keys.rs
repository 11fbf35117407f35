//! Signing-key files: one line, `PRIVATE+KEY+<name>+<id>+<key>` (the C2SP
//! signed-note signer key format), readable by its owner only.
//!
//! The key itself never appears in an error, a log line or a `Debug`
//! output; only its name and id do, which is also what names it in every
//! signature ([`super::note`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::note::SigningKey;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file holds no signing key (the reason, never its text).
    #[error("{path}: {reason} (make one with `auditrelay keys generate`)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Others may read the file: a key they could copy signs as the relay.
    #[error("{path}: others may read this signing key (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Checks a log name: it names keys and begins checkpoint origins, so it
/// may hold no space or `+`.
pub fn check_log_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(format!(
            "{name:?} cannot name a log: it must be non-empty, without spaces or '+' (e.g. \"audit.example.com/relay\")"
        ));
    }
    Ok(())
}

/// Reads the signing key in `path`.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let _ = metadata;
    let text = std::fs::read_to_string(path).map_err(io)?;
    SigningKey::parse(&text).map_err(|error| KeyError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Writes a new key named `name` to `path`, which must not exist (a key
/// is never overwritten: checkpoints signed with it would be orphaned).
pub fn generate(path: &Path, name: &str) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate(name).map_err(|error| KeyError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(format!("{}\n", key.to_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(key)
}

/// The key in `path`, made (named `name`) if there is no file yet.
pub fn load_or_generate(path: &Path, name: &str) -> Result<(SigningKey, bool), KeyError> {
    match load(path) {
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            generate(path, name).map(|key| (key, true))
        }
        loaded => loaded.map(|key| (key, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_back_and_no_error_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        let (key, made) = load_or_generate(&path, "audit.example/relay").unwrap();
        assert!(made);
        let secret = key.to_text();
        let (again, made) = load_or_generate(&path, "ignored").unwrap();
        assert!(!made);
        assert_eq!(again.verifier(), key.verifier());
        assert!(!format!("{again:?}").contains(&secret[20..]));
        // Never overwritten.
        assert!(matches!(generate(&path, "x"), Err(KeyError::Io { .. })));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = load(&path).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // A damaged key is refused without quoting it.
        let damaged = secret.replace("PRIVATE+KEY+", "PRIVATE+KEY+x");
        std::fs::write(&path, &damaged).unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(!error.contains(&damaged[30..]), "{error}");
        assert!(error.contains("auditrelay keys generate"), "{error}");
    }

    #[test]
    fn log_names_without_spaces_or_plus() {
        assert!(check_log_name("audit.example.com/relay").is_ok());
        for bad in ["", "a b", "a+b", "a\nb"] {
            assert!(check_log_name(bad).is_err(), "{bad:?}");
        }
    }
}
