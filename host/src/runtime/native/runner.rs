//! `auditrelay plugin-runner`: the child process a native plugin runs in
//! under `process` isolation. Not meant to be started by hand.
//!
//! The runner is deliberately plain: one thread, no async runtime, no
//! configuration. It sets itself up (dies with its parent, caps its data
//! size, keeps stdout for the protocol and points the plugin's own stdout
//! at stderr, starts its watchdog), opens the library
//! — which checks its ABI version — and then answers
//! [`protocol`](super::protocol) requests until told to shut down or its
//! stdin closes. Every reply carries the id of the request it answers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use auditrelay_plugin_api::host::Level;
use auditrelay_plugin_api::native::{InitRequest, Status};

use super::callbacks::{Services, vtable};
use super::library::{Handle, NativeLibrary};
use super::protocol::{MAX_REQUEST, Reply, Request, RunnerInit, read_frame};

/// Options of `auditrelay plugin-runner`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The plugin library.
    pub library: PathBuf,
    /// Print the plugin's description as one reply frame and exit.
    #[cfg_attr(feature = "cli", arg(long))]
    pub describe: bool,
    /// Cap the process's data size (`RLIMIT_DATA`), in bytes.
    #[cfg_attr(feature = "cli", arg(long, value_name = "BYTES"))]
    pub memory_limit: Option<u64>,
}

/// Where replies go: the private copy of stdout, and the id of the
/// request being served (the plugin may call back from its own threads).
struct Replies {
    out: Mutex<BufWriter<File>>,
    serving: AtomicU64,
}

impl Replies {
    /// Sends a frame for the request being served.
    fn send(&self, reply: Reply) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A broken pipe means the relay is gone; the next read ends the loop.
        let _ = reply.write_to(self.serving.load(Ordering::Relaxed), &mut *out);
    }

    /// Sends a request's answer; `false` if the relay is gone.
    fn done(&self, status: i32, payload: Vec<u8>) -> bool {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        Reply::Done { status, payload }
            .write_to(self.serving.load(Ordering::Relaxed), &mut *out)
            .and_then(|()| out.flush())
            .is_ok()
    }
}

/// The host services inside the runner: secrets from the init frame,
/// everything else sent to the relay as frames.
struct RunnerServices {
    secrets: BTreeMap<String, String>,
    replies: &'static Replies,
}

impl RunnerServices {
    fn send(&self, reply: Reply) {
        self.replies.send(reply);
    }
}

impl Services for RunnerServices {
    fn log(&self, level: Level, message: &str) {
        self.send(Reply::Log {
            level: level as u32,
            message: message.as_bytes().to_vec(),
        });
    }

    fn with_secret(&self, name: &str, found: &mut dyn FnMut(&str)) -> bool {
        self.secrets.get(name).map(|v| found(v)).is_some()
    }

    fn counter_add(&self, name: &str, delta: u64) {
        self.send(Reply::Counter {
            name: name.as_bytes().to_vec(),
            delta,
        });
    }

    fn gauge_set(&self, name: &str, value: f64) {
        self.send(Reply::Gauge {
            name: name.as_bytes().to_vec(),
            value,
        });
    }
}

