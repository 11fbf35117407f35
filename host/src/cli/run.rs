//! `auditrelay run`

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ingest::file::FileIngest;
use crate::ingest::http::HttpIngest;
use crate::ingest::outbox::OutboxIngest;
use crate::ingest::poll::PollIngest;
use crate::relay::Relay;

/// Runs until the first SIGINT/SIGTERM, then shuts down gracefully; a
/// second signal exits at once. HTTP ingest and the outbox readers start as
/// soon as the spool is open: events are accepted (and held in the spool)
/// while plugins load.
pub async fn run(config: Config) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    let relay = Relay::open(config.clone()).await?;
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(stop.clone()));
    // Outbox rows and file lines are spooled as soon as the spool is open,
    // like HTTP events; each reader finishes its cycle under way when
    // stopped. They are registered before HTTP answers, so /v1/status
    // lists them from its first answer.
    let outboxes: Vec<_> = config
        .ingest
        .outbox
        .iter()
        .filter(|(_, settings)| settings.enabled)
        .map(|(name, settings)| OutboxIngest::new(relay.clone(), name, settings))
        .collect::<Result<_, _>>()?;
    let files: Vec<_> = config
        .ingest
        .file
        .iter()
        .filter(|(_, settings)| settings.enabled)
        .map(|(name, settings)| {
            FileIngest::new(
                relay.clone(),
                name,
                settings,
                &config.relay.data_dir.sources(),
            )
        })
        .collect();
    let polls: Vec<_> = config
        .ingest
        .poll
        .iter()
        .filter(|(_, settings)| settings.enabled)
        .map(|(name, settings)| {
            PollIngest::new(
                relay.clone(),
                name,
                settings,
                &config.relay.data_dir.sources(),
            )
        })
        .collect();
    let server = if config.ingest.http.enabled {
        let http = HttpIngest::bind(relay.clone(), &config).await?;
        let addr = http.local_addr()?;
        super::relay_api::record_address(&config, addr);
        tracing::info!(
            max_connections = http.max_connections(),
            "accepting events at http://{addr}/v1/events (metrics at /metrics, status at /v1/status)"
        );
        Some(tokio::spawn(http.serve(stop.clone().cancelled_owned())))
    } else {
        tracing::info!(
            "HTTP ingest is disabled (ingest.http.enabled = false); waiting for a signal"
        );
        None
    };

    let outboxes: Vec<_> = outboxes
        .into_iter()
        .map(|outbox| tokio::spawn(outbox.run(stop.clone())))
        .chain(
            files
                .into_iter()
                .map(|file| tokio::spawn(file.run(stop.clone()))),
        )
        .chain(
            polls
                .into_iter()
                .map(|poll| tokio::spawn(poll.run(stop.clone()))),
        )
        .collect();

    let mut failed = false;
    tokio::select! {
        ready = relay.ready() => match ready {
            Ok(()) => report_plugins(&relay),
            Err(error) => {
                // Accepted events are durable in the spool: nothing is lost
                // by stopping; they are delivered once a plugin can run.
                tracing::error!("{error}; stopping (the events accepted so far stay in the spool)");
                failed = true;
                stop.cancel();
            }
        },
        () = stop.cancelled() => {}
    }
    stop.cancelled().await;
    if let Some(server) = server {
        let _ = server.await;
    }
    for outbox in outboxes {
        let _ = outbox.await;
    }

    tracing::info!("shutting down: delivering what is buffered (up to relay.shutdown_timeout)");
    let report = relay.shutdown().await;
    let _ = std::fs::remove_file(super::relay_api::address_file(&config));
    if report.undelivered.is_empty() && !failed {
        tracing::info!("stopped; every accepted event was delivered");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Logs the instances that are not running once every one was tried.
fn report_plugins(relay: &Relay) {
    for status in relay.status().plugins {
        if let Some(error) = &status.error {
            tracing::warn!(plugin = status.instance, state = ?status.state, "not running: {error}");
        }
    }
}

/// Starts the relay with a spinner while plugins compile.
pub async fn start(config: &Config) -> anyhow::Result<Relay> {
    let spinner = super::spinner("loading plugins");
    let relay = Relay::start(config.clone()).await;
    spinner.finish_and_clear();
    let relay = relay?;
    report_plugins(&relay);
    Ok(relay)
}

/// Raises the soft limit on open files to the hard limit: every client
/// connection, segment and plugin file takes a descriptor, and the default
/// soft limit (often 1024) is far below what the system allows.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct, which lives
    // for the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let before = limit.rlim_cur;
        if before >= limit.rlim_max {
            tracing::info!(open_files = before, "open-file limit");
            return;
        }
        // An unlimited hard limit cannot be the soft one: the kernel caps
        // descriptors at fs.nr_open.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(1 << 20);
        limit.rlim_cur = limit.rlim_max.min(nr_open);
        if limit.rlim_cur <= before {
            return;
        }
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            tracing::info!(
                open_files = limit.rlim_cur,
                was = before,
                "raised the open-file limit to the hard limit"
            );
        } else {
            tracing::warn!(
                open_files = before,
                hard_limit = limit.rlim_max,
                error = %std::io::Error::last_os_error(),
                "cannot raise the open-file limit"
            );
        }
    }
}

async fn watch_signals(stop: CancellationToken) {
    let mut signals = Signals::new();
    signals.next().await;
    tracing::info!("signal received; send it again to exit at once");
    stop.cancel();
    signals.next().await;
    tracing::warn!("second signal: exiting without waiting for deliveries");
    std::process::exit(130);
}

/// SIGINT and SIGTERM, registered once so that no signal is seen twice.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(&mut self.interrupt) => {}
                () = recv(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
