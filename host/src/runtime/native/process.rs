//! A native plugin instance in a runner process of its own
//! (`isolation = "process"`, the default).
//!
//! The relay starts `auditrelay plugin-runner <library>` with a cleared
//! environment and its data size capped at `limits.memory`, sends the init
//! frame, then one request per call under `limits.timeout`. When the
//! runner dies (segfault, abort, out of memory), sends nonsense or misses
//! the deadline, it is killed and reaped, the fault is classified from its
//! exit signal and last stderr lines, and the next call starts a new one.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::crash::classify;
use super::memory;
use super::protocol::{MAX_REPLY, Reply, Request, RunnerInit, read_frame_async};
use super::{NativeSettings, library, outcome};
use crate::runtime::helper_program;
use crate::runtime::output::{OutputSink, Stream};
use crate::runtime::services::PluginServices;
use crate::runtime::{CallError, Delivery, Exporter, Fault, FaultKind, LaunchError, PluginInfo};
use auditrelay_plugin_api::batch::EncodedBatch;

/// Environment variables a runner keeps; everything else (the relay's
/// `${ENV}` secrets among it) is withheld.
const KEPT_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
/// How long a dying runner gets to exit and flush its stderr.
const GRACE: Duration = Duration::from_secs(2);
/// The pipe buffer asked for (Linux lets unprivileged processes have 1 MiB).
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Why an exchange with a runner ended without an answer.
enum Broken {
    /// No answer within the deadline.
    TimedOut(Duration),
    /// The pipe closed or carried nonsense.
    Io(String),
}

/// A live runner process.
struct Runner {
    /// The id the next request gets (random at start, then counted up).
    next_id: u64,
    child: Child,
    /// Its process group (its pid: it leads the group).
    group: libc::pid_t,
    /// Set by the memory guard when it killed the group.
    over_memory: Arc<AtomicBool>,
    /// The relay's memory guard of the group, if `limits.memory` is set.
    guard: Option<JoinHandle<()>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: OutputSink,
    stderr_done: JoinHandle<()>,
}

