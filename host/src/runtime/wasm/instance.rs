//! One running plugin instance: a store, its bindings, and recovery.
//!
//! Every call runs under the instance's deadline. A call that traps or
//! overruns poisons the store, so it is dropped at once (its memory goes
//! with it) and the next call instantiates afresh from the precompiled
//! component and calls `init` again: a plugin never sees its own crash.

use std::sync::Arc;
use std::time::Duration;

use super::bindings::ExporterPlugin;
use super::bindings::auditrelay::plugin::types as wit;
use super::classify::{self, Evidence};
use super::sandbox::{GUEST_GRANTED_DIR, PluginState, Sandbox};
use super::{WasmPlugin, new_store};
use crate::runtime::{
    CallError, Delivery, Exporter, Fault, FaultKind, LaunchError, PluginInfo, RejectedEvent,
};
use auditrelay_plugin_api::ConfigKey;
use auditrelay_plugin_api::batch::EncodedBatch;

struct Live {
    store: wasmtime::Store<PluginState>,
    plugin: ExporterPlugin,
}

impl Live {
    /// Forgets what the sandbox saw during earlier calls, so a fault is
    /// judged on this call's evidence only.
    fn begin_call(&mut self) {
        self.store.data_mut().limiter.take_refused();
        self.store.data().stderr.take_tail();
    }
}

/// The live instance in `slot`, starting a fresh one after a fault.
async fn ensure_live<'a>(
    slot: &'a mut Option<Live>,
    plugin: &WasmPlugin,
    sandbox: &Sandbox,
) -> Result<&'a mut Live, CallError> {
    if slot.is_none() {
        if let Some(metrics) = sandbox.services.metrics() {
            metrics.restart();
        }
        let live = instantiate(plugin, sandbox)
            .await
            .map_err(LaunchError::into_call_error)?;
        *slot = Some(live);
    }
    let live = slot.as_mut().expect("set above");
    live.begin_call();
    Ok(live)
}

/// A running WASM plugin instance. Every call runs under its deadline; after
/// a fault the store is dropped and the next call starts a fresh instance.
pub struct WasmInstance {
    plugin: Arc<WasmPlugin>,
    sandbox: Sandbox,
    live: Option<Live>,
}

impl WasmInstance {
    /// Instantiates `plugin` in `sandbox` and calls `init`.
    pub async fn start(plugin: Arc<WasmPlugin>, sandbox: Sandbox) -> Result<Self, LaunchError> {
        let live = instantiate(&plugin, &sandbox).await?;
        Ok(WasmInstance {
            plugin,
            sandbox,
            live: Some(live),
        })
    }

    /// What the instance may touch and is held to.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Arc<WasmPlugin> {
        &self.plugin
    }

    /// Bytes of linear memory the live instance uses (0 if none is live).
    pub fn memory_used(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |live| live.store.data().limiter.used())
    }

    /// The value of a finished call; on a fault the store is dropped and
    /// the fault returned.
    fn settle<T>(&mut self, outcome: CallOutcome<T>) -> Result<T, Fault> {
        let fault = match outcome {
            CallOutcome::Done(value) => return Ok(value),
            CallOutcome::TimedOut => classify::deadline(self.sandbox.call_timeout),
            CallOutcome::Trapped(error) => {
                let live = self
                    .live
                    .as_mut()
                    .expect("a call ran, so an instance is live");
                classify::classify(&error, evidence(live.store.data_mut()))
            }
        };
        self.retire();
        Err(fault)
    }

    /// Drops the live instance: the next call starts a fresh one.
    pub(crate) fn retire(&mut self) {
        if let Some(live) = self.live.take() {
            live.store.data().stdout.finish();
            live.store.data().stderr.finish();
        }
    }
}

pub(super) enum CallOutcome<T> {
    Done(T),
    TimedOut,
    Trapped(wasmtime::Error),
}

pub(super) async fn with_deadline<T>(
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> CallOutcome<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => CallOutcome::Done(value),
        Ok(Err(error)) => CallOutcome::Trapped(error),
        Err(_) => CallOutcome::TimedOut,
    }
}

