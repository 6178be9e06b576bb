//! The rejects file of --skip-invalid: each refused record with its line and reason, then its own fields.

use super::Options;
use crate::parse::{self, Layout};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub struct Rejects {
    pub path: PathBuf,
    pub writer: csv::Writer<std::fs::File>,
}

pub fn open_rejects(opts: &Options, name: &str, job: i32, layout: &Layout) -> Result<Rejects> {
    let stem = if name == "-" {
        "stdin".to_string()
    } else {
        Path::new(name)
            .file_name()
            .map_or("input".into(), |f| f.to_string_lossy().into_owned())
    };
    let dir = opts.rejects_dir.canonicalize().with_context(|| {
        format!(
            "cannot use the rejects folder {}",
            opts.rejects_dir.display()
        )
    })?;
    let path = dir.join(format!("{stem}.job{job}.rejects.csv"));
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(&path)
        .with_context(|| format!("cannot create the rejects file {}", path.display()))?;
    let mut header = vec!["line".to_string(), "reason".to_string()];
    let mut names = vec![String::new(); layout.width];
    for (c, &i) in layout.index.iter().enumerate() {
        names[i] = parse::COLUMNS[c].to_string();
    }
    let mut ignored = layout.ignored.iter();
    for n in names.iter_mut().filter(|n| n.is_empty()) {
        *n = ignored.next().cloned().unwrap_or_default();
    }
    header.extend(names);
    writer
        .write_record(&header)
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok(Rejects { path, writer })
}
