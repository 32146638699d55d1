//! The Argo CD Lua in deploy/argocd, run for real: each health script against sample Rollouts and
//! GitSyncs, each action against a Rollout (and checked against the patch the `sluice` CLI sends for
//! the same command), and the argocd-cm patch checked to embed exactly the .lua files.
//!
//! Lua 5.1 because Argo CD runs gopher-lua, a 5.1 implementation, with only the base, table, string
//! and math libraries opened (plus a restricted os).
//!
//! `SLUICE_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua` rewrites argocd-cm-patch.yaml from the
//! .lua files.
use std::path::{Path, PathBuf};

use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib};
use serde_json::{Value, json};
use sluice::api::rollout::{CanaryStep, Rollout};
use sluice::cli::actions::{abort_patch, promote_full_patch, promote_step_patch, retry_patch};

const ACTIONS: [&str; 4] = ["promote", "promote-full", "abort", "retry"];

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/argocd")
}

fn lua_file(relative: &str) -> String {
    let path = argocd_dir().join("lua").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `script` with the global `obj` as Argo CD does and returns what it returns.
fn run(script: &str, obj: &Value) -> mlua::Result<Value> {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::new())?;
    lua.globals().set("obj", lua.to_value(obj)?)?;
    let result: mlua::Value = lua.load(script).eval()?;
    Ok(whole_numbers_as_integers(lua.from_value(result)?))
}

/// Lua 5.1 has only floats; Kubernetes integers come back as 1.0. Argo CD turns whole floats back
/// into integers too.
fn whole_numbers_as_integers(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers_as_integers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, whole_numbers_as_integers(v)))
                .collect(),
        ),
        other => other,
    }
}

fn health(script: &str, obj: &Value) -> (String, String) {
    let result = run(script, obj).unwrap_or_else(|e| panic!("health script failed: {e}"));
    (
        result["status"].as_str().unwrap_or_default().to_string(),
        result["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": message,
           "lastTransitionTime": "2025-03-01T12:00:00Z"})
}

/// The kstatus trio plus Healthy, as the controller writes them for `phase`.
fn kstatus(phase: &str, message: &str) -> Vec<Value> {
    vec![
        condition("Healthy", phase == "Healthy", phase, message),
        condition("Ready", phase == "Healthy", phase, message),
        condition("Reconciling", matches!(phase, "Progressing" | "Paused"), phase, message),
        condition("Stalled", phase == "Degraded", phase, message),
    ]
}

/// A three-step canary Rollout at generation 2 whose controller status is `status` (observed
/// generation 2 unless `status` says otherwise).
fn rollout(status: Value) -> Value {
    let steps = vec![
        CanaryStep::set_weight(20),
        CanaryStep::pause(),
        CanaryStep::set_weight(50),
    ];
    let mut rollout = serde_json::to_value(Rollout::example("web", 3, steps).with_generation(2)).unwrap();
    if !status.is_null() {
        let mut full = json!({"observedGeneration": 2, "stableRS": "aaa111", "currentPodHash": "bbb222"});
        json_patch::merge(&mut full, &status);
        rollout["status"] = full;
    }
    rollout
}

fn healthy_rollout() -> Value {
    rollout(
        json!({"phase": "Healthy", "currentPodHash": "aaa111", "currentStepIndex": 3,
                   "conditions": kstatus("Healthy", "all 3 steps done")}),
    )
}

fn canary_at(index: i32) -> Value {
    rollout(json!({"phase": "Progressing", "currentStepIndex": index,
                   "conditions": kstatus("Progressing", format!("step {}/3", index + 1).as_str())}))
}

fn aborted_rollout() -> Value {
    rollout(
        json!({"phase": "Degraded", "currentStepIndex": 1, "abort": true, "abortReason": "AnalysisFailed",
                   "abortedAt": "2025-03-01T12:00:00Z",
                   "message": "RolloutAborted: analysis error-rate failed",
                   "conditions": kstatus("Degraded", "RolloutAborted: analysis error-rate failed")}),
    )
}

