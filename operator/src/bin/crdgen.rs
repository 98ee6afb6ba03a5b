//! Prints or writes the generated API files: the CRD YAML and the JSON schemas of the
//! agent configuration and the audit record. `make generate` runs it; `make test` fails
//! when the files in the repository differ from what it produces.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// Generate mcp-ledger's CRDs and JSON schemas from the Rust types in crates/crds.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Directory to write one `<plural>.yaml` per CRD into (repeatable). Without any
    /// `--crd-dir`, every CRD is printed to stdout as one multi-document YAML stream.
    #[arg(long = "crd-dir", value_name = "DIR")]
    crd_dirs: Vec<PathBuf>,

    /// Directory to write `agent-config.schema.json` and `audit-record.schema.json` into.
    #[arg(long = "schema-dir", value_name = "DIR")]
    schema_dir: Option<PathBuf>,

    /// Do not write: exit 1 and name each file that differs from what would be written.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let files = mcp_ledger_operator::generate::files()?;
    if args.crd_dirs.is_empty() && args.schema_dir.is_none() {
        for file in files.iter().filter(|f| f.kind == mcp_ledger_operator::generate::Kind::Crd) {
            print!("---\n{}", file.contents);
        }
        return Ok(());
    }
    let mut targets = Vec::new();
    for file in &files {
        match file.kind {
            mcp_ledger_operator::generate::Kind::Crd => {
                targets.extend(args.crd_dirs.iter().map(|dir| (dir.join(&file.name), file)));
            }
            mcp_ledger_operator::generate::Kind::Schema => {
                if let Some(dir) = &args.schema_dir {
                    targets.push((dir.join(&file.name), file));
                }
            }
        }
    }
    let mut stale = Vec::new();
    for (path, file) in targets {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == file.contents {
            continue;
        }
        if args.check {
            stale.push(path.display().to_string());
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, &file.contents).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        anyhow::bail!("generated files are stale, run `make generate` and commit the result: {}", stale.join(", "));
    }
    Ok(())
}
