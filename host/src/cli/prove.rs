//! `auditrelay prove`: a proof an auditor checks alone — that one event
//! is in a signed checkpoint's tree, or that a later checkpoint's tree
//! only appended to an earlier one's — made from an export.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::integrity::proof::Proof;
use crate::integrity::verify::Verifier;

use super::keys::verifier_keys;

/// What to prove, and from which export.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["source", "stream"]))]
pub struct Args {
    /// The event's source (with its id: an inclusion proof)
    #[arg(requires = "id")]
    source: Option<String>,
    /// The event's id
    id: Option<String>,
    /// A consistency proof of this stream's checkpoints instead
    #[arg(long, requires = "from", conflicts_with = "source")]
    stream: Option<String>,
    /// The earlier checkpoint's tree size
    #[arg(long, requires = "stream")]
    from: Option<u64>,
    /// The later checkpoint's tree size (default: the largest held)
    #[arg(long, requires = "stream")]
    to: Option<u64>,
    /// The export the event and checkpoints are in (files or directories,
    /// as `verify` reads them)
    #[arg(long = "in", value_name = "PATH", required = true, num_args = 1..)]
    paths: Vec<PathBuf>,
    /// Public keys, as for `verify`
    #[arg(long = "key", value_name = "KEY|FILE")]
    keys: Vec<String>,
}

/// Runs `prove`: prints the proof as JSON on stdout, what it shows on stderr.
pub fn prove(config: Config, args: Args) -> anyhow::Result<ExitCode> {
    let keys = verifier_keys(&config, &args.keys)?;
    let mut verifier = Verifier::new(keys.clone());
    if let (Some(source), Some(id)) = (&args.source, &args.id) {
        verifier.want(source, id);
    }
    let verified = super::verify::read(&args.paths, verifier)?;
    if !verified.report.ok {
        eprintln!(
            "warning: the export has problems (run `auditrelay verify` on it); a proof rests only on the events and checkpoints it names"
        );
    }
    let proof = match (&args.source, &args.id, &args.stream, args.from) {
        (Some(source), Some(id), _, _) => {
            if verified.found.is_empty() {
                anyhow::bail!("no sealed event {source}/{id} whose seal holds in the export");
            }
            // The one the chain holds is the relay's; others with its id
            // are copies edited or forged (verify names them).
            let mut tries = verified
                .found
                .iter()
                .map(|found| Proof::inclusion(&verified.ledgers[&found.stream], found));
            let first = tries.next().expect("not empty");
            match first {
                Ok(proof) => proof,
                Err(error) => tries
                    .find_map(Result::ok)
                    .ok_or_else(|| anyhow::Error::msg(error))?,
            }
        }
        (_, _, Some(stream), Some(from)) => {
            let ledger = verified.ledgers.get(stream).ok_or_else(|| {
                let mut streams: Vec<&str> = verified.ledgers.keys().map(String::as_str).collect();
                streams.sort_unstable();
                anyhow::anyhow!("no stream {stream:?} in the export (streams: {streams:?})")
            })?;
            Proof::consistency(ledger, from, args.to).map_err(anyhow::Error::msg)?
        }
        _ => unreachable!("clap requires an event or a stream"),
    };
    // A proof that does not check is a bug, never something to hand out.
    let proven = proof
        .check(&keys)
        .map_err(|problems| anyhow::anyhow!("the proof made does not check: {problems:?}"))?;
    println!("{}", serde_json::to_string(&proof)?);
    eprintln!("proves: {}", proven.0);
    Ok(ExitCode::SUCCESS)
}
