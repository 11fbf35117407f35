//! `auditrelay emit`

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Options of `auditrelay emit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// File with events: one JSON envelope, a JSON array of them, or one
    /// per line (NDJSON). `-` or nothing reads stdin
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The relay's base URL
    #[arg(long, env = "AUDITRELAY_URL", default_value = "http://127.0.0.1:8686")]
    url: String,
    /// Bearer token (ingest.http.auth_token of the relay)
    #[arg(long, env = "AUDITRELAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Events per request
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Requests sent at once, each on its own connection: a request waits
    /// for its events to be durable (a group commit), so one at a time
    /// leaves the relay idle between them
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    in_flight: u32,
    /// The events are CloudEvents 1.0 (structured JSON), not envelopes
    #[arg(long)]
    cloudevents: bool,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    accepted: usize,
    #[serde(default)]
    copies: usize,
    #[serde(default)]
    rejected: Vec<Rejected>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Rejected {
    index: usize,
    #[serde(default)]
    id: Option<String>,
    errors: Vec<FieldProblem>,
}

#[derive(Deserialize)]
struct FieldProblem {
    field: String,
    problem: String,
}

/// Attempts per request when the relay is busy or not reachable yet.
const ATTEMPTS: u32 = 5;

/// Sends the events in batches and reports what the relay said about each.
pub async fn emit(args: Args) -> anyhow::Result<ExitCode> {
    let input = read_input(args.file.as_ref())?;
    let events = split_events(&input)?;
    if events.is_empty() {
        bail!("no events in the input");
    }
    let endpoint = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let content_type = if args.cloudevents {
        "application/cloudevents-batch+json"
    } else {
        "application/json"
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let progress = progress_bar(events.len() as u64);
    let (mut accepted, mut copies, mut rejected) = (0usize, 0usize, 0usize);
    // Requests in flight, oldest first: answers are reported in the order
    // of the input, whatever order they come back in.
    let mut in_flight = VecDeque::new();
    let request = Request {
        client,
        endpoint: endpoint.into(),
        token: args.token.map(Into::into),
        content_type,
    };
    let batch_size = args.batch_size as usize;
    let mut chunks = events.chunks(batch_size).enumerate().peekable();
    while chunks.peek().is_some() || !in_flight.is_empty() {
        if in_flight.len() < args.in_flight as usize
            && let Some((chunk_index, chunk)) = chunks.next()
        {
            let body = Bytes::from(batch_body(chunk));
            let sending = tokio::spawn(request.clone().send(body));
            in_flight.push_back((chunk_index * batch_size, chunk.len(), sending));
            continue;
        }
        let (offset, events, sending) = in_flight.pop_front().expect("a request is in flight");
        let answer = sending.await.context("a request task failed")??;
        accepted += answer.accepted;
        copies += answer.copies;
        for r in &answer.rejected {
            rejected += 1;
            let id =
                r.id.as_deref()
                    .map(|id| format!(" (id {id})"))
                    .unwrap_or_default();
            let problems: Vec<String> = r
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.problem))
                .collect();
            progress.suspend(|| {
                eprintln!(
                    "event {}{id} refused: {}",
                    offset + r.index,
                    problems.join("; ")
                )
            });
        }
        progress.inc(events as u64);
    }
    progress.finish_and_clear();
    if copies > 0 {
        // A file sent again: the relay had these already (its dedup window).
        println!(
            "{accepted} accepted ({copies} of them copies of events the relay already had, not spooled again), {rejected} refused"
        );
    } else {
        println!("{accepted} accepted, {rejected} refused");
    }
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_input(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    match file {
        Some(path) if path.as_os_str() != "-" => {
            input =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_end(&mut input)
                .context("cannot read stdin")?;
        }
    }
    Ok(input)
}

/// The events of a JSON value, a JSON array or a stream of values (NDJSON).
fn split_events(input: &[u8]) -> anyhow::Result<Vec<&RawValue>> {
    let mut events = Vec::new();
    for value in serde_json::Deserializer::from_slice(input).into_iter::<&RawValue>() {
        let value = value.map_err(|e| {
            anyhow::anyhow!(
                "malformed JSON in the input at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })?;
        if value.get().starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(value.get())?;
            events.extend(items);
        } else {
            events.push(value);
        }
    }
    Ok(events)
}

fn batch_body(events: &[&RawValue]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.get().len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event.get().as_bytes());
    }
    body.push(b']');
    body
}

/// How every request is sent.
#[derive(Clone)]
struct Request {
    client: reqwest::Client,
    endpoint: Arc<str>,
    token: Option<Arc<str>>,
    content_type: &'static str,
}

impl Request {
    /// Posts one batch, retrying while the relay is busy or not reachable
    /// yet; the relay's answer.
    async fn send(self, body: Bytes) -> anyhow::Result<Answer> {
        let endpoint = &*self.endpoint;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .post(endpoint)
                .header(reqwest::header::CONTENT_TYPE, self.content_type)
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let retry_in = Duration::from_millis(250 * 2u64.pow(attempt));
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if attempt < ATTEMPTS && (error.is_connect() || error.is_timeout()) => {
                    tokio::time::sleep(retry_in).await;
                    continue;
                }
                Err(error) => bail!("cannot reach the relay at {endpoint}: {error}"),
            };
            let status = response.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < ATTEMPTS {
                tokio::time::sleep(retry_in).await;
                continue;
            }
            let text = response.text().await.unwrap_or_default();
            let answer: Answer = serde_json::from_str(&text).with_context(|| {
                format!("the relay answered HTTP {status} with an unexpected body: {text:.300}")
            })?;
            if let Some(error) = &answer.error {
                bail!("the relay refused the request (HTTP {status}): {error}");
            }
            return Ok(answer);
        }
    }
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || total < 1000 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} events ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_values_arrays_and_ndjson() {
        assert_eq!(split_events(b"{\"a\":1}").unwrap().len(), 1);
        assert_eq!(split_events(b"{\n  \"a\": 1\n}\n").unwrap().len(), 1);
        assert_eq!(split_events(b"[{\"a\":1},{\"a\":2}]").unwrap().len(), 2);
        assert_eq!(
            split_events(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n")
                .unwrap()
                .len(),
            3
        );
        let err = split_events(b"{\"a\":1}\n{oops}").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let events = split_events(b"{\"a\":1}\n{\"b\":2}").unwrap();
        assert_eq!(batch_body(&events), b"[{\"a\":1},{\"b\":2}]");
    }
}