#[test]
fn rollout_health() {
    let script = lua_file("health_rollout.lua");
    let check = |obj: Value, expected: &str, message_has: &str| {
        let (status, message) = health(&script, &obj);
        assert_eq!(status, expected, "{message}\n{obj:#}");
        assert!(message.contains(message_has), "{message:?} lacks {message_has:?}");
    };
    check(rollout(Value::Null), "Progressing", "Waiting for the Sluice controller");
    check(healthy_rollout(), "Healthy", "all 3 steps done");
    check(canary_at(0), "Progressing", "step 1/3");
    let mut paused = canary_at(1);
    paused["status"]["pauseConditions"] = json!([{"reason": "CanaryPauseStep", "startTime": "2025-03-01T12:00:00Z"}]);
    paused["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(condition("Paused", true, "CanaryPauseStep", ""));
    check(paused, "Suspended", "CanaryPauseStep");
    let mut by_spec = healthy_rollout();
    by_spec["spec"]["paused"] = json!(true);
    check(by_spec, "Suspended", "spec.paused");
    check(
        aborted_rollout(),
        "Degraded",
        "Canary aborted (AnalysisFailed): RolloutAborted: analysis error-rate failed",
    );
    let mut invalid = healthy_rollout();
    invalid["status"]["conditions"] = json!([
        condition(
            "InvalidSpec",
            true,
            "InvalidSpec",
            "steps[1].setWeight: 120 is not within 0..=100"
        ),
        condition(
            "Ready",
            false,
            "InvalidSpec",
            "steps[1].setWeight: 120 is not within 0..=100"
        ),
    ]);
    check(invalid, "Degraded", "120 is not within");
    let mut stalled = healthy_rollout();
    stalled["status"]["conditions"] = json!(kstatus("Degraded", "ProgressDeadlineExceeded: no progress in 600s"));
    check(stalled, "Degraded", "ProgressDeadlineExceeded");
    // A new spec the controller has not seen: the Ready=True above is about the old one.
    let mut stale = healthy_rollout();
    stale["metadata"]["generation"] = json!(3);
    check(stale, "Progressing", "generation 3");
    let mut no_conditions = healthy_rollout();
    no_conditions["status"]["conditions"] = json!([]);
    check(no_conditions, "Progressing", "Waiting for the Rollout to become ready");
}

fn gitsync(spec: Value, status: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "GitSync",
        "metadata": {"name": "shop", "namespace": "default", "generation": 4},
        "spec": {"repoURL": "https://git.example.com/shop.git", "path": "deploy", "interval": "1m"},
    });
    json_patch::merge(&mut obj["spec"], &spec);
    if !status.is_null() {
        obj["status"] = json!({"observedGeneration": 4, "lastAppliedRevision": "0123456789abcdef"});
        json_patch::merge(&mut obj["status"], &status);
    }
    obj
}

