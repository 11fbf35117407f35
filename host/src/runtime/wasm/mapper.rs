//! Mapper plugins (WIT world `mapper-plugin`, since 1.1.0): records from
//! other systems in, envelopes out, in the same sandbox as exporters.
//!
//! A mapper is contained like an exporter, and more finely: when a batch
//! makes it trap, overrun its deadline or give an impossible answer, the
//! instance is dropped and the batch's records are mapped again one at a
//! time on fresh instances, so only the record that brings it down is
//! refused (and set aside by the source) while the others flow.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditrelay_plugin_api::mapper::Mapped;

use super::bindings::auditrelay::plugin::types as wit;
use super::bindings::mapper_world::exports::auditrelay::plugin::mapper as wit_mapper;
use super::bindings::mapper_world::{MapperPlugin, MapperPluginPre};
use super::cache::CacheOutcome;
use super::classify;
use super::instance::{CallOutcome, evidence, plugin_info, start_fault, with_deadline};
use super::sandbox::{PluginState, Sandbox};
use super::{Compiled, WasmRuntime, exports, new_store};
use crate::runtime::{Fault, FaultKind, LaunchError, LoadError, LoadLimits, PluginInfo};

/// The interface a mapper component exports.
pub(super) const EXPORT: &str = "auditrelay:plugin/mapper@1.1.0";

/// Most events one record may map to; a record that maps to more is
/// refused (a mapper gone wrong, not a real record).
pub const MAX_EVENTS_PER_RECORD: usize = 1000;

/// Faults in a row, record by record, after which the rest of the batch is
/// refused untried: a mapper that crashes on everything must not cost a
/// deadline per record.
const FAULTS_IN_A_ROW: usize = 3;

/// One record as a source received it (WIT `foreign-record`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForeignRecord {
    /// The bytes, unchanged.
    pub data: Vec<u8>,
    /// (name, value) pairs the source knows besides the bytes.
    pub metadata: Vec<(String, String)>,
}

/// Records of one source, mapped together (WIT `record-batch`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordBatch {
    /// The source's name.
    pub source: String,
    /// The records' media type.
    pub content_type: String,
    /// The records, in arrival order.
    pub records: Vec<ForeignRecord>,
}

/// A compiled, linked mapper, ready to instantiate any number of times.
pub struct WasmMapper {
    /// The `.wasm` file.
    pub path: PathBuf,
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    /// What the mapper says about itself.
    pub info: PluginInfo,
    /// Whether the compiled code came from the cache.
    pub cache: CacheOutcome,
    /// Time spent compiling or loading from the cache.
    pub load_time: Duration,
    pre: MapperPluginPre<PluginState>,
}

impl std::fmt::Debug for WasmMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmMapper")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// Compiles (or loads from the cache), links and describes a mapper
    /// plugin, within `limits`, as [`load`](Self::load) does an exporter.
    pub async fn load_mapper(
        self: &Arc<Self>,
        path: &Path,
        limits: &LoadLimits,
    ) -> Result<WasmMapper, LoadError> {
        let compiled = self.compile(path, limits).await?;
        from_compiled(path, compiled).await
    }
}

/// The mapper in `compiled`, linked and described.
pub(super) async fn from_compiled(
    path: &Path,
    compiled: Compiled,
) -> Result<WasmMapper, LoadError> {
    let fail = |reason: String| LoadError::new(path, reason);
    let pre = MapperPluginPre::new(compiled.pre.clone()).map_err(|e| {
        if exports(&compiled.pre, "auditrelay:plugin/exporter@1.1.0") {
            return fail(
                "is an exporter plugin (it exports auditrelay:plugin/exporter), not a mapper: enable it in [plugins.<name>]".into(),
            );
        }
        fail(format!(
            "does not export the mapper interface {EXPORT} ({e:#}); build it with auditrelay-plugin-api's export_mapper!"
        ))
    })?;
    let info = describe(&pre)
        .await
        .map_err(|e| fail(format!("describe() failed: {e}")))?;
    Ok(WasmMapper {
        path: path.to_owned(),
        sha256: compiled.sha256,
        info,
        cache: compiled.cache,
        load_time: compiled.load_time,
        pre,
    })
}

