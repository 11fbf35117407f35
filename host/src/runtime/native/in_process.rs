//! A native plugin instance inside the relay's process
//! (`isolation = "in-process"`).
//!
//! Calls go straight through the C ABI on the worker's thread: the batch
//! is passed as the spool holds it, without a copy. A panic the plugin
//! reports (`AR_PANICKED`) shuts the instance down and the next call
//! starts a fresh one; a segfault or abort ends the relay (the reason
//! `process` isolation is the default).

use std::path::Path;

use auditrelay_plugin_api::native::{Host, InitRequest};

use super::callbacks::vtable;
use super::library::{Handle, NativeLibrary};
use super::{NativeSettings, outcome};
use crate::runtime::services::PluginServices;
use crate::runtime::{CallError, Delivery, Exporter, LaunchError};
use auditrelay_plugin_api::batch::EncodedBatch;

/// A native instance running in the relay's process.
pub struct InProcessInstance {
    library: &'static NativeLibrary,
    settings: NativeSettings,
    /// What `host.ctx` points at; boxed so its address never moves.
    services: Box<PluginServices>,
    /// The callback table the plugin was given; boxed for the same reason.
    host: Box<Host>,
    handle: Option<Handle>,
}

// SAFETY: the raw pointers in `host` point into `services`, owned by this
// instance and `Sync`; the plugin may call back from the calling thread,
// and calls never overlap (the instance has one owner).
unsafe impl Send for InProcessInstance {}

impl InProcessInstance {
    /// The instance's services.
    pub fn services(&self) -> &PluginServices {
        &self.services
    }
}

impl InProcessInstance {
    /// Loads the library (checking its ABI version) and starts an
    /// instance.
    pub fn start(path: &Path, settings: NativeSettings) -> Result<Self, LaunchError> {
        let library = NativeLibrary::open(path).map_err(LaunchError::Setup)?;
        let services = Box::new(settings.services.clone());
        let host = Box::new(vtable(&*services));
        let mut instance = InProcessInstance {
            library,
            settings,
            services,
            host,
            handle: None,
        };
        instance.init().map_err(LaunchError::Init)?;
        Ok(instance)
    }

    fn init(&mut self) -> Result<(), String> {
        let context = serde_json::to_vec(&InitRequest {
            instance: self.settings.instance().to_owned(),
            config: self.settings.config.clone(),
            granted_dir: self.settings.grant_dir.clone(),
        })
        .expect("the init context is always JSON");
        // SAFETY: `host` and `services` are boxed in `self` and outlive the
        // handle: `Drop` shuts it down first.
        self.handle = Some(unsafe { self.library.init(&*self.host, &context)? });
        Ok(())
    }

    /// The live handle, starting a fresh instance after a fault.
    fn live(&mut self) -> Result<&mut Handle, CallError> {
        if self.handle.is_none() {
            if let Some(metrics) = self.services.metrics() {
                metrics.restart();
            }
            self.init()
                .map_err(|reason| LaunchError::Init(reason).into_call_error())?;
        }
        Ok(self.handle.as_mut().expect("set above"))
    }

    /// After a fault the plugin's state is suspect: release it, and let
    /// the next call start afresh.
    fn settle<T>(&mut self, result: Result<T, CallError>) -> Result<T, CallError> {
        if let Err(CallError::Fault(_)) = &result {
            self.retire();
        }
        result
    }

    /// Releases the live instance: the next call starts a fresh one.
    pub(crate) fn retire(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.library.shutdown(handle);
        }
    }
}

impl Exporter for InProcessInstance {
    async fn deliver(&mut self, batch: EncodedBatch<'_>) -> Result<Delivery, CallError> {
        let library = self.library;
        let handle = self.live()?;
        let (status, payload) = library.deliver(handle, batch.count, batch.data);
        let result = outcome::delivery(status, &payload);
        self.settle(result)
    }

    async fn flush(&mut self) -> Result<(), CallError> {
        let library = self.library;
        let Some(handle) = self.handle.as_mut() else {
            return Ok(());
        };
        let (status, payload) = library.flush(handle);
        let result = outcome::completion(status, &payload);
        self.settle(result)
    }

    async fn shutdown(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.library.shutdown(handle);
        }
    }
}

impl Drop for InProcessInstance {
    fn drop(&mut self) {
        // The plugin must let go of `host` before the box is freed.
        if let Some(handle) = self.handle.take() {
            self.library.shutdown(handle);
        }
    }
}
