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

pub mod pager;
pub mod postgres;
pub mod receivers;
pub mod webhooks;

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

/// A plugin built as a native shared library by `scripts/build-plugins`,
/// by crate name (`auditrelay_plugin_file`, `auditrelay_fixture_faulty`).
pub fn native_plugin(crate_name: &str) -> PathBuf {
    let path = target_dir()
        .join("native-plugins")
        .join(format!("lib{crate_name}.so"));
    assert!(
        path.exists(),
        "{} is not built: run scripts/build-plugins (scripts/test does) first",
        path.display()
    );
    path
}

/// Compiles a C plugin from `tests/fixtures/c-plugin/<source>` against the
/// ABI header, warning-free, into `<dir>/lib<stem>.so`.
pub fn compile_c_plugin(source: &str, dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stem = source.trim_end_matches(".c");
    let library = dir.join(format!("lib{stem}.so"));
    let compiled = std::process::Command::new("cc")
        .args([
            "-shared", "-fPIC", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&library)
        .arg("-I")
        .arg(root.join("plugin-api/include"))
        .arg(root.join("tests/fixtures/c-plugin").join(source))
        .status()
        .expect("cc runs");
    assert!(
        compiled.success(),
        "{source} compiles warning-free against the header"
    );
    library
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

    /// Copies a native plugin library (see [`native_plugin`]) into the
    /// plugin directory.
    pub fn add_native_plugin(&self, crate_name: &str) {
        std::fs::copy(
            native_plugin(crate_name),
            self.plugin_dir().join(format!("lib{crate_name}.so")),
        )
        .expect("copying a native plugin");
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
    /// loopback port, with the hash chain off unless the text turns it on:
    /// most tests compare what plugins got with what was sent, byte for
    /// byte, and the chain adds a member to every event and checkpoint
    /// events to every output (the tests about it set `integrity.chain`).
    /// `{home}` in the text is replaced by the home's path.
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
            "[relay]\nplugin_dir = {:?}\ndata_dir = {:?}\ncache_dir = {:?}\nshutdown_timeout = \"20s\"\n\n[ingest.http]\nlisten = \"127.0.0.1:0\"\n\n[integrity]\nchain = false\n",
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

/// [`ndjson_lines`], each read as JSON.
pub fn ndjson_values(dir: &Path) -> Vec<serde_json::Value> {
    ndjson_lines(dir)
        .iter()
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect()
}

/// The relay's `/v1/status` document, read from the HTTP API at `base`
/// (`http://127.0.0.1:PORT`).
pub async fn status(client: &reqwest::Client, base: &str) -> serde_json::Value {
    client
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The relay's `/metrics` text, read from the HTTP API at `base`.
pub async fn metrics(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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

/// How a [`Receiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Records the events and answers `200`.
    Accept,
    /// Answers with this status and records nothing.
    Fail(u16),
    /// Not listening: connections are refused.
    Down,
}

struct ReceiverState {
    mode: Mode,
    ids: Vec<String>,
}

/// A real HTTP destination on 127.0.0.1 that the `faulty` fixture (with
/// `url`) POSTs NDJSON to: it records the `id` of every event it accepted
/// (duplicates included) and can be told to fail or go down.
pub struct Receiver {
    /// Where it listens (kept across downtime).
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Receiver {
    /// Starts one on a free port, accepting.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(ReceiverState {
                mode: Mode::Accept,
                ids: Vec::new(),
            })),
            server: Mutex::new(None),
        };
        receiver.serve(listener);
        receiver
    }

    /// The URL to give the fixture.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let state = self.state.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let mut state = state.lock().unwrap();
                if let Mode::Fail(code) = state.mode {
                    return axum::http::StatusCode::from_u16(code).unwrap();
                }
                for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let event: serde_json::Value =
                        serde_json::from_slice(line).expect("NDJSON events");
                    state.ids.push(event["id"].as_str().unwrap().to_owned());
                }
                axum::http::StatusCode::OK
            }
        });
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(handle);
    }

    /// Switches how it answers; `Down` stops listening, anything else
    /// listens again on the same address.
    pub async fn set_mode(&self, mode: Mode) {
        let was_down = self.state.lock().unwrap().mode == Mode::Down;
        self.state.lock().unwrap().mode = mode;
        match (was_down, mode) {
            (false, Mode::Down) => {
                if let Some(server) = self.server.lock().unwrap().take() {
                    server.abort();
                }
                // Let the aborted task drop its listener.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (true, Mode::Accept | Mode::Fail(_)) => {
                let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
                self.serve(listener);
            }
            _ => {}
        }
    }

    /// Every accepted event id, duplicates included, in arrival order.
    pub fn ids(&self) -> Vec<String> {
        self.state.lock().unwrap().ids.clone()
    }

    /// Waits until every id in `expected` has arrived (or `timeout`).
    pub async fn wait_for_all(
        &self,
        expected: &std::collections::HashSet<String>,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let got: std::collections::HashSet<String> = self.ids().into_iter().collect();
            if expected.is_subset(&got) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What arrived, checked against what was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Events acknowledged as durable.
    pub acknowledged: usize,
    /// Acknowledged events that never arrived.
    pub lost: usize,
    /// Deliveries beyond the first of an event.
    pub duplicates: usize,
    /// Distinct events that arrived.
    pub distinct: usize,
}