async fn describe(pre: &MapperPluginPre<PluginState>) -> Result<PluginInfo, String> {
    let sandbox = Sandbox::describe_only();
    let mut store = new_store(pre.engine(), &sandbox)?;
    let call = async {
        let mapper = pre.instantiate_async(&mut store).await?;
        mapper
            .auditrelay_plugin_mapper()
            .call_describe(&mut store)
            .await
    };
    match with_deadline(sandbox.call_timeout, call).await {
        CallOutcome::Done(info) => Ok(plugin_info(info)),
        CallOutcome::TimedOut => Err(format!("did not answer within {:?}", sandbox.call_timeout)),
        CallOutcome::Trapped(error) => Err(format!("{error:#}")),
    }
}

struct Live {
    store: wasmtime::Store<PluginState>,
    mapper: MapperPlugin,
}

/// A running mapper instance. [`map`](Self::map) never fails: whatever the
/// mapper does, every record gets an answer.
pub struct MapperInstance {
    mapper: Arc<WasmMapper>,
    sandbox: Sandbox,
    live: Option<Live>,
}

impl MapperInstance {
    /// Instantiates `mapper` in `sandbox` and calls `init`.
    pub async fn start(mapper: Arc<WasmMapper>, sandbox: Sandbox) -> Result<Self, LaunchError> {
        let live = instantiate(&mapper, &sandbox).await?;
        Ok(MapperInstance {
            mapper,
            sandbox,
            live: Some(live),
        })
    }

    /// What the instance may touch and is held to.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Maps `batch`: one answer per record, in order. A fault (or an
    /// impossible answer) on the whole batch retries it record by record,
    /// and a record that faults alone is refused with the fault.
    pub async fn map(&mut self, batch: &RecordBatch) -> Vec<Mapped> {
        match self.call(batch, &batch.records).await {
            Ok(answers) => answers,
            Err(fault) if batch.records.len() == 1 => vec![refusal(&Err(fault))],
            Err(fault) => {
                tracing::warn!(mapper = &**self.sandbox.instance(), %fault, records = batch.records.len(), "mapper fault; mapping the batch record by record");
                self.one_by_one(batch).await
            }
        }
    }

    async fn one_by_one(&mut self, batch: &RecordBatch) -> Vec<Mapped> {
        let mut answers = Vec::with_capacity(batch.records.len());
        let mut in_a_row = 0;
        for record in batch.records.chunks(1) {
            if in_a_row == FAULTS_IN_A_ROW {
                answers.push(Mapped::refused(format!(
                    "not mapped: the mapper faulted on the {FAULTS_IN_A_ROW} records before this one; fix it, then send the records the source kept again"
                )));
                continue;
            }
            let answer = self.call(batch, record).await;
            in_a_row = if answer.is_err() { in_a_row + 1 } else { 0 };
            answers.push(refusal(&answer));
        }
        answers
    }

