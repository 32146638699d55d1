//! GitSource against real repositories: file://, git daemon and smart HTTP with Basic auth.
use sluice_e2e::kit as common;

use std::time::{Duration, Instant};

use common::git_servers::{GitDaemon, GitHttpServer};
use sluice::api::gitsync::GitRef;
use sluice::gitsync::git::{Credentials, GitSource, RevertRequest, SourceError};
use sluice_e2e::kit::local_repo::LocalRepo;

const TIMEOUT: Duration = Duration::from_secs(20);
const AUTHOR: &str = "Sluice <sluice@sluice.dev>";

fn branch(name: &str) -> GitRef {
    GitRef {
        branch: Some(name.into()),
        ..GitRef::default()
    }
}

fn tag(name: &str) -> GitRef {
    GitRef {
        tag: Some(name.into()),
        ..GitRef::default()
    }
}

fn commit(sha: &str) -> GitRef {
    GitRef {
        commit: Some(sha.into()),
        ..GitRef::default()
    }
}

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: username.into(),
        password: password.into(),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    repo: LocalRepo,
    source: GitSource,
}

/// A repository at `<dir>/app/repo.git` (served as `app/repo.git` by the servers) and a source caching
/// under `<dir>/cache`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = LocalRepo::create(dir.path().join("app")).expect("repo");
    let source = GitSource::new(dir.path().join("cache")).allow_file_repos(true);
    Fixture { dir, repo, source }
}

/// Monorepo history: c1 (healthy), c2 changes web, c3 changes api, c4 changes web again.
fn monorepo(repo: &LocalRepo) -> [String; 4] {
    repo.write("apps/web/deploy.yaml", "web: v1\n").unwrap();
    repo.write("apps/web/extra.yaml", "extra: 1\n").unwrap();
    repo.write("apps/api/deploy.yaml", "api: v1\n").unwrap();
    let c1 = repo.commit("initial").unwrap();
    repo.write("apps/web/deploy.yaml", "web: v2\n").unwrap();
    repo.write("apps/web/new.yaml", "new: 1\n").unwrap();
    let c2 = repo.commit("web v2").unwrap();
    repo.write("apps/api/deploy.yaml", "api: v2\n").unwrap();
    let c3 = repo.commit("api v2").unwrap();
    repo.write("apps/web/deploy.yaml", "web: v3\n").unwrap();
    repo.remove("apps/web/extra.yaml").unwrap();
    let c4 = repo.commit("web v3").unwrap();
    [c1, c2, c3, c4]
}

