//! Step `golden requests`: the requests of the fixed events, rendered
//! and compared with the [golden file](crate::testing::compliance::Golden).

use super::{Run, StepResult};
use crate::event::Delivery;
use crate::plugin::Plugin;
use crate::testing::compliance::GOLDEN;
use crate::testing::compliance::instance::Setup;
use crate::testing::compliance::sent::Sent;
use crate::testing::compliance::support::merge_patch;
use crate::testing::{compare_golden, fixed_events};

impl<P: Plugin> Run<'_, P> {
    pub(super) fn golden(&mut self) -> StepResult {
        let golden = self.suite.golden.as_ref().expect("only run with a golden");
        let mut config = self.suite.config.clone();
        if let Some(patch) = &golden.patch {
            merge_patch(&mut config, patch);
        }
        let mut instance = self.started(Setup {
            config: Some(&config),
            ..Setup::accepting()
        })?;
        let batch = fixed_events();
        let outcome = instance.harness.deliver(&batch);
        self.observe(GOLDEN, &outcome, batch.len());
        self.scan_instance(GOLDEN, &instance);
        if outcome != Ok(Delivery::Accepted) {
            return Err(format!(
                "the fixed events were not accepted by the accepting destination: {outcome:?}"
            ));
        }
        let sent = self.sent(&instance.harness)?;
        let text = render(&sent, &golden.placeholders);
        compare_golden(&golden.path, &text)?;
        self.note(
            GOLDEN,
            format!("{} request(s) match {}", sent.len(), golden.path.display()),
        );
        Ok(())
    }
}

/// The golden rendering of requests.
fn render(sent: &[Sent], placeholders: &[(String, String)]) -> String {
    let mut text = String::new();
    for (n, sent) in sent.iter().enumerate() {
        let request = &sent.request;
        let replacements: Vec<(&str, &str)> = placeholders
            .iter()
            .filter_map(|(header, placeholder)| {
                request
                    .header_value(header)
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, placeholder.as_str()))
            })
            .collect();
        let redact = |text: &str| {
            replacements
                .iter()
                .fold(text.to_owned(), |t, (value, with)| t.replace(value, with))
        };
        if n > 0 {
            text.push('\n');
        }
        text.push_str(&format!(
            "{} {}\n",
            request.method.as_str(),
            redact(&request.url)
        ));
        for (name, value) in &request.headers {
            text.push_str(&format!("{name}: {}\n", redact(value)));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&sent.body));
        text.push('\n');
    }
    text
}
