//! What a GitSync's ref asks for (commit, tag, branch or the remote HEAD), and the validation of ref
//! names and SHAs before they reach git's command line.

use super::SourceError;
use crate::api::gitsync::GitRef;

/// What the GitRef asks for; the most specific field wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wanted {
    Commit(String),
    Tag(String),
    Branch(String),
    Head,
}

impl Wanted {
    pub(super) fn from_ref(git_ref: Option<&GitRef>) -> Result<Wanted, SourceError> {
        let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let Some(git_ref) = git_ref else {
            return Ok(Wanted::Head);
        };
        if let Some(commit) = nonempty(&git_ref.commit) {
            validate_sha("spec.ref.commit", &commit)?;
            return Ok(Wanted::Commit(commit));
        }
        if let Some(tag) = nonempty(&git_ref.tag) {
            validate_ref_name("spec.ref.tag", &tag)?;
            return Ok(Wanted::Tag(tag));
        }
        if let Some(branch) = nonempty(&git_ref.branch) {
            validate_ref_name("spec.ref.branch", &branch)?;
            return Ok(Wanted::Branch(branch));
        }
        Ok(Wanted::Head)
    }
}

/// Branch and tag names as `git check-ref-format` accepts them, minus anything that could read as an option.
pub(super) fn validate_ref_name(field: &'static str, name: &str) -> Result<(), SourceError> {
    let invalid = |reason: &str| SourceError::InvalidSpec {
        field,
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') || name.ends_with('.') {
        return Err(invalid("must not start with '-' or '/' or end with '/' or '.'"));
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") || name == "@" {
        return Err(invalid("must not contain '..', '@{' or '//'"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err(invalid(
            "must not contain spaces, control characters or any of ~^:?*[\\",
        ));
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err(invalid("no component may start with '.' or end with '.lock'"));
    }
    Ok(())
}

/// A full or abbreviated commit SHA, hex only (never an option or a revision expression).
pub(super) fn validate_sha(field: &'static str, sha: &str) -> Result<(), SourceError> {
    if (4..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(SourceError::InvalidSpec {
            field,
            value: sha.to_string(),
            reason: "must be a commit SHA (4 to 64 hex digits)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_ref(branch: Option<&str>, tag: Option<&str>, commit: Option<&str>) -> GitRef {
        GitRef {
            branch: branch.map(String::from),
            tag: tag.map(String::from),
            commit: commit.map(String::from),
        }
    }

    #[test]
    fn most_specific_ref_wins() {
        assert_eq!(Wanted::from_ref(None).unwrap(), Wanted::Head);
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(None, None, None))).unwrap(),
            Wanted::Head
        );
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(Some("main"), Some("v1"), Some("abc123")))).unwrap(),
            Wanted::Commit("abc123".into())
        );
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(Some("main"), Some("v1"), None))).unwrap(),
            Wanted::Tag("v1".into())
        );
        assert_eq!(
            Wanted::from_ref(Some(&git_ref(Some("release/1.x"), None, Some("")))).unwrap(),
            Wanted::Branch("release/1.x".into())
        );
    }

    #[test]
    fn rejects_ref_names_git_would_misread() {
        for branch in [
            "--upload-pack=x",
            "a..b",
            "a b",
            "a:b",
            "a~1",
            "x.lock",
            ".hidden",
            "a/",
            "a@{1}",
            "*",
        ] {
            let error = Wanted::from_ref(Some(&git_ref(Some(branch), None, None))).expect_err(branch);
            assert!(error.to_string().starts_with("spec.ref.branch"), "{error}");
        }
        for commit in [
            "xyz",
            "abc",
            "-abcd",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        ] {
            assert!(
                Wanted::from_ref(Some(&git_ref(None, None, Some(commit)))).is_err(),
                "{commit}"
            );
        }
    }
}