/// Compares the ids that arrived (duplicates included) with the ids
/// acknowledged.
pub fn tally(acknowledged: &std::collections::HashSet<String>, arrived: &[String]) -> Tally {
    let distinct: std::collections::HashSet<&String> = arrived.iter().collect();
    Tally {
        acknowledged: acknowledged.len(),
        lost: acknowledged
            .iter()
            .filter(|id| !distinct.contains(id))
            .count(),
        duplicates: arrived.len() - distinct.len(),
        distinct: distinct.len(),
    }
}

/// `auditrelay run` as a child process.
pub struct RelayProcess {
    /// The child.
    pub child: std::process::Child,
    /// Its log so far (stderr), for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl RelayProcess {
    /// Starts `auditrelay run -c config` (through `prefix`, e.g. `unshare`,
    /// when given) and waits until it accepts events.
    pub fn start(config: &Path, prefix: &[&str]) -> Self {
        Self::start_with(config, prefix, &[])
    }

    /// [`start`](Self::start)s it with these environment variables set
    /// (what `${ENV}` in the config reads).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(config, &[], env)
    }

    fn start_with(config: &Path, prefix: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let binary = relay_binary();
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => std::process::Command::new(&binary),
        };
        let mut child = command
            .args(["run", "-c", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting auditrelay run");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // Record the line before saying it arrived: the caller
                // reads the log right after.
                let ready = line.contains("accepting events at");
                lines.lock().unwrap().push(line);
                if ready {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "auditrelay run did not start:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
        RelayProcess { child, log }
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for it to exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its log lines so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill_9();
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The forms of `secret` that must appear nowhere: as it is, reversed, in
/// base64 (both alphabets, padded or not) and hex, and each half (a secret
/// split over two writes) — each in either letter case, as [`leaked_form`]
/// compares them.
fn secret_forms(secret: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let half = secret.len() / 2;
    vec![
        ("as is", secret.to_owned()),
        ("reversed", secret.chars().rev().collect()),
        ("base64", STANDARD.encode(secret)),
        ("base64 (URL-safe)", URL_SAFE_NO_PAD.encode(secret)),
        ("hex", hex::encode(secret)),
        ("first half", secret[..half].to_owned()),
        ("second half", secret[half..].to_owned()),
    ]
}

/// Which form of `secret` `text` holds, if any (compared without regard to
/// letter case, except for base64).
pub fn leaked_form(text: &str, secret: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    secret_forms(secret).into_iter().find_map(|(form, value)| {
        let found = if form.starts_with("base64") {
            text.contains(&value)
        } else {
            lower.contains(&value.to_lowercase())
        };
        found.then_some(form)
    })
}

/// Every file under `dir`, as lossy text, with its path.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

/// The first `chars` characters of `text`, for a failure message.
pub fn excerpt(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// The `[plugins.healthy]` tables: a `file` instance writing to
/// `{home}/healthy` without fsync, in 5 ms batches — the bystander whose
/// every event the fault and attack tests check arrives.
pub const HEALTHY_FILE_TABLES: &str = r#"
[plugins.healthy]
plugin = "file"
grant_dir = "{home}/healthy"
[plugins.healthy.config]
fsync = false
[plugins.healthy.batch]
max_wait = "5ms"
"#;

/// The `[plugins.sink]` tables: the `faulty` fixture (with `fault_config`
/// as its config, besides `url`) delivering to `receiver`, in small
/// batches, retrying quickly.
pub fn sink_tables(receiver: &Receiver, fault_config: &str) -> String {
    format!(
        r#"
[plugins.sink]
plugin = "faulty"
allowed_hosts = ["127.0.0.1:{port}"]
[plugins.sink.config]
url = "{url}"
{fault_config}
[plugins.sink.batch]
max_wait = "10ms"
max_events = 200
[plugins.sink.retry]
initial_backoff = "20ms"
max_backoff = "200ms"
circuit_after = 5
circuit_open_for = "300ms"
"#,
        port = receiver.addr.port(),
        url = receiver.url(),
    )
}

/// Posts `events` to `url` as a client of the relay would; the ids of a
/// batch answered `202` are added to `acknowledged` — what counts is what
/// this client saw, not what the relay says. The answer's status, if one
/// came.
pub async fn post_counting(
    client: &reqwest::Client,
    url: &str,
    events: Vec<auditrelay::envelope::AuditEventEnvelope>,
    acknowledged: &mut std::collections::HashSet<String>,
) -> Option<reqwest::StatusCode> {
    let response = client.post(url).json(&events).send().await.ok()?;
    let status = response.status();
    if status == 202 {
        acknowledged.extend(events.into_iter().map(|e| e.id));
    }
    Some(status)
}
