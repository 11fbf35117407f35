//! An application that records audit events the way auditrelay expects:
//! **after** its database transaction committed, never before (an event
//! for a change that was rolled back is a lie in the audit trail).
//!
//! ```text
//! scripts/build-plugins
//! cargo run -p auditrelay-example-emit-after-commit -- examples/relay.toml
//! ```
//!
//! The "database" here is a stand-in with a commit that can fail, so that
//! both paths show.

use std::collections::BTreeMap;

use anyhow::Context;
use auditrelay::envelope::{Actor, AuditEventEnvelope, Outcome, Target};
use auditrelay::{Config, EmitError, Relay};

/// A stand-in for a database: groups and their members.
#[derive(Default)]
struct Database {
    groups: BTreeMap<String, Vec<String>>,
}

/// A change not yet committed.
struct Transaction<'a> {
    db: &'a mut Database,
    group: String,
    member: String,
}

impl Database {
    fn begin_add_member(&mut self, group: &str, member: &str) -> Transaction<'_> {
        Transaction {
            db: self,
            group: group.to_owned(),
            member: member.to_owned(),
        }
    }
}

impl Transaction<'_> {
    /// Commits; refuses duplicates, like a unique constraint would.
    fn commit(self) -> anyhow::Result<()> {
        let members = self.db.groups.entry(self.group.clone()).or_default();
        if members.contains(&self.member) {
            anyhow::bail!("{} is already in {}", self.member, self.group);
        }
        members.push(self.member);
        Ok(())
    }
}

/// Adds a member, then records who did it and why.
fn add_member(
    relay: &Relay,
    db: &mut Database,
    actor: &str,
    group: &str,
    member: &str,
) -> anyhow::Result<()> {
    db.begin_add_member(group, member).commit()?;
    // Committed: now the event is true. Build it from what was committed.
    let event = AuditEventEnvelope::builder("access-api", "group.member_added")
        .actor(Actor::user(actor))
        .action_name("add_member")
        .outcome(Outcome::Success)
        .target(Target::new("group", group))
        .tenant("acme")
        .reason("on-call rotation")
        .payload(serde_json::json!({ "member": member }))
        .build()?;
    match relay.emit(event) {
        Ok(_) => Ok(()),
        // The change is committed and cannot be undone: never drop its
        // event silently. A real application keeps it (e.g. in an outbox
        // table written in the same transaction) and emits it again later.
        Err(EmitError::Spool(error)) => {
            eprintln!("audit event not accepted yet ({error}); keep it and retry");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match std::env::args().nth(1) {
        Some(path) => Config::load(path.as_ref()).with_context(|| format!("loading {path}"))?,
        None => Config::embedded_default(),
    };
    let relay = Relay::start(config).await?;
    let mut db = Database::default();

    add_member(&relay, &mut db, "u-1", "payments-oncall", "u-7")?;
    add_member(&relay, &mut db, "u-1", "admins", "u-9")?;
    // Fails to commit: no event, because nothing happened.
    if let Err(error) = add_member(&relay, &mut db, "u-2", "admins", "u-9") {
        println!("not committed, so not audited: {error}");
    }

    let report = relay.shutdown().await; // delivers what it holds
    println!("done; undelivered: {:?}", report.undelivered);
    Ok(())
}
