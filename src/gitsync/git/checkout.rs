//! Writing one fetched revision's tree out of the mirror into a fresh temporary directory, with
//! symlinks as plain files so nothing read from the checkout can leave it.

use std::time::Duration;

use super::errors::{classify, looks_corrupt};
use super::process::Invocation;
use super::{GitSource, SourceError};

impl GitSource {
    /// The tree of `revision` (already fetched) written to a fresh temporary directory under the cache
    /// dir (which is writable where the root filesystem may not be). Symlinks are written as plain files
    /// holding the link target, so rendering can never follow a link out of the checkout.
    pub async fn checkout(
        &self,
        key: &str,
        revision: &str,
        timeout: Duration,
    ) -> Result<tempfile::TempDir, SourceError> {
        let mirror = self.mirror_dir(key);
        let work = async {
            let sha = match self.resolve_commit(&mirror, revision).await {
                Err(error) => return Err(self.drop_corrupt_mirror(key, &mirror, error).await),
                Ok(sha) => sha,
            };
            let sha = sha.ok_or_else(|| SourceError::NotFound {
                target: key.to_string(),
                message: format!("revision {revision:?} has not been fetched"),
            })?;
            let tmp = self.tmp_root().await?;
            let dir = tempfile::Builder::new()
                .prefix("checkout-")
                .tempdir_in(&tmp)
                .map_err(|e| SourceError::io(format!("creating a checkout directory in {}", tmp.display()), e))?;
            let scratch = tempfile::Builder::new()
                .prefix("index-")
                .tempdir_in(&tmp)
                .map_err(|e| SourceError::io(format!("creating a scratch directory in {}", tmp.display()), e))?;
            let invocation = Invocation::in_repo(&mirror)
                .work_tree(dir.path())
                .index(scratch.path().join("index"))
                .config("core.symlinks", "false");
            let out = self
                .git(&invocation, &["read-tree", "--reset", "-u", &sha], None)
                .await?;
            if !out.success {
                let error = classify("checkout", key, &out.stderr, &[]);
                if looks_corrupt(&out.stderr) {
                    return Err(self.drop_corrupt_mirror(key, &mirror, error).await);
                }
                return Err(error);
            }
            Ok(dir)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| SourceError::Timeout {
                operation: "checkout",
                target: key.to_string(),
                after: timeout,
            })?
    }
}
