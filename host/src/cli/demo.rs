//! `auditrelay demo`: the quick start's end to end run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome, Severity, Target};

use crate::config::Config;
use crate::ingest::http::HttpIngest;

/// Options of `auditrelay demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many sample events to send (half in-process, half over HTTP)
    #[arg(long, default_value_t = 1000)]
    events: usize,
}

/// How long the demo waits for the plugins to deliver everything.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the relay, sends sample events both ways, waits for delivery and
/// shows where they landed.
pub async fn demo(mut config: Config, args: Args) -> anyhow::Result<ExitCode> {
    // Any free port: the demo must not clash with a relay already running.
    config.ingest.http.listen.set_port(0);
    let relay = super::run::start(&config).await?;
    let http = HttpIngest::bind(relay.clone(), &config).await?;
    let url = format!("http://{}/v1/events", http.local_addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(http.serve(stop.clone().cancelled_owned()));

    let started = Instant::now();
    let in_process = args.events / 2;
    for i in 0..in_process {
        relay.emit(sample_event(i))?;
    }
    let over_http = args.events - in_process;
    post_samples(
        &url,
        in_process,
        over_http,
        config.ingest.http.auth_token.as_ref().map(|t| t.expose()),
    )
    .await?;
    let delivered = relay.idle(DELIVERY_TIMEOUT).await;
    let elapsed = started.elapsed();

    println!();
    println!(
        "sent {} sample events: {in_process} with Relay::emit, {over_http} with POST {url}",
        args.events
    );
    for status in relay.status().plugins {
        match &status.error {
            Some(error) => println!("  plugin {}: not running: {error}", status.instance),
            None => println!(
                "  plugin {}: {} delivered, {} dead letters, {} waiting",
                status.instance, status.delivered, status.dead_letters, status.lag_events
            ),
        }
    }
    for (instance, settings) in config.enabled_plugins() {
        if let Some(dir) = &settings.grant_dir {
            show_files(instance, dir)?;
        }
    }
    println!(
        "delivered in {:.0} ms; metrics: `auditrelay run`, then GET /metrics",
        elapsed.as_secs_f64() * 1000.0
    );

    relay.shutdown().await;
    stop.cancel();
    let _ = server.await;
    if config.integrity.chain {
        let dirs: Vec<PathBuf> = config
            .enabled_plugins()
            .filter_map(|(_, settings)| settings.grant_dir.clone())
            .collect();
        show_verified(&config, &dirs)?;
    }
    if !delivered {
        bail!("not every event was delivered within {DELIVERY_TIMEOUT:?}; see the log above");
    }
    Ok(ExitCode::SUCCESS)
}

async fn post_samples(
    url: &str,
    first: usize,
    count: usize,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut next = first;
    while next < first + count {
        let end = (next + 250).min(first + count);
        let batch: Vec<AuditEventEnvelope> = (next..end).map(sample_event).collect();
        let mut request = client.post(url).json(&batch);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.context("posting sample events")?;
        if response.status() != reqwest::StatusCode::ACCEPTED {
            bail!(
                "the relay answered HTTP {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        next = end;
    }
    Ok(())
}

/// Verifies what the plugins wrote with the relay's public key, as an
/// auditor would (`auditrelay verify`).
fn show_verified(config: &Config, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let key = crate::integrity::keys::load(&config.integrity.key_path(&config.relay.data_dir))?;
    let mut verifier = crate::integrity::verify::Verifier::new(vec![key.verifier()]);
    let Ok(files) = crate::integrity::verify::input::expand(dirs) else {
        return Ok(());
    };
    for file in &files {
        verifier.read_path(file);
    }
    let report = verifier.finish().report;
    println!();
    println!(
        "verified with the public key {} (as `auditrelay verify {}` does):",
        key.verifier().to_text(),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for line in report.to_text().lines() {
        println!("  {line}");
    }
    Ok(())
}

/// Lists the newest files an instance wrote and shows one event.
fn show_files(instance: &str, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let Some(newest) = files.last() else {
        println!("  {instance} wrote no files in {}", dir.display());
        return Ok(());
    };
    let text = std::fs::read_to_string(newest).unwrap_or_default();
    println!(
        "  {instance} writes into {} ({} file(s)); newest: {} ({} events)",
        dir.display(),
        files.len(),
        newest.display(),
        text.lines().count()
    );
    if let Some(line) = text.lines().last()
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
    {
        println!(
            "  its last event:\n{}",
            serde_json::to_string_pretty(&value)?
        );
    }
    Ok(())
}

/// A plausible audit event: group changes, logins, invoice approvals.
fn sample_event(i: usize) -> AuditEventEnvelope {
    let tenants = ["acme", "globex", "initech"];
    let tenant = tenants[i % tenants.len()];
    let user = format!("u-{}", 100 + i % 37);
    let builder = match i % 3 {
        0 => AuditEventEnvelope::builder("access-api", "group.member_added")
            .action_name("add_member")
            .outcome(Outcome::Success)
            .severity(Severity::Medium)
            .target(Target::new("group", format!("g-{}", i % 11)).name("payments-oncall"))
            .reason("on-call rotation")
            .payload(
                serde_json::json!({"member": format!("u-{}", 200 + i % 53), "role": "member"}),
            ),
        1 => AuditEventEnvelope::builder("identity", "user.login")
            .action_name("login")
            .outcome(if i % 7 == 1 {
                Outcome::Failure
            } else {
                Outcome::Success
            })
            .status_code(if i % 7 == 1 { 401 } else { 200 })
            .payload(serde_json::json!({"method": "password+totp"})),
        _ => AuditEventEnvelope::builder("billing-api", "invoice.approved")
            .action_name("approve")
            .outcome(Outcome::Success)
            .severity(Severity::High)
            .target(Target::new("invoice", format!("inv-{}", 5000 + i)))
            .payload(serde_json::json!({"amount_cents": 12_500 + i * 10, "currency": "EUR"})),
    };
    builder
        .tenant(tenant)
        .actor(
            Actor::user(&user)
                .email(format!("{user}@{tenant}.example"))
                .ip("203.0.113.7")
                .user_agent("auditrelay-demo"),
        )
        .request_id(format!("req-{i}"))
        .build()
        .expect("sample events are valid")
}