#[test]
fn gitsync_health() {
    let script = lua_file("health_gitsync.lua");
    let check = |obj: Value, expected: &str, message_has: &str| {
        let (status, message) = health(&script, &obj);
        assert_eq!(status, expected, "{message}\n{obj:#}");
        assert!(message.contains(message_has), "{message:?} lacks {message_has:?}");
    };
    let ready = json!({"conditions": [condition("Ready", true, "Succeeded", "applied revision 01234567")]});
    check(
        gitsync(json!({}), Value::Null),
        "Progressing",
        "Waiting for the Sluice controller",
    );
    check(
        gitsync(json!({}), ready.clone()),
        "Healthy",
        "applied revision 01234567",
    );
    let pinned = json!({"conditions": [condition("Ready", true, "Pinned", "applied revision 01234567 (pinned: revision 89abcdef is blocked)")]});
    check(gitsync(json!({}), pinned), "Healthy", "pinned");
    let progressing = json!({"conditions": [
        condition("Ready", false, "Progressing", "revision 01234567: rollout web at step 2/4"),
        condition("Reconciling", true, "Progressing", "revision 01234567: rollout web at step 2/4"),
    ]});
    check(gitsync(json!({}), progressing), "Progressing", "step 2/4");
    let retrying = json!({"conditions": [
        condition("Ready", false, "SyncFailed", "fetching: connection refused"),
        condition("Reconciling", true, "Retrying", "fetching: connection refused"),
    ]});
    check(gitsync(json!({}), retrying), "Degraded", "connection refused");
    let stalled = json!({"conditions": [
        condition("Ready", false, "SyncFailed", "render: deploy/kustomization.yaml: unknown field"),
        condition("Stalled", true, "SyncFailed", "render: deploy/kustomization.yaml: unknown field"),
    ]});
    check(gitsync(json!({}), stalled), "Degraded", "unknown field");
    let unhealthy = json!({"conditions": [condition("Ready", false, "HealthCheckFailed", "revision 01234567: rollout web aborted")]});
    check(gitsync(json!({}), unhealthy), "Degraded", "aborted");
    check(
        gitsync(json!({"suspend": true}), ready.clone()),
        "Suspended",
        "spec.suspend",
    );
    let mut stale = gitsync(json!({}), ready);
    stale["metadata"]["generation"] = json!(5);
    check(stale, "Progressing", "generation 5");
}

fn enabled_actions(obj: &Value) -> Vec<String> {
    let result = run(&lua_file("actions/discovery.lua"), obj).expect("discovery runs");
    let mut enabled: Vec<String> = ACTIONS
        .iter()
        .filter(|name| {
            let action = &result[**name];
            assert!(action.is_object(), "discovery lists {name}: {result}");
            action["disabled"] != json!(true)
        })
        .map(|name| name.to_string())
        .collect();
    enabled.sort();
    enabled
}

#[test]
fn discovery_offers_what_the_cli_would_accept() {
    assert_eq!(enabled_actions(&canary_at(0)), ["abort", "promote", "promote-full"]);
    // All steps done, waiting for the canary to become stable: nothing left to promote past.
    assert_eq!(enabled_actions(&canary_at(3)), ["abort", "promote-full"]);
    assert_eq!(enabled_actions(&aborted_rollout()), ["retry"]);
    assert!(enabled_actions(&healthy_rollout()).is_empty());
    assert!(enabled_actions(&rollout(Value::Null)).is_empty());
    let mut stale = canary_at(1);
    stale["metadata"]["generation"] = json!(3);
    assert!(enabled_actions(&stale).is_empty());
}

/// The Rollout after the action, and the Rollout after the CLI's patch for the same command.
fn action_and_cli(action: &str, obj: &Value, cli_patch: &Value) -> (Value, Value) {
    let acted = run(&lua_file(&format!("actions/{action}.lua")), obj).unwrap_or_else(|e| panic!("{action}: {e}"));
    let mut patched = obj.clone();
    json_patch::merge(&mut patched, cli_patch);
    (acted, patched)
}

#[test]
fn actions_write_what_the_cli_writes() {
    let canary = canary_at(1);
    let (acted, cli) = action_and_cli("promote", &canary, &promote_step_patch(1));
    assert_eq!(acted["status"]["promotedStep"], 1);
    assert_eq!(acted, cli);
    let (acted, cli) = action_and_cli("promote-full", &canary, &promote_full_patch());
    assert_eq!(acted["status"]["promoteFull"], true);
    assert_eq!(acted, cli);
    let (acted, cli) = action_and_cli("abort", &canary, &abort_patch());
    assert_eq!(acted["status"]["abort"], true);
    assert_eq!(acted, cli);
    let aborted = aborted_rollout();
    let (acted, cli) = action_and_cli("retry", &aborted, &retry_patch());
    assert!(acted["status"].get("abort").is_none(), "{acted:#}");
    assert_eq!(
        acted["status"]["abortedAt"], "2025-03-01T12:00:00Z",
        "retry keeps abortedAt"
    );
    assert_eq!(acted, cli);
    // Promote after the last step: nothing to mark, as `sluice promote` says.
    let done = canary_at(3);
    assert_eq!(run(&lua_file("actions/promote.lua"), &done).unwrap(), done);
}

