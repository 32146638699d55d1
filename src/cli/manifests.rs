//! `sluice convert` and `sluice lint`: reading manifest files (or stdin) and printing what
//! `crate::migrate` found. Offline: no cluster is contacted.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::gitsync::render::parse_documents;
use crate::migrate::{self, MAX_INPUT_BYTES};

/// Converts every file and prints one YAML stream; notes go to stderr.
pub fn convert(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut out = String::new();
    for file in files {
        let conversion = migrate::convert::convert(read_documents(file)?);
        for note in &conversion.notes {
            eprintln!("{}: {note}", file.display());
        }
        for document in &conversion.documents {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(document).context("writing YAML")?);
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

/// Lints every file; fails when anything would be refused or reported.
pub fn lint(files: &[PathBuf]) -> anyhow::Result<()> {
    let (mut errors, mut checked, mut skipped) = (0, 0, 0);
    for file in files {
        let report = migrate::lint::lint(&read_documents(file)?);
        for error in &report.errors {
            println!("{}: {error}", file.display());
        }
        errors += report.errors.len();
        checked += report.checked;
        skipped += report.skipped;
    }
    eprintln!("{checked} Sluice object(s) checked, {skipped} other document(s) skipped, {errors} problem(s)");
    if errors > 0 {
        bail!("{errors} problem(s) found");
    }
    Ok(())
}

/// The documents of a file (`-`: stdin), at most [`MAX_INPUT_BYTES`].
pub(crate) fn read_documents(file: &Path) -> anyhow::Result<Vec<Value>> {
    let source = file.display().to_string();
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if source == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("opening {source}"))?)
    };
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {source}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!("{source}: larger than {} MiB", MAX_INPUT_BYTES / 1024 / 1024);
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{source}: not UTF-8"))?;
    Ok(parse_documents(&text, &source)?)
}
