//! Step `init refuses bad config`: the suite's config starts; an unknown
//! key, every declared bad config and every missing secret are refused,
//! naming what is wrong.

use serde_json::Value;

use super::{Run, StepResult};
use crate::plugin::Plugin;
use crate::testing::compliance::instance::Setup;
use crate::testing::compliance::support::{merge_patch, problems_to_result};
use crate::testing::compliance::{INIT, UNKNOWN_KEY};

impl<P: Plugin> Run<'_, P> {
    pub(super) fn init(&mut self) -> StepResult {
        let suite = self.suite;
        let instance = self.started(Setup::accepting())?;
        self.scan_instance(INIT, &instance);
        drop(instance);

        let mut cases: Vec<(String, Value, String)> = Vec::new();
        let mut unknown = suite.config.clone();
        unknown[UNKNOWN_KEY] = Value::Bool(true);
        cases.push((
            format!("unknown key `{UNKNOWN_KEY}`"),
            unknown,
            UNKNOWN_KEY.to_owned(),
        ));
        for (patch, key) in &suite.refusals {
            let mut config = suite.config.clone();
            merge_patch(&mut config, patch);
            cases.push((format!("config patched with {patch}"), config, key.clone()));
        }
        let mut problems = Vec::new();
        for (case, config, key) in &cases {
            let setup = Setup {
                config: Some(config),
                ..Setup::accepting()
            };
            match self.instance(setup) {
                Ok(_) => problems.push(format!(
                    "{case}: init succeeded; it must refuse the config naming `{key}` (use #[serde(deny_unknown_fields)] on the config type, and check values in init)"
                )),
                Err(error) => {
                    self.scan(INIT, "an init error", &error.0, &[]);
                    if !error.0.contains(key.as_str()) {
                        problems.push(format!(
                            "{case}: refused with {:?}, which does not name `{key}`; say which key is wrong and how to fix it",
                            error.0
                        ));
                    }
                }
            }
        }
        for name in &suite.required_secrets {
            let setup = Setup {
                without_secret: Some(name),
                ..Setup::accepting()
            };
            match self.instance(setup) {
                Ok(_) => problems.push(format!(
                    "without secret `{name}`: init succeeded; it must refuse to start (settings::required_secret does)"
                )),
                Err(error) => {
                    self.scan(INIT, "an init error", &error.0, &[]);
                    if !error.0.contains(name.as_str()) {
                        problems.push(format!(
                            "without secret `{name}`: refused with {:?}, which does not name the secret",
                            error.0
                        ));
                    }
                }
            }
        }
        self.note(
            INIT,
            format!(
                "the suite's config starts; {} bad config(s) and {} missing secret(s) refused naming the key",
                cases.len(),
                suite.required_secrets.len()
            ),
        );
        problems_to_result(problems)
    }
}
