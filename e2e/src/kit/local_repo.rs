//! A Git repository on local disk — a bare repository plus a work clone — for `sluice demo` and tests:
//! write files, commit, and the commit is on the bare repository that a GitSync fetches over file://.
//! Runs git synchronously (local disk only, milliseconds) with the same hermetic environment as the source.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};

use sluice::gitsync::git::hermetic_command;

/// Author and committer of every commit made here.
pub const DEMO_AUTHOR_NAME: &str = "Sluice Demo";
pub const DEMO_AUTHOR_EMAIL: &str = "demo@sluice.dev";

#[derive(Debug, Clone)]
pub struct LocalRepo {
    bare: PathBuf,
    work: PathBuf,
    home: PathBuf,
    git: PathBuf,
    /// Edits since the last commit, replayed on top of commits pushed meanwhile (like pull, then edit).
    pending: Arc<Mutex<Vec<Edit>>>,
}

#[derive(Debug, Clone)]
enum Edit {
    Write(String, String),
    Remove(String),
}

impl LocalRepo {
    /// Creates `<dir>/repo.git` (bare, default branch `main`) and a work clone `<dir>/work` on `main`.
    pub fn create(dir: impl AsRef<Path>) -> anyhow::Result<LocalRepo> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let repo = LocalRepo {
            bare: dir.join("repo.git"),
            work: dir.join("work"),
            home: dir.join(".home"),
            git: PathBuf::from("git"),
            pending: Arc::default(),
        };
        std::fs::create_dir_all(&repo.home).with_context(|| format!("creating {}", repo.home.display()))?;
        repo.run(
            &dir,
            &["init", "--quiet", "--bare", "--initial-branch=main", "repo.git"],
        )?;
        repo.run(&dir, &["init", "--quiet", "--initial-branch=main", "work"])?;
        let bare = repo.bare.to_string_lossy().into_owned();
        repo.run(&repo.work, &["remote", "add", "origin", &bare])?;
        Ok(repo)
    }

    /// The URL a GitSync fetches this repository from.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    pub fn work_path(&self) -> &Path {
        &self.work
    }

    /// Writes a file of the work tree (parent directories created). Committed by the next `commit`.
    pub fn write(&self, relative_path: &str, contents: &str) -> anyhow::Result<()> {
        self.write_file(relative_path, contents)?;
        self.record(Edit::Write(relative_path.into(), contents.into()));
        Ok(())
    }

    fn write_file(&self, relative_path: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.work_file(relative_path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
    }

    /// Removes a file or directory of the work tree. Committed by the next `commit`.
    pub fn remove(&self, relative_path: &str) -> anyhow::Result<()> {
        self.remove_file(relative_path)?;
        self.record(Edit::Remove(relative_path.into()));
        Ok(())
    }

    fn record(&self, edit: Edit) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(edit);
    }

    fn remove_file(&self, relative_path: &str) -> anyhow::Result<()> {
        let path = self.work_file(relative_path)?;
        let meta = std::fs::symlink_metadata(&path).with_context(|| format!("removing {}", path.display()))?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))
    }

    /// Commits the edits made since the last commit to the current branch and pushes it to the bare
    /// repository. Commits pushed meanwhile by someone else (a Sluice revert) are kept: the edits are
    /// replayed on top of them, as a person would after `git pull`. Returns the pushed SHA.
    pub fn commit(&self, message: &str) -> anyhow::Result<String> {
        let branch = self.current_branch()?;
        let remote_ref = format!("refs/remotes/origin/{branch}");
        let fetch_refspec = format!("+refs/heads/{branch}:{remote_ref}");
        let edits = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if self.rev_parse(&self.bare, &format!("refs/heads/{branch}")).is_some() {
            self.run(&self.work, &["fetch", "--quiet", "origin", &fetch_refspec])?;
            let moved = self.rev_parse(&self.work, "HEAD") != self.rev_parse(&self.work, &remote_ref);
            if moved {
                self.run(&self.work, &["reset", "--quiet", "--hard", &remote_ref])?;
                for edit in &edits {
                    match edit {
                        Edit::Write(path, contents) => self.write_file(path, contents)?,
                        // Already gone upstream is as good as removed.
                        Edit::Remove(path) => {
                            if self.work_file(path)?.exists() {
                                self.remove_file(path)?;
                            }
                        }
                    }
                }
            }
        }
        self.run(&self.work, &["add", "--all"])?;
        self.run(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "--no-verify", "-m", message],
        )?;
        let push_refspec = format!("HEAD:refs/heads/{branch}");
        self.run(&self.work, &["push", "--quiet", "--no-verify", "origin", &push_refspec])?;
        self.rev_parse(&self.work, "HEAD").context("reading HEAD after commit")
    }

    /// Switches the work clone to `branch`, creating it at the current commit when it doesn't exist.
    pub fn switch(&self, branch: &str) -> anyhow::Result<()> {
        let exists = self.rev_parse(&self.work, &format!("refs/heads/{branch}")).is_some();
        if exists {
            self.run(&self.work, &["switch", "--quiet", branch])
        } else {
            self.run(&self.work, &["switch", "--quiet", "-c", branch])
        }
    }

    /// Tags the current commit (annotated when `message` is given) and pushes the tag.
    pub fn tag(&self, name: &str, message: Option<&str>) -> anyhow::Result<()> {
        match message {
            Some(message) => self.run(&self.work, &["tag", "-a", "-m", message, name])?,
            None => self.run(&self.work, &["tag", name])?,
        }
        let refspec = format!("refs/tags/{name}:refs/tags/{name}");
        self.run(&self.work, &["push", "--quiet", "origin", &refspec])
    }

    /// The commit `branch` points at in the bare repository.
    pub fn head(&self, branch: &str) -> anyhow::Result<String> {
        self.rev_parse(&self.bare, &format!("refs/heads/{branch}"))
            .with_context(|| format!("branch {branch:?} not found in {}", self.bare.display()))
    }

    /// Subjects of the commits on `branch` of the bare repository, newest first (empty when no branch).
    pub fn log_subjects(&self, branch: &str) -> Vec<String> {
        let rev = format!("refs/heads/{branch}");
        self.output(&self.bare, &["log", "--format=%s", &rev, "--"])
            .map(|out| out.lines().map(String::from).collect())
            .unwrap_or_default()
    }

    /// Full message of commit `rev` in the bare repository.
    pub fn message(&self, rev: &str) -> Option<String> {
        self.output(&self.bare, &["log", "-1", "--format=%B", rev, "--"])
    }

    /// The content of `path` at `rev` in the bare repository (None when either doesn't exist).
    pub fn show(&self, rev: &str, path: &str) -> Option<String> {
        if rev.starts_with('-') {
            return None;
        }
        self.output(&self.bare, &["show", &format!("{rev}:{path}")])
    }

    fn current_branch(&self) -> anyhow::Result<String> {
        let name = self
            .output(&self.work, &["symbolic-ref", "--short", "HEAD"])
            .context("the work clone is not on a branch")?;
        Ok(name.trim().to_string())
    }

    fn work_file(&self, relative_path: &str) -> anyhow::Result<PathBuf> {
        let relative = Path::new(relative_path);
        if relative_path.is_empty() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            bail!("{relative_path:?} must be a relative path inside the repository");
        }
        if relative.components().next().is_some_and(|c| c.as_os_str() == ".git") {
            bail!("{relative_path:?} is inside .git");
        }
        Ok(self.work.join(relative))
    }

    fn rev_parse(&self, dir: &Path, rev: &str) -> Option<String> {
        self.output(
            dir,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .map(|sha| sha.trim().to_string())
        .filter(|sha| !sha.is_empty())
    }

    /// stdout of a successful git command, None when it failed.
    fn output(&self, dir: &Path, args: &[&str]) -> Option<String> {
        let output = self.command(dir).args(args).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn run(&self, dir: &Path, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .command(dir)
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.git.display()))?;
        if !output.status.success() {
            bail!(
                "git {} in {}: {}",
                args.join(" "),
                dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn command(&self, dir: &Path) -> std::process::Command {
        let mut command = hermetic_command(&self.git, &self.home, &[]);
        command
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", DEMO_AUTHOR_NAME)
            .env("GIT_AUTHOR_EMAIL", DEMO_AUTHOR_EMAIL)
            .env("GIT_COMMITTER_NAME", DEMO_AUTHOR_NAME)
            .env("GIT_COMMITTER_EMAIL", DEMO_AUTHOR_EMAIL)
            .stdin(std::process::Stdio::null());
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_land_in_the_bare_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalRepo::create(dir.path()).unwrap();
        repo.write("apps/web/deploy.yaml", "v1\n").unwrap();
        let first = repo.commit("web v1").unwrap();
        assert_eq!(repo.head("main").unwrap(), first);
        repo.write("apps/web/deploy.yaml", "v2\n").unwrap();
        repo.write("README", "hi\n").unwrap();
        let second = repo.commit("web v2").unwrap();
        assert_eq!(repo.log_subjects("main"), vec!["web v2", "web v1"]);
        assert_eq!(repo.show(&first, "apps/web/deploy.yaml").as_deref(), Some("v1\n"));
        assert_eq!(repo.show(&second, "apps/web/deploy.yaml").as_deref(), Some("v2\n"));
        repo.remove("README").unwrap();
        let third = repo.commit("drop readme").unwrap();
        assert_eq!(repo.show(&third, "README"), None);
        assert!(repo.url().starts_with("file:///"));
        assert!(repo.write("../escape", "x").is_err());
        assert!(repo.write("/etc/x", "x").is_err());
    }
}
