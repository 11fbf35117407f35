//! `auditrelay tail`: the running relay's live stream in the terminal.
//!
//! Reads `GET /v1/stream` and prints each event as it becomes durable,
//! one line each. When the stream ends (the relay stops, or this terminal
//! read too slowly) or the connection drops, it connects again with
//! `Last-Event-ID`, so nothing the spool still holds is missed; a gap the
//! spool could not fill is said on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use super::relay_api::RelayApi;
use crate::config::Config;

/// Options of `auditrelay tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events of these types (repeatable; a trailing `*` matches any
    /// suffix: --type 'group.*')
    #[arg(long = "type", value_name = "PATTERN")]
    types: Vec<String>,
    /// Only events of these tenants (repeatable; `*` suffix)
    #[arg(long = "tenant", value_name = "PATTERN")]
    tenants: Vec<String>,
    /// Only events of these sources (repeatable; `*` suffix)
    #[arg(long = "source", value_name = "PATTERN")]
    sources: Vec<String>,
    /// Begin with every event the spool holds, not only new ones
    #[arg(long)]
    earliest: bool,
    /// Print each envelope's JSON as it is, one per line
    #[arg(long)]
    json: bool,
    /// Stop after this many events
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Prints the stream until interrupted (or `--count` events).
pub async fn tail(config: Config, args: Args) -> anyhow::Result<ExitCode> {
    let api = RelayApi::new(&config)?;
    let mut query: Vec<(&str, &str)> = Vec::new();
    query.extend(args.types.iter().map(|t| ("type", t.as_str())));
    query.extend(args.tenants.iter().map(|t| ("tenant", t.as_str())));
    query.extend(args.sources.iter().map(|t| ("source", t.as_str())));
    if args.earliest {
        query.push(("from", "earliest"));
    }
    let mut last_id: Option<String> = None;
    let mut printed = 0u64;
    let mut failures = 0u32;
    let stdout = std::io::stdout();
    loop {
        let mut request = api
            .request(reqwest::Method::GET, "/v1/stream")
            .query(&query);
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    eprintln!(
                        "cannot reach the relay at {} ({error}); trying again",
                        api.base()
                    );
                }
                tokio::time::sleep(Duration::from_secs(u64::from(failures.min(10)))).await;
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let error = body["error"].as_str().unwrap_or("no details");
            if status == reqwest::StatusCode::BAD_REQUEST && last_id.is_some() {
                // An id of another relay or of a replaced spool: go on
                // without it, saying so.
                eprintln!("{error}; going on without it");
                last_id = None;
                continue;
            }
            if status.is_client_error() {
                bail!("the relay refused the stream (HTTP {status}): {error}");
            }
            eprintln!("the relay cannot stream now (HTTP {status}: {error}); trying again");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        failures = 0;
        let mut response = response;
        let mut events = SseParser::default();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    eprintln!("the stream broke off ({error}); connecting again");
                    break;
                }
            };
            for event in events.push(&chunk) {
                if let Some(id) = event.id {
                    last_id = Some(id);
                }
                match event.kind.as_str() {
                    "audit" => {
                        let mut out = stdout.lock();
                        let line = if args.json {
                            event.data
                        } else {
                            human_line(&event.data)
                        };
                        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                            // The reader of our stdout went away (`| head`).
                            return Ok(ExitCode::SUCCESS);
                        }
                        printed += 1;
                        if args.count.is_some_and(|count| printed >= count) {
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    "gap" => eprintln!("missed events the spool no longer holds: {}", event.data),
                    "end" => {
                        let reason: Value =
                            serde_json::from_str(&event.data).unwrap_or(Value::Null);
                        eprintln!(
                            "the relay ended the stream ({}); connecting again",
                            reason["reason"].as_str().unwrap_or("no reason given")
                        );
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `time  type  source  actor -> outcome  id`, from an envelope's JSON.
fn human_line(json: &str) -> String {
    let Ok(event) = serde_json::from_str::<Value>(json) else {
        return json.to_owned();
    };
    let text = |pointer: &str| {
        event
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("-")
    };
    let mut line = format!(
        "{}  {}  source={}",
        text("/time"),
        text("/type"),
        text("/source")
    );
    if let Some(tenant) = event.pointer("/tenant").and_then(Value::as_str) {
        line.push_str(&format!("  tenant={tenant}"));
    }
    line.push_str(&format!(
        "  actor={}  outcome={}  id={}",
        text("/actor/id"),
        text("/action/outcome"),
        text("/id")
    ));
    line
}

/// One Server-Sent Event.
#[derive(Debug, PartialEq)]
struct SseEvent {
    id: Option<String>,
    kind: String,
    data: String,
}

/// Reads Server-Sent Events (the WHATWG format) from chunks as they come.
#[derive(Default)]
struct SseParser {
    /// Bytes of a line not ended yet.
    partial: Vec<u8>,
    id: Option<String>,
    kind: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// The events `chunk` completes.
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        self.partial.extend_from_slice(chunk);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                match self.data.take() {
                    Some(data) => events.push(SseEvent {
                        id: self.id.take(),
                        kind: self.kind.take().unwrap_or_else(|| "message".into()),
                        data,
                    }),
                    // No event, but a new last event id all the same.
                    None if self.id.is_some() => events.push(SseEvent {
                        id: self.id.take(),
                        kind: String::new(),
                        data: String::new(),
                    }),
                    None => {}
                }
                self.id = None;
                self.kind = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.id = Some(value.to_owned()),
                "event" => self.kind = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunk_boundaries() {
        let text = "retry: 2000\n\n: keepalive\nid: 40\n\nid: 41\nevent: audit\ndata: {\"id\":\"a\"}\n\nevent: gap\ndata: {\"from\":42,\"to\":44}\n\nid: 45\r\nevent: audit\r\ndata: one\r\ndata: two\r\n\r\n";
        for cut in 0..text.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&text.as_bytes()[..cut]);
            events.extend(parser.push(&text.as_bytes()[cut..]));
            assert_eq!(
                events,
                [
                    SseEvent {
                        id: Some("40".into()),
                        kind: String::new(),
                        data: String::new()
                    },
                    SseEvent {
                        id: Some("41".into()),
                        kind: "audit".into(),
                        data: "{\"id\":\"a\"}".into()
                    },
                    SseEvent {
                        id: None,
                        kind: "gap".into(),
                        data: "{\"from\":42,\"to\":44}".into()
                    },
                    SseEvent {
                        id: Some("45".into()),
                        kind: "audit".into(),
                        data: "one\ntwo".into()
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_event_reads_as_one_line() {
        let line = human_line(
            r#"{"id":"evt-1","source":"shop","type":"user.login","time":"2026-12-04T01:02:03Z","tenant":"acme","actor":{"id":"u-1"},"action":{"outcome":"success"}}"#,
        );
        assert_eq!(
            line,
            "2026-12-04T01:02:03Z  user.login  source=shop  tenant=acme  actor=u-1  outcome=success  id=evt-1"
        );
        assert_eq!(human_line("not json"), "not json");
    }
}