    /// One call for `records` of `batch`, its answer admitted.
    async fn call(
        &mut self,
        batch: &RecordBatch,
        records: &[ForeignRecord],
    ) -> Result<Vec<Mapped>, Fault> {
        if self.live.is_none() {
            if let Some(metrics) = self.sandbox.services.metrics() {
                metrics.restart();
            }
            self.live = Some(instantiate(&self.mapper, &self.sandbox).await.map_err(
                |e| match e {
                    LaunchError::Fault(fault) => fault,
                    other => Fault::new(
                        FaultKind::Other,
                        format!("restarting the mapper failed: {other}"),
                    ),
                },
            )?);
        }
        let live = self.live.as_mut().expect("set above");
        live.store.data_mut().limiter.take_refused();
        live.store.data().stderr.take_tail();
        let metadata: Vec<Vec<(&str, &str)>> = records
            .iter()
            .map(|r| {
                r.metadata
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .collect();
        let wit_records: Vec<wit_mapper::ForeignRecord<'_>> = records
            .iter()
            .zip(&metadata)
            .map(|(record, metadata)| wit_mapper::ForeignRecord {
                data: &record.data,
                metadata,
            })
            .collect();
        let wit_batch = wit_mapper::RecordBatch {
            source: &batch.source,
            content_type: &batch.content_type,
            records: &wit_records,
        };
        let call = live
            .mapper
            .auditrelay_plugin_mapper()
            .call_map_records(&mut live.store, wit_batch);
        let outcome = with_deadline(self.sandbox.call_timeout, call).await;
        let answers = match outcome {
            CallOutcome::Done(answers) => answers,
            CallOutcome::TimedOut => {
                return Err(self.retire(classify::deadline(self.sandbox.call_timeout)));
            }
            CallOutcome::Trapped(error) => {
                let live = self.live.as_mut().expect("a call ran");
                let fault = classify::classify(&error, evidence(live.store.data_mut()));
                return Err(self.retire(fault));
            }
        };
        if answers.len() != records.len() {
            let fault = Fault::new(
                FaultKind::Other,
                format!(
                    "the mapper answered {} times for {} records (map-records must answer once per record)",
                    answers.len(),
                    records.len()
                ),
            );
            return Err(self.retire(fault));
        }
        Ok(answers
            .into_iter()
            .map(|answer| self.admit(answer))
            .collect())
    }

    /// An answer as the relay keeps it: a refusal's text masked and capped
    /// like any text from a plugin; too many events refuse the record.
    fn admit(&self, answer: wit_mapper::Mapped) -> Mapped {
        match answer {
            wit_mapper::Mapped::Envelopes(json) if json.len() > MAX_EVENTS_PER_RECORD => {
                Mapped::refused(format!(
                    "the mapper made {} events of this record; at most {MAX_EVENTS_PER_RECORD} are kept per record",
                    json.len()
                ))
            }
            wit_mapper::Mapped::Envelopes(json) => Mapped::Envelopes(json),
            wit_mapper::Mapped::Refused(reason) => {
                Mapped::Refused(self.sandbox.services.admit(&reason))
            }
        }
    }

    /// Drops the live instance after `fault`, counting it.
    fn retire(&mut self, fault: Fault) -> Fault {
        if let Some(live) = self.live.take() {
            live.store.data().stdout.finish();
            live.store.data().stderr.finish();
        }
        if let Some(metrics) = self.sandbox.services.metrics() {
            metrics.trap(fault.kind.label());
        }
        fault
    }

    /// Lets the mapper release its resources.
    pub async fn shutdown(&mut self) {
        if let Some(live) = self.live.as_mut() {
            let call = live
                .mapper
                .auditrelay_plugin_mapper()
                .call_shutdown(&mut live.store);
            if let CallOutcome::TimedOut | CallOutcome::Trapped(_) =
                with_deadline(self.sandbox.call_timeout, call).await
            {
                tracing::warn!(
                    mapper = &**self.sandbox.instance(),
                    "mapper failed during shutdown"
                );
            }
        }
        if let Some(live) = self.live.take() {
            live.store.data().stdout.finish();
            live.store.data().stderr.finish();
        }
    }
}

/// The answer for one record mapped alone.
fn refusal(answer: &Result<Vec<Mapped>, Fault>) -> Mapped {
    match answer {
        Ok(answers) => answers[0].clone(),
        Err(fault) => Mapped::refused(format!("the mapper crashed on this record: {fault}")),
    }
}

async fn instantiate(mapper: &WasmMapper, sandbox: &Sandbox) -> Result<Live, LaunchError> {
    let mut store = new_store(mapper.pre.engine(), sandbox).map_err(LaunchError::Setup)?;
    store.data_mut().limiter.take_refused();
    let ctx = wit::InitContext {
        instance: sandbox.services.instance(),
        config_json: &sandbox.config_json,
        granted_dir: None,
    };
    let call = async {
        let bindings = mapper.pre.instantiate_async(&mut store).await?;
        let init = bindings
            .auditrelay_plugin_mapper()
            .call_init(&mut store, ctx)
            .await?;
        Ok((bindings, init))
    };
    match with_deadline(sandbox.call_timeout, call).await {
        CallOutcome::Done((bindings, Ok(()))) => Ok(Live {
            store,
            mapper: bindings,
        }),
        CallOutcome::Done((_, Err(message))) => {
            Err(LaunchError::Init(sandbox.services.admit(&message)))
        }
        CallOutcome::TimedOut => Err(LaunchError::Fault(classify::deadline(sandbox.call_timeout))),
        CallOutcome::Trapped(error) => {
            Err(LaunchError::Fault(start_fault(&error, store.data_mut())))
        }
    }
}
