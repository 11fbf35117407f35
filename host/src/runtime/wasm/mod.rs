//! The WebAssembly runtime: sandboxed exporter plugins on wasmtime.
//!
//! One [`WasmRuntime`] holds the engine, the linker (WASI with nothing
//! granted, `wasi:http` behind the [allow list](auditrelay_plugin_api::http::AllowList),
//! and the relay's `log`/`secrets`/`metrics`), the
//! [compiled-plugin cache](cache) and the epoch ticker that drives call
//! deadlines. [`WasmRuntime::load`] turns a `.wasm` file into a
//! [`WasmPlugin`]; [`WasmInstance::start`] runs it in a [`Sandbox`].
//!
//! Each instance has its own `Store`: its own memory (capped), its own
//! WASI context and nothing shared with other instances. Calls are async
//! and yield at every epoch tick, so a runaway plugin is cancelled at its
//! deadline without holding a thread.

mod bindings;
pub mod cache;
mod classify;
pub mod compiler;
mod host_api;
mod http_gate;
mod instance;
pub mod mapper;
mod quota;
mod sandbox;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, OptLevel, Store};

use self::bindings::ExporterPluginPre;
use self::cache::{CacheOutcome, ComponentCache};
use crate::runtime::{
    LoadError, LoadLimits, PluginInfo, helper_program, read_plugin_file, sha256_hex,
};

pub use self::instance::WasmInstance;
pub use self::mapper::{ForeignRecord, MapperInstance, RecordBatch, WasmMapper};
pub use self::quota::GrantQuota;
pub use self::sandbox::Sandbox;

use self::sandbox::PluginState;

/// How often the epoch advances: the granularity of call deadlines, and how
/// often a busy plugin yields its thread.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled, checked plugin, ready to instantiate any number of times.
pub struct WasmPlugin {
    /// The `.wasm` file.
    pub path: PathBuf,
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    /// What the plugin says about itself.
    pub info: PluginInfo,
    /// Whether the compiled code came from the cache.
    pub cache: CacheOutcome,
    /// Time spent compiling or loading from the cache.
    pub load_time: Duration,
    pre: ExporterPluginPre<PluginState>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The engine, linker, cache and epoch ticker shared by all WASM plugins.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: ComponentCache,
    cache_dir: Option<PathBuf>,
}

/// The engine every WASM plugin runs on (and the plugin compiler compiles
/// for: their settings must match for compiled code to load).
pub(crate) fn engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .wasm_backtrace_max_frames(NonZeroUsize::new(64))
        .cranelift_opt_level(OptLevel::Speed);
    Engine::new(&config)
}

impl WasmRuntime {
    /// A runtime caching compiled plugins in `cache_dir` (none: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let engine = engine()?;

        let mut linker = Linker::new(&engine);
        // Rust plugins import wasi:cli, wasi:filesystem, ... through std even
        // when they do no I/O; every instance's WasiCtx grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // The same filesystem, with the granted directory's quota on top.
        quota::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        use self::bindings::auditrelay::plugin::{log, metrics, secrets, types};
        type Own = HasSelf<PluginState>;
        types::add_to_linker::<_, Own>(&mut linker, |state| state)?;
        log::add_to_linker::<_, Own>(&mut linker, |state| state)?;
        secrets::add_to_linker::<_, Own>(&mut linker, |state| state)?;
        metrics::add_to_linker::<_, Own>(&mut linker, |state| state)?;