/// Runs the plugin runner; the process's exit code.
pub fn run(args: Args) -> ExitCode {
    die_with_parent();
    ignore_stop_signals();
    let replies: &'static Replies = match take_stdout() {
        Ok(file) => Box::leak(Box::new(Replies {
            out: Mutex::new(BufWriter::new(file)),
            serving: AtomicU64::new(0),
        })),
        Err(error) => {
            eprintln!("plugin-runner: cannot set up its output: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut input = BufReader::with_capacity(256 * 1024, io::stdin().lock());
    let mut frame = Vec::new();
    // A runner that cannot start answers the relay's first request (init)
    // with why; describing has no request.
    let fail = |input: &mut BufReader<io::StdinLock<'_>>, frame: &mut Vec<u8>, reason: String| {
        if !args.describe
            && matches!(read_frame(input, frame, MAX_REQUEST), Ok(true))
            && let Ok((id, _)) = Request::parse(frame)
        {
            replies.serving.store(id, Ordering::Relaxed);
        }
        replies.done(Status::Permanent as i32, reason.into_bytes());
        ExitCode::FAILURE
    };
    if !args.describe
        && let Err(error) = super::watchdog::start()
    {
        return fail(
            &mut input,
            &mut frame,
            format!("cannot start the runner's watchdog: {error}"),
        );
    }
    if let Some(limit) = args.memory_limit
        && let Err(error) = cap_data_size(limit)
    {
        return fail(
            &mut input,
            &mut frame,
            format!("cannot cap the runner's memory at {limit} bytes: {error}"),
        );
    }
    let library = match NativeLibrary::open(&args.library) {
        Ok(library) => library,
        Err(reason) => return fail(&mut input, &mut frame, reason),
    };
    if args.describe {
        let json = library.describe_json();
        return if replies.done(Status::Accepted as i32, json) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    serve(library, replies, input, frame)
}

/// Answers requests until shutdown or the end of stdin.
fn serve(
    library: &'static NativeLibrary,
    replies: &'static Replies,
    mut input: BufReader<io::StdinLock<'_>>,
    mut frame: Vec<u8>,
) -> ExitCode {
    let reply = |status: i32, payload: Vec<u8>| replies.done(status, payload);
    let done = |status: Status, payload: Vec<u8>| reply(status as i32, payload);
    // Both live until the process exits: the plugin may keep the
    // callback table and call it from its own threads.
    let mut instance: Option<(Handle, &'static RunnerServices)> = None;
    loop {
        match read_frame(&mut input, &mut frame, MAX_REQUEST) {
            Ok(true) => {}
            // The relay closed the pipe (or went away): nothing more to do.
            Ok(false) | Err(_) => return ExitCode::SUCCESS,
        }
        let request = match Request::parse(&frame) {
            Ok((id, request)) => {
                replies.serving.store(id, Ordering::Relaxed);
                request
            }
            Err(reason) => {
                eprintln!("plugin-runner: {reason}; exiting");
                return ExitCode::FAILURE;
            }
        };
        let sent = match request {
            Request::Init(json) => match start(library, json, replies) {
                Ok(started) => {
                    instance = Some(started);
                    done(Status::Accepted, Vec::new())
                }
                Err(reason) => done(Status::Permanent, reason.into_bytes()),
            },
            Request::Deliver { count, data } => match instance.as_mut() {
                Some((handle, _)) => {
                    let (status, payload) = library.deliver(handle, count, data);
                    reply(status, payload)
                }
                None => done(Status::Permanent, b"deliver before init".to_vec()),
            },
            Request::Flush => match instance.as_mut() {
                Some((handle, _)) => {
                    let (status, payload) = library.flush(handle);
                    reply(status, payload)
                }
                None => done(Status::Accepted, Vec::new()),
            },
            Request::Shutdown => {
                if let Some((handle, _)) = instance.take() {
                    library.shutdown(handle);
                }
                done(Status::Accepted, Vec::new());
                return ExitCode::SUCCESS;
            }
        };
        if !sent {
            return ExitCode::SUCCESS;
        }
    }
}

fn start(
    library: &'static NativeLibrary,
    json: &[u8],
    replies: &'static Replies,
) -> Result<(Handle, &'static RunnerServices), String> {
    let init: RunnerInit =
        serde_json::from_slice(json).map_err(|e| format!("unreadable init frame: {e}"))?;
    let services: &'static RunnerServices = Box::leak(Box::new(RunnerServices {
        secrets: init.secrets,
        replies,
    }));
    let host: &'static _ = Box::leak(Box::new(vtable(services)));
    let context = serde_json::to_vec(&InitRequest {
        instance: init.instance,
        config: init.config,
        granted_dir: init.granted_dir,
    })
    .expect("the init context is always JSON");
    // SAFETY: `host` and `services` are leaked: valid for the process's life.
    let handle = unsafe { library.init(host, &context)? };
    Ok((handle, services))
}

/// Keeps the real stdout for replies and sends anything the plugin prints
/// there to stderr instead, where the relay logs it.
fn take_stdout() -> io::Result<File> {
    // SAFETY: plain descriptor calls on the process's own descriptors,
    // before any other thread exists.
    unsafe {
        let replies = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if replies < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(replies))
    }
}

/// Asks the kernel to kill the runner when the relay dies, however it
/// dies, so no orphan keeps running plugin code.
fn die_with_parent() {
    // SAFETY: prctl with these arguments only sets a process attribute.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // The relay may have died before the request took effect.
        if libc::getppid() == 1 {
            libc::_exit(1);
        }
    }
}

/// Leaves SIGINT and SIGTERM to the relay. They reach the whole process
/// group (Ctrl-C, `systemctl stop`) while the relay is still draining into
/// this plugin; the runner ends when the relay says so, closes its pipe or
/// dies.
fn ignore_stop_signals() {
    // SAFETY: setting a signal's disposition to "ignore" installs no code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

/// Caps the data segment and private mappings (what `malloc` draws on), so
/// a plugin that leaks fails an allocation instead of starving the host.
/// Shared memory escapes this cap; the relay's memory guard counts it.
fn cap_data_size(bytes: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct, which lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
