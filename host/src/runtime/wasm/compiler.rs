//! Compiling a plugin in a process of its own, `auditrelay
//! plugin-compiler`, so that a compile can be bounded in time and memory:
//! Cranelift cannot be interrupted, but a process can be killed.
//!
//! The compiler builds the same engine as the relay, compiles the
//! component and stores it in the compiled-plugin [cache](super::cache);
//! the relay then loads it from there. It runs with its data size capped
//! at [`MEMORY_LIMIT`] and is killed when `relay.plugin_load_timeout`
//! passes.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::cache::ComponentCache;

/// The most memory a compile may use (`RLIMIT_DATA` of the compiler).
pub const MEMORY_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

/// Options of `auditrelay plugin-compiler`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The component to compile.
    pub wasm: PathBuf,
    /// The compiled-plugin cache to store it in.
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR"))]
    pub cache: PathBuf,
}

/// Runs the compiler; the process's exit code.
pub fn run(args: Args) -> ExitCode {
    let limit = libc::rlimit {
        rlim_cur: MEMORY_LIMIT,
        rlim_max: MEMORY_LIMIT,
    };
    // SAFETY: setrlimit reads the struct, which lives for the call.
    unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) };
    let compiled = (|| {
        let engine = super::engine().map_err(|e| format!("{e:#}"))?;
        let bytes = std::fs::read(&args.wasm).map_err(|e| format!("cannot read it: {e}"))?;
        let sha256 = crate::runtime::sha256_hex(&bytes);
        let cache = ComponentCache::new(Some(args.cache.clone()), &engine);
        cache
            .load_or_compile(&engine, &bytes, &sha256)
            .map_err(|e| format!("is not a valid WebAssembly component: {e:#}"))?;
        Ok::<_, String>(())
    })();
    match compiled {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Compiles `wasm` into the cache at `cache` in a compiler process; `Err`
/// says why not (its own message, or the time limit).
pub async fn compile_in_process(
    program: &Path,
    wasm: &Path,
    cache: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(program)
        .arg("plugin-compiler")
        .arg(wasm)
        .arg("--cache")
        .arg(cache)
        .env_clear()
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the plugin compiler {}: {e}",
                program.display()
            )
        })?;
    let mut stderr = child.stderr.take().expect("piped");
    let outcome = tokio::time::timeout(timeout, async {
        let mut said = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut said).await;
        (child.wait().await, said)
    })
    .await;
    match outcome {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), said)) if !said.is_empty() => {
            let _ = status;
            Err(String::from_utf8_lossy(&said).into_owned())
        }
        Ok((Ok(status), _)) => Err(format!(
            "the plugin compiler failed ({status}); it may have run out of its {} GiB of memory",
            MEMORY_LIMIT >> 30
        )),
        Ok((Err(error), _)) => Err(format!(
            "the plugin compiler could not be waited for: {error}"
        )),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "compiling it took longer than {} (relay.plugin_load_timeout); it was stopped",
                humantime::format_duration(timeout)
            ))
        }
    }
}
