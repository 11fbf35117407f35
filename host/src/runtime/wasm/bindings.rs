//! Host-side bindings of the `auditrelay:plugin` WIT package.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "exporter-plugin",
    path: "../wit",
    // Plugin exports are called asynchronously so that a runaway plugin
    // yields at every epoch tick and a deadline can cancel it.
    exports: { default: async },
    // Batches are lowered straight from the spool's records, without
    // copying their strings into owned host structs first.
    ownership: Borrowing { duplicate_if_necessary: true },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    require_store_data_send: true,
});

/// The `mapper-plugin` world (WIT 1.1.0). The interfaces it shares with
/// the exporter world are the exporter bindings' own, so one linker and
/// one `Host` implementation serve both kinds of plugin.
pub mod mapper_world {
    wasmtime::component::bindgen!({
        world: "mapper-plugin",
        path: "../wit",
        exports: { default: async },
        // As the exporter bindings, whose types these share.
        ownership: Borrowing { duplicate_if_necessary: true },
        with: {
            "auditrelay:plugin/types": super::auditrelay::plugin::types,
            "auditrelay:plugin/log": super::auditrelay::plugin::log,
            "auditrelay:plugin/secrets": super::auditrelay::plugin::secrets,
            "auditrelay:plugin/metrics": super::auditrelay::plugin::metrics,
        },
        require_store_data_send: true,
    });
}
