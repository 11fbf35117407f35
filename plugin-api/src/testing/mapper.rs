//! [`MapperHarness`]: a mapper running natively against the fake host.

use std::sync::Arc;

use super::FakeHost;
use crate::host::{Level, backend};
use crate::mapper::{Mapped, Mapper, Record};
use crate::plugin::{InitContext, InitError, parse_config_as};

/// A [`Mapper`] instance running natively against a fake host, for its
/// tests. The config goes through JSON as the relay passes it.
///
/// Check what a mapper returns with [`Mapped::envelopes`], which reads
/// each event exactly as the relay will.
pub struct MapperHarness<M: Mapper> {
    mapper: M,
    host: Arc<FakeHost>,
    source: String,
}

impl<M: Mapper> MapperHarness<M> {
    /// Runs `init` with `config` (the `config` table, as JSON), for a
    /// source named `test`.
    pub fn new(config: serde_json::Value) -> Result<Self, InitError> {
        Self::with_secrets(config, [] as [(&str, &str); 0])
    }

    /// Runs `init` with `config` and the secrets granted.
    pub fn with_secrets<'s>(
        config: serde_json::Value,
        secrets: impl IntoIterator<Item = (&'s str, &'s str)>,
    ) -> Result<Self, InitError> {
        let host = Arc::new(FakeHost {
            secrets: secrets
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            ..FakeHost::default()
        });
        let _guard = backend::install_for_thread(&*host);
        let config = parse_config_as::<M::Config>(&config.to_string())?;
        let ctx = InitContext {
            instance: "test".into(),
            granted_dir: None,
        };
        let mapper = M::init(config, &ctx)?;
        drop(_guard);
        Ok(MapperHarness {
            mapper,
            host,
            source: "test".into(),
        })
    }

    /// Names the source the records come from (default `test`).
    pub fn source(mut self, name: impl Into<String>) -> Self {
        self.source = name.into();
        self
    }

    /// Maps one record.
    pub fn map(&mut self, record: &Record<'_>) -> Mapped {
        let _guard = backend::install_for_thread(&*self.host);
        self.mapper.map(record)
    }

    /// Maps one record of `data` as `content_type`, with `metadata`, from
    /// the harness's source.
    pub fn map_bytes(
        &mut self,
        data: &[u8],
        content_type: &str,
        metadata: &[(String, String)],
    ) -> Mapped {
        let source = self.source.clone();
        self.map(&Record {
            source: &source,
            content_type,
            data,
            metadata,
        })
    }

    /// Maps one JSON record with no metadata.
    pub fn map_json(&mut self, record: &serde_json::Value) -> Mapped {
        self.map_bytes(record.to_string().as_bytes(), "application/json", &[])
    }

    /// Every line the mapper logged.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.host.logs.lock().unwrap().clone()
    }

    /// The current value of a mapper counter.
    pub fn counter(&self, name: &str) -> u64 {
        self.host
            .counters
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}
