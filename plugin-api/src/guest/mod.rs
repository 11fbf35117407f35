//! WebAssembly glue: WIT bindings and the adapter behind
//! [`export_plugin!`](crate::export_plugin). Compiled only for `wasm32`.

use std::any::Any;
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

pub mod mapper;

use crate::batch::read_batch;
use crate::event::{DeliverError, Delivery};
use crate::plugin::{InitContext, Plugin, parse_config};

#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "exporter-plugin",
        path: "../wit",
        // wasi:http comes from the `wasip2` crate, which the HTTP helper uses.
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
        pub_export_macro: true,
        export_macro_name: "__export_exporter_plugin",
        default_bindings_module: "::auditrelay_plugin_api::__private::bindings",
        runtime_path: "::auditrelay_plugin_api::__private::wit_bindgen::rt",
    });
}

use bindings::auditrelay::plugin::types as wit;

thread_local! {
    /// The one plugin instance of this component (wasm is single-threaded).
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_instance<P: Any, R>(f: impl FnOnce(&mut P) -> R) -> Option<R> {
    INSTANCE.with(|slot| {
        slot.borrow_mut()
            .as_mut()
            .and_then(|any| any.downcast_mut::<P>())
            .map(f)
    })
}

const NOT_INITIALISED: &str = "the plugin was called before init succeeded";

/// `describe` for plugin `P`.
pub fn describe<P: Plugin>() -> wit::PluginInfo {
    to_wit_info(P::info())
}

/// The WIT form of what a plugin (exporter or mapper) says about itself.
fn to_wit_info(info: crate::PluginInfo) -> wit::PluginInfo {
    wit::PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        config_keys: info
            .config_keys
            .into_iter()
            .map(|key| wit::ConfigKey {
                name: key.name,
                description: key.description,
                required: key.required,
                default_value: key.default_value,
            })
            .collect(),
    }
}

/// `init` for plugin `P`.
pub fn init<P: Plugin>(ctx: wit::InitContext) -> Result<(), String> {
    let config = parse_config::<P>(&ctx.config_json).map_err(|e| e.0)?;
    let plugin = P::init(config, &init_context(ctx)).map_err(|e| e.0)?;
    keep_instance(plugin);
    Ok(())
}

fn init_context(ctx: wit::InitContext) -> InitContext {
    InitContext {
        instance: ctx.instance,
        granted_dir: ctx.granted_dir.map(PathBuf::from),
    }
}

fn keep_instance<T: Any>(instance: T) {
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(instance)));
}

fn drop_instance() {
    INSTANCE.with(|slot| slot.borrow_mut().take());
}

/// `deliver` for plugin `P`.
pub fn deliver<P: Plugin>(batch: wit::Batch) -> Result<wit::Delivery, wit::DeliveryError> {
    let events = match read_batch(&batch.data, batch.count) {
        Ok(events) => events,
        Err(error) => return Err(to_wit_error(DeliverError::permanent(error.to_string()))),
    };
    let outcome = with_instance::<P, _>(|plugin| plugin.deliver(&events))
        .unwrap_or_else(|| Err(DeliverError::permanent(NOT_INITIALISED)));
    match outcome {
        Ok(Delivery::Accepted) => Ok(wit::Delivery::Accepted),
        Ok(Delivery::PartiallyRejected(rejected)) => Ok(wit::Delivery::PartiallyRejected(
            rejected
                .into_iter()
                .map(|r| wit::RejectedEvent {
                    index: r.index,
                    reason: r.reason,
                })
                .collect(),
        )),
        Err(error) => Err(to_wit_error(error)),
    }
}

/// `flush` for plugin `P`.
pub fn flush<P: Plugin>() -> Result<(), wit::DeliveryError> {
    with_instance::<P, _>(|plugin| plugin.flush())
        .unwrap_or_else(|| Err(DeliverError::permanent(NOT_INITIALISED)))
        .map_err(to_wit_error)
}

/// `shutdown` for plugin `P`.
pub fn shutdown<P: Plugin>() {
    with_instance::<P, _>(|plugin| plugin.shutdown());
    drop_instance();
}

fn to_wit_error(error: DeliverError) -> wit::DeliveryError {
    match error {
        DeliverError::Retryable {
            message,
            retry_after,
        } => wit::DeliveryError::Retryable(wit::RetryableError {
            message,
            retry_after_ms: retry_after
                .map(|d: Duration| d.as_millis().min(u64::MAX as u128) as u64),
        }),
        DeliverError::Permanent(message) => wit::DeliveryError::Permanent(message),
    }
}

/// Exports plugin type `$plugin` as the component's `exporter` interface.
#[macro_export]
#[doc(hidden)]
macro_rules! __export_wasm_plugin {
    ($plugin:ty) => {
        const _: () = {
            use $crate::__private::bindings::auditrelay::plugin::types as wit;
            use $crate::__private::bindings::exports::auditrelay::plugin::exporter::Guest;

            struct AuditrelayExport;

            impl Guest for AuditrelayExport {
                fn describe() -> wit::PluginInfo {
                    $crate::__private::describe::<$plugin>()
                }
                fn init(ctx: wit::InitContext) -> Result<(), String> {
                    $crate::__private::init::<$plugin>(ctx)
                }
                fn deliver(batch: wit::Batch) -> Result<wit::Delivery, wit::DeliveryError> {
                    $crate::__private::deliver::<$plugin>(batch)
                }
                fn flush() -> Result<(), wit::DeliveryError> {
                    $crate::__private::flush::<$plugin>()
                }
                fn shutdown() {
                    $crate::__private::shutdown::<$plugin>()
                }
            }

            $crate::__private::bindings::__export_exporter_plugin!(AuditrelayExport);
        };
    };
}
