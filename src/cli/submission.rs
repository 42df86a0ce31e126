//! The submission folder of `quantdepth slurm`: files written only over
//! files it wrote itself (never over a user's file, never through a link),
//! and nothing left behind when the submission is refused or fails.

use anyhow::{bail, Context, Result};
use quantdepth::experiment::folder::write_atomic;
use std::path::{Path, PathBuf};

/// `p` as UTF-8 (it is written into the scripts).
fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("the path {} is not valid UTF-8", p.display()))
}

/// How the files `quantdepth slurm` writes begin (the scripts after their
/// `#!` and `#SBATCH` lines): a file without it was not written by it and
/// is never overwritten.
pub const OURS: &str = "# Written by `quantdepth slurm`:";

/// Refuses `path` unless it is absent or a regular file written by
/// `quantdepth slurm` (an earlier run with the same --out): a user's file
/// is never overwritten, a symbolic link never written through.
pub fn check_ours(path: &Path) -> Result<()> {
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "{} {what}: `quantdepth slurm` writes only files it wrote before; give a new --out DIR",
            path.display()
        )
    };
    match quantdepth::safe_fs::entry_type(path)
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        None => Ok(()),
        Some(ft) if ft.is_symlink() => Err(refuse("is a symbolic link (never written through)")),
        Some(ft) if !ft.is_file() => {
            Err(refuse(&format!("is {}", quantdepth::safe_fs::kind_of(&ft))))
        }
        Some(_) => {
            let text = quantdepth::safe_fs::read_capped_text(path, 1 << 20).unwrap_or_default();
            if text.lines().any(|l| l.starts_with(OURS)) {
                Ok(())
            } else {
                Err(refuse("exists and was not written by `quantdepth slurm`"))
            }
        }
    }
}

/// The folders and files a `quantdepth slurm` run made, removed again
/// (deepest first, folders only when empty) unless [`Made::keep`] is called:
/// a refused or failed submission leaves nothing behind.
#[derive(Default)]
pub struct Made {
    paths: Vec<PathBuf>,
    kept: bool,
}

impl Made {
    /// Creates the submission folder `dir` (and its parents) with `logs/`
    /// and `shards/`; returns it absolute, refused when #SBATCH --output
    /// cannot name it.
    pub fn create(&mut self, dir: &Path) -> Result<PathBuf> {
        let mut missing = Vec::new();
        let mut p = Some(dir);
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d.to_path_buf());
            p = d.parent();
        }
        missing.reverse();
        for sub in ["logs", "shards"] {
            if !dir.join(sub).exists() {
                missing.push(dir.join(sub));
            }
        }
        for d in missing {
            std::fs::create_dir(&d).with_context(|| format!("cannot create {}", d.display()))?;
            self.paths.push(d);
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        if path_str(&dir)?
            .chars()
            .any(|c| c.is_whitespace() || c == '%')
        {
            bail!(
                "the submission folder {:?} contains whitespace or '%': #SBATCH --output cannot name it; give --out a path without them",
                dir.display()
            );
        }
        Ok(dir)
    }

    /// Writes `body` to `path` atomically (a temporary file created new,
    /// renamed over `path`: never written through a link).
    pub fn write(&mut self, path: &Path, body: &str) -> Result<()> {
        let new = !path.exists();
        write_atomic(path, body.as_bytes())?;
        if new {
            self.paths.push(path.to_path_buf());
        }
        Ok(())
    }

    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for p in self.paths.iter().rev() {
            let _ = if p.is_dir() {
                std::fs::remove_dir(p)
            } else {
                std::fs::remove_file(p)
            };
        }
    }
}