async fn instantiate(plugin: &WasmPlugin, sandbox: &Sandbox) -> Result<Live, LaunchError> {
    let mut store = new_store(plugin.pre.engine(), sandbox).map_err(LaunchError::Setup)?;
    store.data_mut().limiter.take_refused();
    let ctx = wit::InitContext {
        instance: sandbox.services.instance(),
        config_json: &sandbox.config_json,
        granted_dir: sandbox.grant_dir.as_ref().map(|_| GUEST_GRANTED_DIR),
    };
    let call = async {
        let bindings = plugin.pre.instantiate_async(&mut store).await?;
        let init = bindings
            .auditrelay_plugin_exporter()
            .call_init(&mut store, ctx)
            .await?;
        Ok((bindings, init))
    };
    match with_deadline(sandbox.call_timeout, call).await {
        CallOutcome::Done((bindings, Ok(()))) => Ok(Live {
            store,
            plugin: bindings,
        }),
        CallOutcome::Done((_, Err(message))) => Err(LaunchError::Init(message)),
        CallOutcome::TimedOut => Err(LaunchError::Fault(classify::deadline(sandbox.call_timeout))),
        CallOutcome::Trapped(error) => {
            Err(LaunchError::Fault(start_fault(&error, store.data_mut())))
        }
    }
}

/// What the sandbox saw during the call that just failed.
pub(super) fn evidence(state: &mut PluginState) -> Evidence {
    Evidence {
        refused_memory: state.limiter.take_refused(),
        memory_limit: state.limiter.limit(),
        stderr_tail: state.stderr.take_tail(),
    }
}

/// The fault of an instance that failed while it was instantiated or
/// initialised.
pub(super) fn start_fault(error: &wasmtime::Error, state: &mut PluginState) -> Fault {
    let mut fault = classify::classify(error, evidence(state));
    if fault.kind == FaultKind::Other && error.downcast_ref::<wasmtime::Trap>().is_none() {
        fault.message = format!("could not instantiate: {}", fault.message);
    }
    fault
}

impl Exporter for WasmInstance {
    async fn deliver(&mut self, batch: EncodedBatch<'_>) -> Result<Delivery, CallError> {
        let live = ensure_live(&mut self.live, &self.plugin, &self.sandbox).await?;
        let exporter = live.plugin.auditrelay_plugin_exporter();
        // The spool's batch is already in the plugin wire format.
        let wit_batch = wit::Batch {
            count: batch.count,
            data: batch.data,
        };
        let call = exporter.call_deliver(&mut live.store, wit_batch);
        let outcome = with_deadline(self.sandbox.call_timeout, call).await;
        match self.settle(outcome).map_err(CallError::Fault)? {
            Ok(wit::Delivery::Accepted) => Ok(Delivery::Accepted),
            Ok(wit::Delivery::PartiallyRejected(rejected)) => Ok(Delivery::PartiallyRejected(
                rejected
                    .into_iter()
                    .map(|r| RejectedEvent {
                        index: r.index,
                        reason: r.reason,
                    })
                    .collect(),
            )),
            Err(error) => Err(call_error(error)),
        }
    }

    async fn flush(&mut self) -> Result<(), CallError> {
        let timeout = self.sandbox.call_timeout;
        // A fresh instance holds nothing to flush.
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        live.begin_call();
        let exporter = live.plugin.auditrelay_plugin_exporter();
        let outcome = with_deadline(timeout, exporter.call_flush(&mut live.store)).await;
        self.settle(outcome)
            .map_err(CallError::Fault)?
            .map_err(call_error)
    }

    async fn shutdown(&mut self) {
        let timeout = self.sandbox.call_timeout;
        if let Some(live) = self.live.as_mut() {
            let exporter = live.plugin.auditrelay_plugin_exporter();
            let outcome = with_deadline(timeout, exporter.call_shutdown(&mut live.store)).await;
            if let Err(fault) = self.settle(outcome) {
                tracing::warn!(plugin = &**self.sandbox.instance(), %fault, "plugin failed during shutdown");
            }
        }
        self.retire();
    }
}

fn call_error(error: wit::DeliveryError) -> CallError {
    match error {
        wit::DeliveryError::Retryable(retryable) => CallError::Retryable {
            message: retryable.message,
            retry_after: retryable.retry_after_ms.map(Duration::from_millis),
        },
        wit::DeliveryError::Permanent(message) => CallError::Permanent(message),
    }
}

/// Converts the WIT description into the API's.
pub(super) fn plugin_info(info: wit::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        config_keys: info
            .config_keys
            .into_iter()
            .map(|key| ConfigKey {
                name: key.name,
                description: key.description,
                required: key.required,
                default_value: key.default_value,
            })
            .collect(),
    }
}
