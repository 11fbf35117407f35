//! A disk cache of compiled plugins.
//!
//! Compiling a component takes 50 ms to 1 s; loading a compiled one takes
//! about 0.1 ms. Entries are named by the SHA-256 of the `.wasm` and a hash
//! of the engine's compile settings (wasmtime version, target, flags), so a
//! changed plugin or a new relay build never loads a stale entry. Entries
//! are written to a temporary file and renamed into place; an existing
//! entry is never rewritten, because another relay may have it mapped.
//!
//! Compiled entries are native code that the relay trusts: the cache
//! directory is created private to the relay's user (mode 0700). Anyone who
//! can write into it can run code as the relay.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled now (and stored, if the cache is writable).
    Compiled,
}

/// The cache; `None` directory means compile every time.
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        if let Some(dir) = &dir
            && let Err(error) = create_private_dir(dir)
        {
            tracing::warn!(
                dir = %dir.display(),
                %error,
                "cannot create the compiled-plugin cache; plugins will be compiled at every start"
            );
        }
        ComponentCache { dir, engine_key }
    }

    fn entry(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// Whether a compiled component for the `.wasm` with this SHA-256 is
    /// stored.
    pub fn contains(&self, sha256: &str) -> bool {
        self.entry(sha256).is_some_and(|path| path.exists())
    }

    /// The compiled component for `wasm` (whose SHA-256 is `sha256`).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(sha256);
        if let Some(path) = &entry
            && path.exists()
        {
            // SAFETY: entries are written only by this cache, into a
            // directory private to the relay's user, and named by content
            // and engine settings; wasmtime checks the header and settings.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => {
                    tracing::warn!(
                        entry = %path.display(),
                        %error,
                        "unusable compiled-plugin cache entry; recompiling"
                    );
                    // Unlinking is safe even if another process maps it.
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = &entry
            && let Err(error) = store(path, &component)
        {
            tracing::warn!(entry = %path.display(), %error, "could not cache a compiled plugin");
        }
        Ok((component, CacheOutcome::Compiled))
    }
}

fn store(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        if path.exists() {
            // Someone else stored it meanwhile; theirs may be mapped already.
            return Ok(());
        }
        std::fs::rename(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Feeds `Hash` output into SHA-256, for a key that is stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
    }
}
