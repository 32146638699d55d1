//! Notifications on the simulator, with the controller as deploy/'s ServiceAccount: a Rollout that
//! subscribes to on-rollout-aborted gets one webhook POST (after two failed attempts: retried), one
//! Slack message and one Teams card when aborted, and nothing again after the controller restarts.
use sluice_e2e::kit as common;

use std::time::Duration;

use axum::http::StatusCode;
use common::receiver::Receiver;
use common::{RunningController, eventually, install_crds, start_sim};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::keys::NOTIFY_SENT_ANNOTATION;
use sluice::api::rollout::{CanaryStep, Rollout, RolloutPhase};

const LONG: Duration = Duration::from_secs(60);

fn subscribed_rollout() -> Rollout {
    let mut rollout = Rollout::example("web", 2, vec![CanaryStep::set_weight(50), CanaryStep::pause()]);
    let annotations = rollout.metadata.annotations.get_or_insert_default();
    for (trigger, service, recipient) in [
        ("on-rollout-aborted", "hook", ""),
        ("on-rollout-aborted", "slack", "#deploys"),
        ("on-rollout-aborted", "teams", "ops"),
        ("on-rollout-paused", "log", ""),
        ("on-rollout-completed", "log", ""),
        ("on-rollout-step-completed", "log", ""),
    ] {
        annotations.insert(
            format!("notifications.sluice.dev/subscribe.{trigger}.{service}"),
            recipient.into(),
        );
    }
    rollout
}

/// `/metrics` of the controller.
async fn metrics(controller: &RunningController) -> String {
    reqwest::get(format!("http://{}/metrics", controller.metrics_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_is_notified_once_to_webhook_slack_and_teams_with_retries_and_across_a_restart() {
    let sim = start_sim().await;
    install_crds(&sim);
    let client = sim.client().unwrap();
    let namespace = serde_json::from_value(json!({"metadata": {"name": "sluice-system"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let (hook, hook_url) = Receiver::start(&[StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_GATEWAY]).await;
    let (log, log_url) = Receiver::start(&[]).await;
    let (chat, chat_url) = Receiver::start(&[]).await;
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications-secret"},
        "stringData": {"slack-token": "xoxb-e2e"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "sluice-system")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let configmap: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications"},
        "data": {
            "service.webhook.hook": format!("url: {hook_url}/hook\n"),
            "service.webhook.log": format!("url: {log_url}/log\n"),
            "service.slack": format!("token: $slack-token\napiURL: {chat_url}/api\n"),
            "service.teams": format!("recipientUrls:\n  ops: {chat_url}/teams/ops\n"),
            "template.rollout-aborted": "message: \"{{ .object.name }} aborted at step {{ .rollout.status.currentStepIndex }}\"\n",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "sluice-system")
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();

    // Given a subscribed Rollout, healthy at v1, paused on its pause step with v2.
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "default");
    rollouts
        .create(&PostParams::default(), &subscribed_rollout())
        .await
        .unwrap();
    let controller = RunningController::start(&sim, None).await;
    let phase = || async { rollouts.get("web").await.ok()?.status?.phase };
    eventually(LONG, "v1 healthy", || async {
        (phase().await? == RolloutPhase::Healthy).then_some(())
    })
    .await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(&image))
        .await
        .unwrap();
    eventually(LONG, "v2 paused", || async {
        (phase().await? == RolloutPhase::Paused).then_some(())
    })
    .await;
    eventually(LONG, "the pause notified", || async {
        log.triggers().contains(&"on-rollout-paused".to_string()).then_some(())
    })
    .await;

    // When it is aborted.
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"abort": true}})),
        )
        .await
        .unwrap();

    // Then each destination is told once; the webhook after failing twice (retried with backoff).
    let sent = eventually(LONG, "the abort notified and recorded", || async {
        let rollout = rollouts.get("web").await.ok()?;
        let sent = rollout.annotations().get(NOTIFY_SENT_ANNOTATION)?.clone();
        sent.contains("on-rollout-aborted:").then_some(sent)
    })
    .await;
    let hooks = hook.requests();
    assert_eq!(hooks.len(), 3, "two failures, then delivered: {hooks:?}");
    assert!(
        hooks.iter().all(|(_, _, body)| body == &hooks[0].2),
        "the same notification each time: {hooks:#?}"
    );
    let body = &hooks[2].2;
    assert_eq!(body["trigger"], "on-rollout-aborted");
    assert_eq!(body["object"]["kind"], "Rollout");
    assert_eq!(body["object"]["namespace"], "default");
    assert_eq!(body["object"]["name"], "web");
    assert_eq!(body["message"], "web aborted at step 1");
    assert!(sent.contains(body["key"].as_str().unwrap()), "{sent}");
    let chats = chat.requests();
    let slack: Vec<_> = chats
        .iter()
        .filter(|(path, _, _)| path == "/api/chat.postMessage")
        .collect();
    assert_eq!(slack.len(), 1, "{chats:?}");
    assert_eq!(slack[0].1, "Bearer xoxb-e2e");
    assert_eq!(slack[0].2["channel"], "#deploys");
    assert!(slack[0].2["text"].as_str().unwrap().ends_with("web aborted at step 1"));
    let teams: Vec<_> = chats.iter().filter(|(path, _, _)| path == "/teams/ops").collect();
    assert_eq!(teams.len(), 1, "{chats:?}");
    assert_eq!(teams[0].2["@type"], "MessageCard");
    assert_eq!(teams[0].2["text"], "web aborted at step 1");
    let exported = metrics(&controller).await;
    for series in [
        r#"sluice_notifications_sent_total{trigger="on-rollout-aborted",service="hook",result="sent"} 1"#,
        r#"sluice_notifications_sent_total{trigger="on-rollout-aborted",service="slack",result="sent"} 1"#,
        r#"sluice_notifications_sent_total{trigger="on-rollout-aborted",service="teams",result="sent"} 1"#,
        "sluice_notification_queue_depth 0",
    ] {
        assert!(exported.contains(series), "{series} missing from:\n{exported}");
    }

    // And a restart sends nothing again (the record on the Rollout says what was sent).
    let seen_log = log.triggers();
    controller.stop().await;
    let controller = RunningController::start(&sim, None).await;
    eventually(LONG, "the restarted controller reconciled the Rollout", || async {
        let text = metrics(&controller).await;
        text.contains(r#"sluice_reconcile_total{controller="rollout"}"#)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(hook.requests().len(), 3);
    assert_eq!(chat.requests().len(), 2);
    assert_eq!(log.triggers(), seen_log, "nothing sent again after the restart");
    let keys: Vec<String> = log
        .requests()
        .iter()
        .filter_map(|(_, _, body)| body["key"].as_str().map(str::to_string))
        .collect();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "each state once: {keys:?}");
    assert!(seen_log.contains(&"on-rollout-completed".to_string()), "{seen_log:?}");
    controller.stop().await;
}
