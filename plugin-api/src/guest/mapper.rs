//! WebAssembly glue of the `mapper-plugin` world: its bindings and the
//! adapter behind [`export_mapper!`](crate::export_mapper).

use super::{
    NOT_INITIALISED, drop_instance, init_context, keep_instance, to_wit_info, with_instance,
};
use crate::mapper::{Mapped, Mapper, Record};
use crate::plugin::parse_config_as;

#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "mapper-plugin",
        path: "../wit",
        // The interfaces both worlds import are the exporter bindings' own,
        // so one `log`, one `PluginInfo`, whichever world a plugin targets.
        with: {
            "auditrelay:plugin/types@1.1.0": crate::guest::bindings::auditrelay::plugin::types,
            "auditrelay:plugin/log@1.1.0": crate::guest::bindings::auditrelay::plugin::log,
            "auditrelay:plugin/secrets@1.1.0": crate::guest::bindings::auditrelay::plugin::secrets,
            "auditrelay:plugin/metrics@1.1.0": crate::guest::bindings::auditrelay::plugin::metrics,
        },
        pub_export_macro: true,
        export_macro_name: "__export_mapper_plugin",
        default_bindings_module: "::auditrelay_plugin_api::__private::mapper_bindings",
        runtime_path: "::auditrelay_plugin_api::__private::wit_bindgen::rt",
    });
}

use super::wit;
use bindings::exports::auditrelay::plugin::mapper as wit_mapper;

/// `describe` for mapper `M`.
pub fn describe<M: Mapper>() -> wit::PluginInfo {
    to_wit_info(M::info())
}

/// `init` for mapper `M`.
pub fn init<M: Mapper>(ctx: wit::InitContext) -> Result<(), String> {
    let config = parse_config_as::<M::Config>(&ctx.config_json).map_err(|e| e.0)?;
    let mapper = M::init(config, &init_context(ctx)).map_err(|e| e.0)?;
    keep_instance(mapper);
    Ok(())
}

/// `map` for mapper `M`: one answer per record, in order.
pub fn map<M: Mapper>(batch: wit_mapper::RecordBatch) -> Vec<wit_mapper::Mapped> {
    let answers = with_instance::<M, _>(|mapper| {
        batch
            .records
            .iter()
            .map(|record| {
                mapper.map(&Record {
                    source: &batch.source,
                    content_type: &batch.content_type,
                    data: &record.data,
                    metadata: &record.metadata,
                })
            })
            .collect::<Vec<_>>()
    })
    .unwrap_or_else(|| {
        let refused = Mapped::refused(NOT_INITIALISED);
        vec![refused; batch.records.len()]
    });
    answers
        .into_iter()
        .map(|mapped| match mapped {
            Mapped::Envelopes(json) => wit_mapper::Mapped::Envelopes(json),
            Mapped::Refused(reason) => wit_mapper::Mapped::Refused(reason),
        })
        .collect()
}

/// `shutdown` for mapper `M`.
pub fn shutdown<M: Mapper>() {
    with_instance::<M, _>(|mapper| mapper.shutdown());
    drop_instance();
}

/// Exports mapper type `$mapper` as the component's `mapper` interface.
#[macro_export]
#[doc(hidden)]
macro_rules! __export_wasm_mapper {
    ($mapper:ty) => {
        const _: () = {
            use $crate::__private::bindings::auditrelay::plugin::types as wit;
            use $crate::__private::mapper_bindings::exports::auditrelay::plugin::mapper::{
                Guest, Mapped, RecordBatch,
            };

            struct AuditrelayMapper;

            impl Guest for AuditrelayMapper {
                fn describe() -> wit::PluginInfo {
                    $crate::__private::mapper_glue::describe::<$mapper>()
                }
                fn init(ctx: wit::InitContext) -> Result<(), String> {
                    $crate::__private::mapper_glue::init::<$mapper>(ctx)
                }
                fn map_records(batch: RecordBatch) -> Vec<Mapped> {
                    $crate::__private::mapper_glue::map::<$mapper>(batch)
                }
                fn shutdown() {
                    $crate::__private::mapper_glue::shutdown::<$mapper>()
                }
            }

            $crate::__private::mapper_bindings::__export_mapper_plugin!(AuditrelayMapper);
        };
    };
}
