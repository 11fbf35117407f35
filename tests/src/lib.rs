//! Support for auditrelay's end-to-end tests: real plugins in temporary
//! plugin directories, configs built from TOML, captured structured logs,
//! and readers for what plugins wrote.
//!
//! The `.wasm` files come from `scripts/build-plugins` (run by
//! `scripts/test`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use auditrelay::Config;
use tempfile::TempDir;

pub use auditrelay_plugin_api::testing::sample_envelope;

/// The workspace's `target` directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// A built plugin (`file`, `blackhole`, ...) or test fixture (`faulty`).
pub fn plugin_wasm(name: &str) -> PathBuf {
    let target = target_dir();
    let candidates = [
        target.join("plugins").join(format!("{name}.wasm")),
        target.join("test-plugins").join(format!("{name}.wasm")),
    ];
    candidates
        .iter()
        .find(|path| path.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!("{name}.wasm is not built: run scripts/build-plugins (scripts/test does) first")
        })
}

/// The `auditrelay` binary that `cargo test` built next to the tests.
pub fn relay_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let binary = dir.join(format!("auditrelay{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is not built: run `cargo build -p auditrelay`",
        binary.display()
    );
    binary
}

/// A temporary relay home: a plugin directory holding the named plugins,
/// and a data directory.
pub struct Home {
    dir: TempDir,
}

impl Home {
    /// A home whose plugin directory holds copies of the named plugins.
    pub fn with_plugins(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        for name in names {
            std::fs::copy(
                plugin_wasm(name),
                dir.path().join("plugins").join(format!("{name}.wasm")),
            )
            .expect("copying a plugin");
        }
        Home { dir }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plugin directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// A directory under the home (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// A config from `toml_text` (the `[plugins.*]` tables and any other
    /// settings), on top of defaults that point `[relay]` at this home and
    /// the shared compiled-plugin cache and put HTTP ingest on a free
    /// loopback port. `{home}` in the text is replaced by the home's path.
    pub fn config(&self, toml_text: &str) -> Config {
        let text = self.config_text(toml_text);
        Config::parse(&text, "test.toml", &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"))
    }

    /// [`config`](Self::config)'s text, written to `<home>/relay.toml`.
    pub fn config_file(&self, toml_text: &str) -> PathBuf {
        let path = self.join("relay.toml");
        std::fs::write(&path, self.config_text(toml_text)).expect("writing relay.toml");
        path
    }

    fn config_text(&self, toml_text: &str) -> String {
        let defaults = format!(
            "[relay]\nplugin_dir = {:?}\ndata_dir = {:?}\ncache_dir = {:?}\nshutdown_timeout = \"20s\"\n\n[ingest.http]\nlisten = \"127.0.0.1:0\"\n",
            self.plugin_dir(),
            self.join("data"),
            target_dir().join("test-cache"),
        );
        let mut merged: toml::Table = defaults.parse().expect("the defaults are valid TOML");
        let text = toml_text.replace("{home}", &self.path().display().to_string());
        let overrides: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("test config is not TOML: {e}\n{text}"));
        merge(&mut merged, overrides);
        toml::to_string(&merged).expect("a table serializes")
    }
}

/// Deep-merges `overrides` into `base`.
fn merge(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(value)) => merge(base, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Every line of every `.ndjson` file in `dir`, files in name order.
pub fn ndjson_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Vec::new(),
    };
    files.retain(|f| f.extension().is_some_and(|e| e == "ndjson"));
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            std::fs::read(file)
                .unwrap()
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Structured log events captured from every thread of this process.
#[derive(Clone)]
pub struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing logs (once per process) and returns the capture.
/// Call it before starting a relay: nothing logged earlier is kept. Tests
/// tell their events apart by plugin instance names.
pub fn logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("info")
            .with_writer(move || BufferWriter(writer.clone()))
            .init();
        Logs { buffer }
    })
    .clone()
}

impl Logs {
    /// Every event so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.buffer.lock().unwrap().clone();
        bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect()
    }

    /// Events logged with `plugin = <instance>`.
    pub fn of_plugin(&self, instance: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["plugin"] == instance)
            .collect()
    }

    /// Waits until an event of `instance` satisfies `matches`.
    pub fn wait_for(
        &self,
        instance: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.of_plugin(instance).into_iter().find(|e| matches(e)) {
                return Some(event);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A real HTTP server on 127.0.0.1 that answers `200 ok` to anything and
/// counts the requests it got.
pub struct HitCounter {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl HitCounter {
    /// Starts one on a free port (needs a Tokio runtime).
    pub async fn start() -> Self {
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { "ok" }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        HitCounter { addr, hits }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The value of one series in Prometheus text, e.g.
/// `metric(&text, "auditrelay_plugin_traps_total{plugin=\"p\",kind=\"panic\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