impl Runner {
    fn spawn(
        library: &Path,
        services: PluginServices,
        args: &[String],
        memory_limit: Option<u64>,
    ) -> Result<Box<Runner>, String> {
        let program = helper_program()?;
        let mut command = Command::new(&program);
        command
            .arg("plugin-runner")
            .args(args)
            .arg(library)
            .env_clear()
            .envs(
                KEPT_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: the watchdog kills it whole, with
            // whatever the plugin forked.
            .process_group(0)
            .kill_on_drop(true);
        // Spawned from one of the relay's long-lived runtime threads: the
        // runner's parent-death signal fires when the spawning thread ends.
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start the plugin runner {}: {e} (set AUDITRELAY_BIN to the auditrelay executable)",
                program.display()
            )
        })?;
        let (Some(stdin), Some(stdout), Some(mut err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams were piped");
        };
        widen_pipe(stdin.as_raw_fd());
        widen_pipe(stdout.as_raw_fd());
        let stderr = OutputSink::new(services, Stream::Stderr);
        let sink = stderr.clone();
        let stderr_done = tokio::spawn(async move {
            let mut chunk = vec![0u8; 8192];
            while let Ok(n @ 1..) = err.read(&mut chunk).await {
                sink.write(&chunk[..n]);
            }
            sink.finish();
        });
        let group = child.id().map_or(0, |pid| pid as libc::pid_t);
        let over_memory = Arc::new(AtomicBool::new(false));
        let guard = memory_limit
            .filter(|_| group > 0)
            .map(|limit| tokio::spawn(memory::guard(group, limit, over_memory.clone())));
        Ok(Box::new(Runner {
            next_id: rand::random::<u64>() | 1,
            child,
            group,
            over_memory,
            guard,
            stdin,
            stdout: BufReader::with_capacity(64 * 1024, stdout),
            stderr,
            stderr_done,
        }))
    }

    /// The id for the next request.
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Sends `request` under the next id (framed into `buf`, which is
    /// reused between calls) and serves until its answer.
    async fn send(
        &mut self,
        request: Request<'_>,
        buf: &mut Vec<u8>,
        services: &PluginServices,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), Broken> {
        let id = self.take_id();
        buf.clear();
        request.write_to(id, buf);
        self.exchange(buf, id, services, timeout).await
    }

    /// Sends `request` (one frame, written with id `id`) and serves the
    /// plugin's host-service frames until the answer. An answer for any
    /// other id breaks the exchange. Host-service frames (logs, metrics)
    /// are served whatever id they carry: a plugin's own threads call them
    /// between requests too, stamped with the request served before.
    async fn exchange(
        &mut self,
        request: &[u8],
        id: u64,
        services: &PluginServices,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), Broken> {
        let exchange = async {
            self.stdin.write_all(request).await?;
            self.stdin.flush().await?;
            loop {
                let frame = read_frame_async(&mut self.stdout, MAX_REPLY).await?;
                let (frame_id, reply) = Reply::parse(frame).map_err(std::io::Error::other)?;
                match reply {
                    Reply::Done { .. } if frame_id != id => {
                        return Err(std::io::Error::other(
                            "an answer that does not belong to the request being served (something other than the runner wrote to its protocol pipe)",
                        ));
                    }
                    Reply::Done { status, payload } => {
                        return Ok::<_, std::io::Error>((status, payload));
                    }
                    Reply::Log { level, message } => services.log(
                        super::callbacks::level(level),
                        &String::from_utf8_lossy(&message),
                    ),
                    Reply::Counter { name, delta } => {
                        services.counter_add(&String::from_utf8_lossy(&name), delta)
                    }
                    Reply::Gauge { name, value } => {
                        services.gauge_set(&String::from_utf8_lossy(&name), value)
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(Broken::Io(error.to_string())),
            Err(_) => Err(Broken::TimedOut(timeout)),
        }
    }

    /// Ends the runner after a broken exchange and says what happened.
    async fn end(mut self: Box<Self>, broken: Broken, memory_limit: Option<u64>) -> Fault {
        let pid = self.child.id().unwrap_or_default();
        let error = match broken {
            Broken::Io(error) => error,
            Broken::TimedOut(timeout) => {
                let _ = self.child.kill().await;
                return Fault::new(
                    FaultKind::Deadline,
                    format!(
                        "did not answer within {timeout:?} (limits.timeout); its runner process {pid} was killed"
                    ),
                );
            }
        };
        let status = match tokio::time::timeout(GRACE, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        let _ = tokio::time::timeout(GRACE, &mut self.stderr_done).await;
        let tail = self.stderr.take_tail();
        let over_memory = self.over_memory.load(Ordering::SeqCst);
        match status {
            Some(status) => classify(status, &tail, memory_limit, over_memory),
            None => Fault::new(
                FaultKind::Other,
                format!("broke the protocol ({error}); its runner process {pid} was killed"),
            ),
        }
    }
}

/// Whatever way a runner goes, its whole group goes with it (the watchdog
/// in the group does the same if the relay itself dies), and its guard.
impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.abort();
        }
        if self.group > 0 {
            // SAFETY: kill takes plain integers; the group is the runner's,
            // which the relay started as its leader.
            unsafe { libc::kill(-self.group, libc::SIGKILL) };
        }
    }
}

/// Asks for a pipe buffer that holds a large batch whole: each time a
/// pipe fills, both processes must wake up, and a wake-up costs tens of
/// microseconds on a virtual machine. Best effort: the default 64 KiB
/// works, only slower.
fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES) };
}

/// Asks a runner process for the plugin's description.
pub(super) async fn describe_in_runner(
    path: &Path,
    timeout: Duration,
) -> Result<PluginInfo, String> {
    // Whatever it prints while loading is logged under its file name.
    let services = PluginServices::new(&path.display().to_string(), Default::default(), None);
    let mut runner = Runner::spawn(path, services.clone(), &["--describe".to_owned()], None)?;
    match runner.exchange(&[], 0, &services, timeout).await {
        Ok((0, json)) => {
            let _ = runner.child.wait().await;
            library::parse_info(&json)
        }
        Ok((_, reason)) => Err(String::from_utf8_lossy(&reason).into_owned()),
        Err(broken) => Err(format!(
            "crashed while describing itself: {}",
            runner.end(broken, None).await.message
        )),
    }
}

/// A native instance running in a runner process.
pub struct ChildInstance {
    library: PathBuf,
    settings: NativeSettings,
    /// Boxed: a runner's pipes and tasks are large, and instances move.
    live: Option<Box<Runner>>,
    /// The request being sent, reused between calls.
    request: Vec<u8>,
}

impl ChildInstance {
    /// What the instance was given and is held to.
    pub fn settings(&self) -> &NativeSettings {
        &self.settings
    }