        spawn_epoch_ticker(&engine);
        Ok(WasmRuntime {
            cache: ComponentCache::new(cache_dir.clone(), &engine),
            cache_dir,
            engine,
            linker,
        })
    }

    /// Compiles (or loads from the cache), links and describes an
    /// exporter plugin, within `limits`: a file larger than `max_size` is
    /// refused before it is read; a compile runs in a compiler process
    /// killed at `timeout` (in the relay's own process, waited for no
    /// longer than `timeout`, when there is no cache directory or no
    /// `auditrelay` executable). Every way a file can be unusable gets its
    /// own [`LoadError`] message.
    pub async fn load(
        self: &Arc<Self>,
        path: &Path,
        limits: &LoadLimits,
    ) -> Result<WasmPlugin, LoadError> {
        let compiled = self.compile(path, limits).await?;
        self.exporter(path, compiled).await
    }

    /// Loads a component of either world, as [`load`](Self::load) does:
    /// a mapper if it exports the mapper interface, else an exporter.
    pub async fn load_any(
        self: &Arc<Self>,
        path: &Path,
        limits: &LoadLimits,
    ) -> Result<WasmComponent, LoadError> {
        let compiled = self.compile(path, limits).await?;
        if exports(&compiled.pre, mapper::EXPORT) {
            mapper::from_compiled(path, compiled)
                .await
                .map(WasmComponent::Mapper)
        } else {
            self.exporter(path, compiled)
                .await
                .map(WasmComponent::Exporter)
        }
    }

    async fn exporter(&self, path: &Path, compiled: Compiled) -> Result<WasmPlugin, LoadError> {
        let fail = |reason: String| LoadError::new(path, reason);
        let pre = ExporterPluginPre::new(compiled.pre.clone()).map_err(|e| {
            if exports(&compiled.pre, mapper::EXPORT) {
                return fail(
                    "is a mapper plugin (it exports auditrelay:plugin/mapper): name it as a source's mapper, not in [plugins.<name>]".into(),
                );
            }
            fail(format!(
                "does not export the exporter interface auditrelay:plugin/exporter@1.x ({e:#}); build it with auditrelay-plugin-api's export_plugin!"
            ))
        })?;
        let info = describe(&self.engine, &pre)
            .await
            .map_err(|e| fail(format!("describe() failed: {e}")))?;
        Ok(WasmPlugin {
            path: path.to_owned(),
            sha256: compiled.sha256,
            info,
            cache: compiled.cache,
            load_time: compiled.load_time,
            pre,
        })
    }

    /// Reads, compiles (or loads from the cache) and links a component of
    /// either world, within `limits`.
    async fn compile(
        self: &Arc<Self>,
        path: &Path,
        limits: &LoadLimits,
    ) -> Result<Compiled, LoadError> {
        let fail = |reason: String| LoadError::new(path, reason);
        let bytes = read_plugin_file(path, limits).await?;
        check_header(&bytes).map_err(fail)?;

        let started = Instant::now();
        let sha256 = sha256_hex(&bytes);
        if !self.cache.contains(&sha256)
            && let (Some(cache), Ok(program)) = (&self.cache_dir, helper_program())
        {
            compiler::compile_in_process(&program, path, cache, limits.timeout)
                .await
                .map_err(fail)?;
        }
        let runtime = self.clone();
        let digest = sha256.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            runtime
                .cache
                .load_or_compile(&runtime.engine, &bytes, &digest)
        });
        let (component, cache) = tokio::time::timeout(limits.timeout, compiled)
            .await
            .map_err(|_| {
                fail(format!(
                    "compiling it took longer than {} (relay.plugin_load_timeout)",
                    humantime::format_duration(limits.timeout)
                ))
            })?
            .map_err(|e| fail(format!("compilation crashed: {e}")))?
            .map_err(|e| fail(format!("is not a valid WebAssembly component: {e:#}")))?;
        let load_time = started.elapsed();

        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            fail(format!(
                "needs imports this relay does not provide ({e:#}); plugins may import auditrelay:plugin@1.x, wasi:http@0.2 and the WASI 0.2 interfaces Rust's std uses"
            ))
        })?;
        Ok(Compiled {
            pre,
            sha256,
            cache,
            load_time,
        })
    }

    /// The engine (for tests and benchmarks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A loaded plugin component, of the world it was built for.
#[derive(Debug)]
pub enum WasmComponent {
    /// World `exporter-plugin`: delivers events.
    Exporter(WasmPlugin),
    /// World `mapper-plugin`: maps foreign records to events.
    Mapper(WasmMapper),
}

/// A component compiled and linked, before its world is known.
struct Compiled {
    pre: InstancePre<PluginState>,
    sha256: String,
    cache: CacheOutcome,
    load_time: Duration,
}

/// Whether the component exports the interface `name`.
fn exports(pre: &InstancePre<PluginState>, name: &str) -> bool {
    pre.component().get_export_index(None, name).is_some()
}

/// Tells apart "not wasm at all", "a core module" and "a component".
fn check_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(
            "is not a WebAssembly file (no \\0asm header); was it truncated or overwritten?".into(),
        );
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(
            "is a core WebAssembly module, not a component: build the plugin with `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
                .into(),
        );
    }
    Ok(())
}

/// A store for `sandbox`, with its memory cap and epoch yielding set up.
fn new_store(engine: &Engine, sandbox: &Sandbox) -> Result<Store<PluginState>, String> {
    let mut store = Store::new(engine, sandbox.state()?);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    Ok(store)
}

async fn describe(
    engine: &Engine,
    pre: &ExporterPluginPre<PluginState>,
) -> Result<PluginInfo, String> {
    let sandbox = Sandbox::describe_only();
    let mut store = new_store(engine, &sandbox)?;
    let call = async {
        let plugin = pre.instantiate_async(&mut store).await?;
        plugin
            .auditrelay_plugin_exporter()
            .call_describe(&mut store)
            .await
    };
    let info = tokio::time::timeout(sandbox.call_timeout, call)
        .await
        .map_err(|_| format!("did not answer within {:?}", sandbox.call_timeout))?
        .map_err(|e| format!("{e:#}"))?;
    Ok(instance::plugin_info(info))
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for as long as the engine
/// lives. The thread holds only a weak reference: stores and compiled
/// plugins keep the engine (and so their deadlines) alive, not the
/// [`WasmRuntime`] that created it.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("auditrelay-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}
