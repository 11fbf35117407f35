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