    /// Starts a runner for the library at `path` and initialises the
    /// instance in it.
    pub async fn start(path: &Path, settings: NativeSettings) -> Result<Self, LaunchError> {
        let mut instance = ChildInstance {
            library: path.to_owned(),
            settings,
            live: None,
            request: Vec::new(),
        };
        instance.launch().await?;
        Ok(instance)
    }

    /// Starts a runner and the instance in it.
    async fn launch(&mut self) -> Result<(), LaunchError> {
        let settings = &self.settings;
        let mut runner = Runner::spawn(
            &self.library,
            settings.services.clone(),
            &[
                "--memory-limit".to_owned(),
                settings.memory_limit.to_string(),
            ],
            Some(settings.memory_limit),
        )
        .map_err(LaunchError::Setup)?;
        let init = RunnerInit {
            instance: settings.instance().to_owned(),
            config: settings.config.clone(),
            granted_dir: settings.grant_dir.clone(),
            secrets: settings
                .services
                .secrets()
                .iter()
                .map(|(name, secret)| (name.clone(), secret.expose().to_owned()))
                .collect(),
        };
        let json = serde_json::to_vec(&init).expect("the init frame is always JSON");
        let answer = runner
            .send(
                Request::Init(&json),
                &mut self.request,
                &settings.services,
                settings.call_timeout,
            )
            .await;
        match answer {
            Ok((0, _)) => {
                self.live = Some(runner);
                Ok(())
            }
            Ok((_, reason)) => Err(LaunchError::Init(
                settings.services.admit(&String::from_utf8_lossy(&reason)),
            )),
            Err(broken) => Err(LaunchError::Fault(
                runner.end(broken, Some(settings.memory_limit)).await,
            )),
        }
    }

    /// Sends `request`, starting a runner first if none is live. A broken
    /// exchange ends the runner and becomes a fault.
    async fn call(&mut self, request: Request<'_>) -> Result<(i32, Vec<u8>), CallError> {
        if self.live.is_none() {
            if let Some(metrics) = self.settings.services.metrics() {
                metrics.restart();
            }
            self.launch().await.map_err(LaunchError::into_call_error)?;
        }
        let runner = self.live.as_mut().expect("launched above");
        let settings = &self.settings;
        match runner
            .send(
                request,
                &mut self.request,
                &settings.services,
                settings.call_timeout,
            )
            .await
        {
            Ok(done) => Ok(done),
            Err(broken) => {
                let runner = self.live.take().expect("used above");
                Err(CallError::Fault(
                    runner.end(broken, Some(settings.memory_limit)).await,
                ))
            }
        }
    }

    /// A plugin that reported a panic is not trusted with another call:
    /// its runner goes, and the next call starts a fresh one.
    async fn settle<T>(&mut self, result: Result<T, CallError>) -> Result<T, CallError> {
        if let Err(CallError::Fault(_)) = &result {
            self.retire().await;
        }
        result
    }

    /// Kills the live runner: the next call starts a fresh one.
    pub(crate) async fn retire(&mut self) {
        if let Some(mut runner) = self.live.take() {
            let _ = runner.child.kill().await;
        }
    }
}

impl Exporter for ChildInstance {
    async fn deliver(&mut self, batch: EncodedBatch<'_>) -> Result<Delivery, CallError> {
        let (status, payload) = self
            .call(Request::Deliver {
                count: batch.count,
                data: batch.data,
            })
            .await?;
        let result = outcome::delivery(status, &payload);
        self.settle(result).await
    }

    async fn flush(&mut self) -> Result<(), CallError> {
        // A fresh runner holds nothing to flush.
        if self.live.is_none() {
            return Ok(());
        }
        let (status, payload) = self.call(Request::Flush).await?;
        let result = outcome::completion(status, &payload);
        self.settle(result).await
    }

    async fn shutdown(&mut self) {
        let Some(mut runner) = self.live.take() else {
            return;
        };
        let settings = &self.settings;
        let answer = runner
            .send(
                Request::Shutdown,
                &mut self.request,
                &settings.services,
                settings.call_timeout,
            )
            .await;
        if answer.is_err() {
            tracing::warn!(
                plugin = settings.instance(),
                "plugin did not shut down cleanly"
            );
        }
        if tokio::time::timeout(GRACE, runner.child.wait())
            .await
            .is_err()
        {
            let _ = runner.child.kill().await;
        }
    }
}