#[tokio::test]
async fn resolves_head_branch_tag_and_commit_over_file_urls() {
    let Fixture {
        dir: _dir,
        repo,
        source,
    } = fixture();
    repo.write("app.yaml", "v1\n").unwrap();
    let c1 = repo.commit("v1").unwrap();
    repo.tag("v1", Some("release 1")).unwrap();
    repo.write("app.yaml", "v2\n").unwrap();
    let c2 = repo.commit("v2").unwrap();
    repo.tag("light", None).unwrap();
    repo.switch("feature").unwrap();
    repo.write("app.yaml", "feature\n").unwrap();
    let c3 = repo.commit("feature").unwrap();
    let url = repo.url();
    let fetch = |git_ref: Option<GitRef>| {
        let source = source.clone();
        let url = url.clone();
        async move { source.fetch("default/app", &url, git_ref.as_ref(), None, TIMEOUT).await }
    };

    assert_eq!(fetch(None).await.unwrap(), c2, "remote HEAD is main");
    assert_eq!(fetch(Some(branch("main"))).await.unwrap(), c2);
    assert_eq!(fetch(Some(branch("feature"))).await.unwrap(), c3);
    assert_eq!(
        fetch(Some(tag("v1"))).await.unwrap(),
        c1,
        "annotated tag peeled to its commit"
    );
    assert_eq!(fetch(Some(tag("light"))).await.unwrap(), c2);
    assert_eq!(fetch(Some(commit(&c3))).await.unwrap(), c3);
    assert_eq!(fetch(Some(commit(&c1[..8]))).await.unwrap(), c1, "short SHA");
    let most_specific = GitRef {
        branch: Some("feature".into()),
        tag: Some("v1".into()),
        commit: Some(c2.clone()),
    };
    assert_eq!(fetch(Some(most_specific)).await.unwrap(), c2);

    for missing in [branch("nope"), tag("v9"), commit("deadbeef"), commit(&"ab".repeat(20))] {
        let error = fetch(Some(missing.clone())).await.unwrap_err();
        assert!(matches!(error, SourceError::NotFound { .. }), "{missing:?}: {error:?}");
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn incremental_fetch_and_checkout_of_older_revisions() {
    let Fixture {
        dir: _dir,
        repo,
        source,
    } = fixture();
    repo.write("deploy/app.yaml", "v1\n").unwrap();
    repo.write("README", "hello\n").unwrap();
    let c1 = repo.commit("v1").unwrap();
    let main = branch("main");
    assert_eq!(
        source
            .fetch("ns/a", &repo.url(), Some(&main), None, TIMEOUT)
            .await
            .unwrap(),
        c1
    );

    repo.write("deploy/app.yaml", "v2\n").unwrap();
    let c2 = repo.commit("v2").unwrap();
    assert_eq!(
        source
            .fetch("ns/a", &repo.url(), Some(&main), None, TIMEOUT)
            .await
            .unwrap(),
        c2
    );
    assert!(source.has_revision("ns/a", &c1).await);
    assert!(source.has_revision("ns/a", &c2).await);
    assert!(!source.has_revision("ns/a", &"0".repeat(40)).await);
    assert!(!source.has_revision("ns/other", &c1).await);

    let old = source.checkout("ns/a", &c1, TIMEOUT).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(old.path().join("deploy/app.yaml")).unwrap(),
        "v1\n"
    );
    assert_eq!(std::fs::read_to_string(old.path().join("README")).unwrap(), "hello\n");
    assert!(!old.path().join(".git").exists());
    let new = source.checkout("ns/a", &c2, TIMEOUT).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(new.path().join("deploy/app.yaml")).unwrap(),
        "v2\n"
    );

    let error = source.checkout("ns/a", &"1".repeat(40), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, SourceError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn a_new_url_or_a_corrupt_cache_starts_a_fresh_mirror() {
    let Fixture { dir, repo, source } = fixture();
    repo.write("a", "from a\n").unwrap();
    let a1 = repo.commit("a").unwrap();
    let other = LocalRepo::create(dir.path().join("other")).unwrap();
    other.write("b", "from b\n").unwrap();
    let b1 = other.commit("b").unwrap();

    assert_eq!(
        source.fetch("ns/x", &repo.url(), None, None, TIMEOUT).await.unwrap(),
        a1
    );
    assert_eq!(
        source.fetch("ns/x", &other.url(), None, None, TIMEOUT).await.unwrap(),
        b1
    );
    assert!(
        !source.has_revision("ns/x", &a1).await,
        "histories of two URLs never mix"
    );

    // A foreign file where the mirror should be, then a mirror with its objects gone.
    let mirror = source.mirror_dir("ns/x");
    std::fs::remove_dir_all(&mirror).unwrap();
    std::fs::write(&mirror, "not a repository").unwrap();
    assert_eq!(
        source.fetch("ns/x", &other.url(), None, None, TIMEOUT).await.unwrap(),
        b1
    );
    // A git killed at its timeout leaves lock files behind.
    std::fs::write(mirror.join("refs/heads/main.lock"), "").unwrap();
    std::fs::write(mirror.join("config.lock"), "").unwrap();
    other.write("b", "b again\n").unwrap();
    let b2 = other.commit("b2").unwrap();
    assert_eq!(
        source.fetch("ns/x", &other.url(), None, None, TIMEOUT).await.unwrap(),
        b2
    );
    std::fs::remove_dir_all(mirror.join("objects")).unwrap();
    assert_eq!(
        source.fetch("ns/x", &other.url(), None, None, TIMEOUT).await.unwrap(),
        b2
    );
    let checkout = source.checkout("ns/x", &b1, TIMEOUT).await.unwrap();
    assert_eq!(std::fs::read_to_string(checkout.path().join("b")).unwrap(), "from b\n");

    // Corrupt objects: the failing checkout drops the mirror, the next fetch rebuilds it.
    corrupt_objects(&mirror);
    let error = source.checkout("ns/x", &b1, TIMEOUT).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(
        source.fetch("ns/x", &other.url(), None, None, TIMEOUT).await.unwrap(),
        b2
    );
    let checkout = source.checkout("ns/x", &b1, TIMEOUT).await.unwrap();
    assert_eq!(std::fs::read_to_string(checkout.path().join("b")).unwrap(), "from b\n");

    // Corrupt objects seen by a fetch that has nothing new to fetch: rebuilt at once.
    corrupt_objects(&mirror);
    assert_eq!(
        source.fetch("ns/x", &other.url(), None, None, TIMEOUT).await.unwrap(),
        b2
    );
    assert!(source.has_revision("ns/x", &b1).await);
}

fn corrupt_objects(mirror: &std::path::Path) {
    for entry in walkdir::WalkDir::new(mirror.join("objects")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let path = entry.path();
            let mut permissions = std::fs::metadata(path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            permissions.set_readonly(false);
            std::fs::set_permissions(path, permissions).unwrap();
            std::fs::write(path, "garbage").unwrap();
        }
    }
}

#[tokio::test]
async fn fetches_over_the_git_daemon() {
    let Fixture { dir, repo, source } = fixture();
    repo.write("app.yaml", "v1\n").unwrap();
    let c1 = repo.commit("v1").unwrap();
    let daemon = GitDaemon::start(dir.path()).await;
    let url = daemon.url("app/repo.git");
    assert_eq!(
        source
            .fetch("ns/d", &url, Some(&branch("main")), None, TIMEOUT)
            .await
            .unwrap(),
        c1
    );
    repo.write("app.yaml", "v2\n").unwrap();
    let c2 = repo.commit("v2").unwrap();
    assert_eq!(source.fetch("ns/d", &url, None, None, TIMEOUT).await.unwrap(), c2);

    let error = source
        .fetch("ns/missing", &daemon.url("nope.git"), None, None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn fetches_over_http_with_basic_auth_and_never_leaks_the_password() {
    let Fixture { dir, repo, source } = fixture();
    repo.write("app.yaml", "v1\n").unwrap();
    let c1 = repo.commit("v1").unwrap();
    let server = GitHttpServer::start(dir.path(), "bob", "s3cret-pw").await;
    let url = server.url("app/repo.git");

    let right = basic("bob", "s3cret-pw");
    assert_eq!(
        source.fetch("ns/h", &url, None, Some(&right), TIMEOUT).await.unwrap(),
        c1
    );

    let wrong = basic("bob", "wrong-pw-123");
    let error = source
        .fetch("ns/h", &url, None, Some(&wrong), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::AuthFailed { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("wrong-pw-123") && !text.contains("s3cret-pw"), "{text}");

    let error = source.fetch("ns/h", &url, None, None, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(error, SourceError::AuthFailed { .. }),
        "no credentials: {error:?}"
    );

    // A token in the URL itself works too and is redacted from errors.
    let in_url = url.replace("http://", "http://bob:wrong-pw-123@");
    let error = source.fetch("ns/h2", &in_url, None, None, TIMEOUT).await.unwrap_err();
    assert!(!error.to_string().contains("wrong-pw-123"), "{error}");

    let error = source
        .fetch("ns/h3", &server.url("nope.git"), None, Some(&right), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn unreachable_remotes_fail_within_the_timeout() {
    let Fixture { dir: _dir, source, .. } = fixture();
    let closed = common::free_port();
    let started = Instant::now();
    let error = source
        .fetch("ns/u", &format!("http://127.0.0.1:{closed}/r.git"), None, None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::Git { .. }) && error.is_transient(),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Accepts connections but never answers: only the timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/r.git", silent.local_addr().unwrap());
    let started = Instant::now();
    let error = source
        .fetch("ns/u", &url, None, None, Duration::from_millis(800))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::Timeout { .. }) && error.is_transient(),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let error = source
        .fetch("ns/u", "ext::sh -c touch% /tmp/pwned", None, None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("spec.repoURL"), "{error}");

    // Another GitSync's mirror is not a repository anyone may point at.
    let mirror = source.mirror_dir("other-namespace/private");
    std::fs::create_dir_all(&mirror).unwrap();
    let error = source
        .fetch("ns/u", &format!("file://{}", mirror.display()), None, None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::InvalidUrl { .. }), "{error:?}");
}

#[tokio::test]
async fn reverts_one_path_of_a_monorepo_with_one_pushed_commit() {
    let Fixture {
        dir: _dir,
        repo,
        source,
    } = fixture();
    let [c1, c2, c3, c4] = monorepo(&repo);
    let url = repo.url();
    assert_eq!(
        source
            .fetch("ns/r", &url, Some(&branch("main")), None, TIMEOUT)
            .await
            .unwrap(),
        c4
    );
    let request = RevertRequest {
        key: "ns/r",
        url: &url,
        credentials: None,
        branch: "main",
        expected_head: &c4,
        to_revision: &c1,
        path: "apps/web",
        author: AUTHOR,
        reason: "Rollout default/web: analysis success-rate failed",
        timeout: TIMEOUT,
    };
    let pushed = source.revert_path_to(&request).await.unwrap().expect("a revert commit");

    assert_eq!(repo.head("main").unwrap(), pushed);
    assert_eq!(repo.show(&pushed, "apps/web/deploy.yaml").as_deref(), Some("web: v1\n"));
    assert_eq!(repo.show(&pushed, "apps/web/extra.yaml").as_deref(), Some("extra: 1\n"));
    assert_eq!(repo.show(&pushed, "apps/web/new.yaml"), None);
    assert_eq!(
        repo.show(&pushed, "apps/api/deploy.yaml").as_deref(),
        Some("api: v2\n"),
        "other path kept"
    );
    let subjects = repo.log_subjects("main");
    assert_eq!(subjects[0], format!("Revert apps/web to {}", &c1[..12]));
    assert_eq!(subjects[1], "web v3", "exactly one commit on top of the expected head");
    let message = repo.message(&pushed).unwrap();
    assert!(message.contains(&format!("{c4} web v3")), "{message}");
    assert!(message.contains(&format!("{c2} web v2")), "{message}");
    assert!(!message.contains(&c3), "api commit does not touch the path: {message}");
    assert!(message.contains("analysis success-rate failed"), "{message}");
    assert!(
        message.trim_end().ends_with(&format!("Sluice-Reverted: {c4}")),
        "{message}"
    );
    assert!(source.has_revision("ns/r", &pushed).await);

    // The head moved (our own revert): nothing is pushed on top of work we haven't seen.
    assert_eq!(source.revert_path_to(&request).await.unwrap(), None);
    assert_eq!(repo.head("main").unwrap(), pushed);
    // Already at the old content: nothing to revert.
    let again = RevertRequest {
        expected_head: &pushed,
        ..request.clone()
    };
    assert_eq!(source.revert_path_to(&again).await.unwrap(), None);

    // A person keeps working on top of the revert.
    repo.write("apps/web/deploy.yaml", "web: v4\n").unwrap();
    let c5 = repo.commit("web v4").unwrap();
    assert_eq!(repo.show(&c5, "apps/api/deploy.yaml").as_deref(), Some("api: v2\n"));
    assert_eq!(repo.show(&c5, "apps/web/new.yaml"), None);
}

#[tokio::test]
async fn reverts_the_whole_repository_over_the_git_daemon() {
    let Fixture { dir, repo, source } = fixture();
    let [c1, _, _, c4] = monorepo(&repo);
    let daemon = GitDaemon::start(dir.path()).await;
    let url = daemon.url("app/repo.git");
    source
        .fetch("ns/g", &url, Some(&branch("main")), None, TIMEOUT)
        .await
        .unwrap();
    let request = RevertRequest {
        key: "ns/g",
        url: &url,
        credentials: None,
        branch: "main",
        expected_head: &c4,
        to_revision: &c1,
        path: ".",
        author: AUTHOR,
        reason: "analysis failed",
        timeout: TIMEOUT,
    };
    let pushed = source.revert_path_to(&request).await.unwrap().expect("pushed");
    assert_eq!(repo.head("main").unwrap(), pushed);
    assert_eq!(repo.show(&pushed, "apps/api/deploy.yaml").as_deref(), Some("api: v1\n"));
    assert_eq!(repo.show(&pushed, "apps/web/deploy.yaml").as_deref(), Some("web: v1\n"));
    assert_eq!(repo.log_subjects("main")[0], format!("Revert . to {}", &c1[..12]));
}

#[tokio::test]
async fn reverts_over_http_with_credentials_and_yields_to_a_concurrent_push() {
    let Fixture { dir, repo, source } = fixture();
    let [c1, _, _, c4] = monorepo(&repo);
    let server = GitHttpServer::start(dir.path(), "bob", "s3cret-pw").await;
    let url = server.url("app/repo.git");
    let credentials = basic("bob", "s3cret-pw");
    source
        .fetch("ns/p", &url, Some(&branch("main")), Some(&credentials), TIMEOUT)
        .await
        .unwrap();
    // Someone pushes after our fetch: the revert is not made.
    repo.write("apps/web/deploy.yaml", "web: v5\n").unwrap();
    let c5 = repo.commit("web v5").unwrap();
    let request = RevertRequest {
        key: "ns/p",
        url: &url,
        credentials: Some(&credentials),
        branch: "main",
        expected_head: &c4,
        to_revision: &c1,
        path: "apps/web",
        author: AUTHOR,
        reason: "analysis failed",
        timeout: TIMEOUT,
    };
    assert_eq!(source.revert_path_to(&request).await.unwrap(), None);
    assert_eq!(repo.head("main").unwrap(), c5);

    let request = RevertRequest {
        expected_head: &c5,
        ..request
    };
    let pushed = source
        .revert_path_to(&request)
        .await
        .unwrap()
        .expect("pushed over http");
    assert_eq!(repo.head("main").unwrap(), pushed);
    assert_eq!(repo.show(&pushed, "apps/web/deploy.yaml").as_deref(), Some("web: v1\n"));

    let wrong = basic("bob", "nope-nope");
    let request = RevertRequest {
        credentials: Some(&wrong),
        ..request
    };
    let error = source.revert_path_to(&request).await.unwrap_err();
    assert!(matches!(error, SourceError::AuthFailed { .. }), "{error:?}");
}