#[test]
fn actions_refuse_what_the_cli_refuses() {
    let refusal = |action: &str, obj: &Value| {
        run(&lua_file(&format!("actions/{action}.lua")), obj)
            .expect_err(action)
            .to_string()
    };
    assert!(refusal("retry", &canary_at(1)).contains("not aborted"));
    assert!(refusal("promote", &aborted_rollout()).contains("aborted; run retry"));
    assert!(refusal("promote-full", &aborted_rollout()).contains("aborted; run retry"));
    assert!(refusal("abort", &healthy_rollout()).contains("no canary to abort"));
    assert!(refusal("promote", &healthy_rollout()).contains("nothing to promote"));
    for action in ACTIONS {
        assert!(refusal(action, &rollout(Value::Null)).contains("not"), "{action}");
    }
}

/// Indents every non-empty line of `text` by `spaces`.
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("{pad}{line}")
            }
        })
        .map(|line| line + "\n")
        .collect()
}

const CM_HEADER: &str = "\
# Argo CD resource customizations for Sluice: health of Rollouts and GitSyncs, and the Rollout actions
# promote, promote-full, abort and retry. Merge into argocd-cm; see README.md.
# Generated from lua/ by `SLUICE_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua`: edit the .lua files.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
";

fn render_cm_patch() -> String {
    let mut actions = format!(
        "discovery.lua: |\n{}definitions:\n",
        indent(&lua_file("actions/discovery.lua"), 2)
    );
    for action in ACTIONS {
        actions += &format!(
            "- name: {action}\n  action.lua: |\n{}",
            indent(&lua_file(&format!("actions/{action}.lua")), 4)
        );
    }
    format!(
        "{CM_HEADER}  resource.customizations.health.sluice.dev_Rollout: |\n{}  resource.customizations.health.sluice.dev_GitSync: |\n{}  resource.customizations.actions.sluice.dev_Rollout: |\n{}",
        indent(&lua_file("health_rollout.lua"), 4),
        indent(&lua_file("health_gitsync.lua"), 4),
        indent(&actions, 4)
    )
}

#[test]
fn the_cm_patch_embeds_exactly_the_lua_files() {
    let path = argocd_dir().join("argocd-cm-patch.yaml");
    if std::env::var_os("SLUICE_UPDATE_ARGOCD_CM").is_some() {
        std::fs::write(&path, render_cm_patch()).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let cm: Value = serde_saphyr::from_str(&text).expect("argocd-cm-patch.yaml is YAML");
    let data = &cm["data"];
    let stale = "argocd-cm-patch.yaml differs from lua/: run SLUICE_UPDATE_ARGOCD_CM=1 cargo test --test argocd_lua";
    assert_eq!(
        data["resource.customizations.health.sluice.dev_Rollout"],
        lua_file("health_rollout.lua"),
        "{stale}"
    );
    assert_eq!(
        data["resource.customizations.health.sluice.dev_GitSync"],
        lua_file("health_gitsync.lua"),
        "{stale}"
    );
    let actions: Value = serde_saphyr::from_str(
        data["resource.customizations.actions.sluice.dev_Rollout"]
            .as_str()
            .expect("actions are a YAML string"),
    )
    .expect("the actions value is YAML");
    assert_eq!(actions["discovery.lua"], lua_file("actions/discovery.lua"), "{stale}");
    let definitions = actions["definitions"].as_array().expect("definitions");
    let names: Vec<&str> = definitions.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ACTIONS);
    for definition in definitions {
        let name = definition["name"].as_str().unwrap();
        assert_eq!(
            definition["action.lua"],
            lua_file(&format!("actions/{name}.lua")),
            "{name}: {stale}"
        );
    }
    assert_eq!(
        data.as_object().unwrap().len(),
        3,
        "only the three customizations are in the patch"
    );
}
