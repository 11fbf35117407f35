/*
 * auditrelay native plugin ABI, version 1.
 *
 * A native plugin is a shared library (.so) exporting the functions below
 * with C linkage. Rust plugins get all of this from
 * `auditrelay_plugin_api::export_plugin!` when built as a `cdylib` for the
 * host target; C (or any language with a C FFI) implements it by hand.
 *
 * Memory: nothing changes owner across the boundary. Every pointer passed
 * in either direction is borrowed for the duration of the call only.
 * Variable-length results are returned by calling the caller's `ar_sink`
 * (once, or not at all) during the call; the callee copies what it needs.
 * So neither side ever frees memory the other allocated, and the two may
 * use different allocators.
 *
 * Strings are UTF-8 with an explicit length, never NUL-terminated.
 * Structured values (describe, init context, outcomes) are JSON, described
 * next to each function. The batch layout is the WIT interface's
 * (wit/plugin.wit, record `batch`).
 *
 * Threads: the host calls one plugin instance from one thread at a time,
 * never concurrently. Host callbacks may be called from that thread during
 * a call, and only then.
 *
 * The host checks `auditrelay_abi_version()` before anything else and
 * refuses a library whose version differs, naming both versions.
 */
#ifndef AUDITRELAY_PLUGIN_H
#define AUDITRELAY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AUDITRELAY_ABI_VERSION 1u

/* Receives `len` bytes at `bytes` (borrowed until it returns). */
typedef void (*ar_sink)(void *out, const uint8_t *bytes, size_t len);

/* Log levels for ar_host.log. */
enum ar_level {
    AR_LEVEL_TRACE = 0,
    AR_LEVEL_DEBUG = 1,
    AR_LEVEL_INFO = 2,
    AR_LEVEL_WARN = 3,
    AR_LEVEL_ERROR = 4
};

/* Services the host provides; passed to auditrelay_init and valid until
 * auditrelay_shutdown returns. `ctx` is the host's, passed back as is. */
typedef struct ar_host {
    void *ctx;
    /* Writes a log line attributed to the plugin instance. */
    void (*log)(void *ctx, uint32_t level, const uint8_t *message, size_t len);
    /* Looks up one of the instance's secrets. Found: calls `sink(out, value)`
     * and returns 1. Not granted: returns 0 without calling it. */
    int32_t (*secret)(void *ctx, const uint8_t *name, size_t name_len, void *out, ar_sink sink);
    /* Adds to a counter; the host prefixes the name with the plugin's. */
    void (*counter_add)(void *ctx, const uint8_t *name, size_t len, uint64_t delta);
    /* Sets a gauge. */
    void (*gauge_set)(void *ctx, const uint8_t *name, size_t len, double value);
} ar_host;

/* Outcome codes of auditrelay_deliver and auditrelay_flush. */
enum ar_status {
    /* Every event was accepted. Sink not called. */
    AR_ACCEPTED = 0,
    /* Some events were refused for good; all others were accepted. Sink:
     * JSON [{"index": 3, "reason": "..."}, ...]. */
    AR_PARTIALLY_REJECTED = 1,
    /* Transient failure, retry the batch. Sink: JSON
     * {"message": "...", "retry_after_ms": 1500} (retry_after_ms optional). */
    AR_RETRYABLE = 2,
    /* The batch can never be delivered as it is. Sink: the message (text). */
    AR_PERMANENT = 3,
    /* The plugin panicked; it is unusable and will be shut down and
     * re-initialised. Sink: the panic message (text). */
    AR_PANICKED = 4
};

/* The ABI version the library implements: AUDITRELAY_ABI_VERSION. */
uint32_t auditrelay_abi_version(void);

/* Describes the plugin. Sink: JSON {"name": "...", "version": "...",
 * "description": "...", "config_keys": [{"name": "...", "description":
 * "...", "required": false, "default_value": "..." | null}]}. */
void auditrelay_describe(void *out, ar_sink sink);

/* Starts an instance. `context` is JSON {"instance": "...", "config":
 * {...}, "granted_dir": "/path" | null}. Returns the instance handle, or
 * NULL after calling `sink(out, error message)`. */
void *auditrelay_init(const ar_host *host, const uint8_t *context, size_t len, void *out, ar_sink sink);

/* Delivers `count` events laid out as the WIT `batch` record's `data`.
 * Returns an ar_status; see there for what goes to the sink. */
int32_t auditrelay_deliver(void *instance, uint32_t count, const uint8_t *data, size_t len, void *out, ar_sink sink);

/* Pushes out anything held in memory. AR_ACCEPTED, AR_RETRYABLE,
 * AR_PERMANENT or AR_PANICKED, with the sink used as for deliver. */
int32_t auditrelay_flush(void *instance, void *out, ar_sink sink);

/* Releases the instance; the handle is invalid afterwards. */
void auditrelay_shutdown(void *instance);

#ifdef __cplusplus
}
#endif

#endif /* AUDITRELAY_PLUGIN_H */
