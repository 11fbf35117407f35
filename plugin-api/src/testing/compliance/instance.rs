//! The plugin instance each step starts, and the fake destination it
//! talks to: the suite's [`server`](super::Compliance::server), whose
//! answers a step can replace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::sent::Sent;
use super::steps::Run;
use super::support::TempDir;
use super::{EventsIn, Server};
use crate::http::{HttpError, Request, Response};
use crate::plugin::{InitError, Plugin};
use crate::testing::Harness;

/// How the fake destination answers, switchable between deliveries.
#[derive(Clone)]
pub(super) enum Mode {
    /// Every request reaches the suite's server.
    Accept,
    /// The first request gets this reply.
    First(Result<Response, HttpError>),
    /// The event-carrying request number `.0` (from 0) gets this reply.
    NthWithEvents(usize, Result<Response, HttpError>),
}

pub(super) struct FakeServer {
    server: Arc<Server>,
    events_in: Arc<EventsIn>,
    mode: Mutex<Mode>,
    requests: AtomicUsize,
    event_requests: AtomicUsize,
}

impl FakeServer {
    fn answer(&self, request: &Request) -> Result<Response, HttpError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let carries = Sent::decode(request)
            .map(|sent| !(self.events_in)(&sent).is_empty())
            .unwrap_or(false);
        let k = if carries {
            self.event_requests.fetch_add(1, Ordering::SeqCst)
        } else {
            usize::MAX
        };
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::First(reply) if n == 0 => reply,
            Mode::NthWithEvents(i, reply) if k == i => reply,
            _ => (self.server)(request),
        }
    }

    pub(super) fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// One plugin instance of a step.
pub(super) struct Instance<P: Plugin> {
    pub(super) harness: Harness<P>,
    pub(super) server: Option<Arc<FakeServer>>,
    pub(super) dir: Option<TempDir>,
}

/// How to set up an instance.
pub(super) struct Setup<'a> {
    pub(super) mode: Mode,
    pub(super) config: Option<&'a Value>,
    pub(super) without_secret: Option<&'a str>,
    pub(super) deny_all_hosts: bool,
}

impl Setup<'static> {
    pub(super) fn accepting() -> Self {
        Setup {
            mode: Mode::Accept,
            config: None,
            without_secret: None,
            deny_all_hosts: false,
        }
    }

    pub(super) fn with(mode: Mode) -> Self {
        Setup {
            mode,
            ..Setup::accepting()
        }
    }
}

impl<P: Plugin> Run<'_, P> {
    pub(super) fn instance(&mut self, setup: Setup<'_>) -> Result<Instance<P>, InitError> {
        let suite = self.suite;
        let mut builder = Harness::<P>::builder().config(match setup.config {
            Some(config) => config.clone(),
            None => suite.config.clone(),
        });
        for (name, value) in &suite.secrets {
            if setup.without_secret != Some(name.as_str()) {
                builder = builder.secret(name, value);
            }
        }
        let dir = suite
            .granted_dir
            .then(|| TempDir::new(&suite.exporter).expect("a temporary directory"));
        if let Some(dir) = &dir {
            builder = builder.granted_dir(&dir.0);
        }
        let mut server = None;
        if let Some(hosts) = &suite.allowed_hosts {
            if !setup.deny_all_hosts {
                builder = builder.allowed_hosts(hosts.clone());
            }
            let fake = Arc::new(FakeServer {
                server: suite.server.clone().expect("checked in check_declaration"),
                events_in: suite
                    .events_in
                    .clone()
                    .expect("checked in check_declaration"),
                mode: Mutex::new(setup.mode),
                requests: AtomicUsize::new(0),
                event_requests: AtomicUsize::new(0),
            });
            let answering = fake.clone();
            builder = builder.http(move |request| answering.answer(request));
            server = Some(fake);
        }
        let harness = builder.init()?;
        Ok(Instance {
            harness,
            server,
            dir,
        })
    }

    /// An instance with the suite's own config, which must init.
    pub(super) fn started(&mut self, setup: Setup<'_>) -> Result<Instance<P>, String> {
        self.instance(setup).map_err(|error| {
            format!(
                "init with the suite's config failed: {error}. Fix the config given to Compliance::config (or the exporter's init)"
            )
        })
    }
}
