//! Managed routes in force: a fold over the steps reached so far (a setHeaderRoute or setMirrorRoute
//! replaces the route of the same name, an empty `match` removes it), nothing once the rollout has
//! completed or aborted. Needs no status of its own: the step index says everything.
use crate::api::conditions::{INVALID_SPEC, find};
use crate::api::rollout::{CanaryStep, Rollout, RolloutStatus};
use crate::traffic::ManagedRoute;

/// The routes in force after running steps `0..=index` (clamped to the steps there are), ordered
/// as `managed` lists their names (that order is their precedence). Names not in `managed` are
/// skipped (validation reports them).
pub fn routes_at(managed: &[String], steps: &[CanaryStep], index: usize) -> Vec<ManagedRoute> {
    let mut by_name: Vec<Option<ManagedRoute>> = vec![None; managed.len()];
    let reached = steps.len().min(index.saturating_add(1));
    for step in &steps[..reached] {
        let (name, route) = if let Some(header) = &step.set_header_route {
            let route = (!header.matches.is_empty()).then(|| ManagedRoute::Header {
                name: header.name.clone(),
                matches: header.matches.clone(),
            });
            (&header.name, route)
        } else if let Some(mirror) = &step.set_mirror_route {
            let route = (!mirror.matches.is_empty()).then(|| ManagedRoute::Mirror {
                name: mirror.name.clone(),
                percentage: mirror.percentage_or_default().clamp(0, 100),
                matches: mirror.matches.clone(),
            });
            (&mirror.name, route)
        } else {
            continue;
        };
        if let Some(slot) = managed.iter().position(|m| m == name) {
            by_name[slot] = route;
        }
    }
    by_name.into_iter().flatten().collect()
}

/// The routes the router must carry after this reconcile, given the status the plan wrote. None
/// leaves the routing objects alone: no managedRoutes, a blue-green Rollout, or an invalid spec.
/// Empty once the rollout is complete (stable is the current revision) or aborted.
pub fn managed_routes(rollout: &Rollout, status: &RolloutStatus) -> Option<Vec<ManagedRoute>> {
    if rollout.spec.blue_green().is_some() {
        return None;
    }
    let canary = rollout.spec.canary();
    let managed: Vec<String> = canary
        .traffic_routing
        .as_ref()?
        .managed_routes
        .iter()
        .map(|m| m.name.clone())
        .collect();
    if managed.is_empty() || find(&status.conditions, INVALID_SPEC).is_some_and(|c| c.is_true()) {
        return None;
    }
    let complete = status.stable_rs.is_some() && status.stable_rs == status.current_pod_hash;
    if complete || status.is_aborted() {
        return Some(vec![]);
    }
    let index = status.current_step_index_or_default().max(0) as usize;
    if index >= canary.steps.len() {
        return Some(vec![]);
    }
    Some(routes_at(&managed, &canary.steps, index))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::rollout::{
        HeaderRoutingMatch, ManagedRoute as ManagedRouteRef, RouteMatch, SetHeaderRoute, SetMirrorRoute, StringMatch,
        TrafficRouting,
    };

    fn header(name: &str, value: Option<&str>) -> CanaryStep {
        CanaryStep {
            set_header_route: Some(SetHeaderRoute {
                name: name.into(),
                matches: value
                    .map(|v| {
                        vec![HeaderRoutingMatch {
                            header_name: "X-Canary".into(),
                            header_value: StringMatch {
                                exact: Some(v.into()),
                                ..Default::default()
                            },
                        }]
                    })
                    .unwrap_or_default(),
            }),
            ..Default::default()
        }
    }

    fn mirror(name: &str, percentage: i32, on: bool) -> CanaryStep {
        CanaryStep {
            set_mirror_route: Some(SetMirrorRoute {
                name: name.into(),
                percentage: Some(percentage),
                matches: if on {
                    vec![RouteMatch {
                        method: Some(StringMatch {
                            exact: Some("GET".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
            }),
            ..Default::default()
        }
    }

    fn names(routes: &[ManagedRoute]) -> Vec<&str> {
        routes.iter().map(ManagedRoute::name).collect()
    }

    fn rollout(steps: Vec<CanaryStep>) -> Rollout {
        Rollout::example("web", 3, steps)
            .with_services("web-canary", "web-stable")
            .with_traffic_routing(TrafficRouting {
                managed_routes: vec![
                    ManagedRouteRef { name: "mirror".into() },
                    ManagedRouteRef { name: "header".into() },
                ],
                ..Default::default()
            })
    }

    fn status(step: i32, stable: &str, current: &str) -> RolloutStatus {
        RolloutStatus {
            current_step_index: Some(step),
            stable_rs: Some(stable.into()),
            current_pod_hash: Some(current.into()),
            ..Default::default()
        }
    }

    #[test]
    fn same_name_replaces_empty_match_removes_and_managed_order_ranks() {
        let managed = vec!["mirror".to_string(), "header".to_string()];
        let steps = vec![
            CanaryStep::set_weight(0),
            header("header", Some("yes")),
            CanaryStep::pause(),
            mirror("mirror", 50, true),
            header("header", Some("always")),
            header("header", None),
            mirror("unknown", 10, true),
        ];
        assert!(routes_at(&managed, &steps, 0).is_empty());
        assert_eq!(names(&routes_at(&managed, &steps, 2)), ["header"]);
        let at_4 = routes_at(&managed, &steps, 4);
        assert_eq!(names(&at_4), ["mirror", "header"]);
        let ManagedRoute::Header { matches, .. } = &at_4[1] else {
            panic!("a header route")
        };
        assert_eq!(matches[0].header_value.exact.as_deref(), Some("always"));
        assert_eq!(names(&routes_at(&managed, &steps, 5)), ["mirror"]);
        assert_eq!(names(&routes_at(&managed, &steps, usize::MAX)), ["mirror"]);
    }

    #[test]
    fn completion_abort_and_invalid_spec() {
        let rollout = rollout(vec![header("header", Some("yes")), CanaryStep::pause()]);
        assert_eq!(
            names(&managed_routes(&rollout, &status(1, "a", "b")).unwrap()),
            ["header"]
        );
        assert_eq!(managed_routes(&rollout, &status(1, "b", "b")), Some(vec![]));
        assert_eq!(managed_routes(&rollout, &status(2, "a", "b")), Some(vec![]));
        let mut aborted = status(1, "a", "b");
        aborted.abort = Some(true);
        assert_eq!(managed_routes(&rollout, &aborted), Some(vec![]));
        let mut invalid = status(1, "a", "b");
        crate::rollout::status::mark_invalid(&mut invalid, "bad", chrono::Utc::now());
        assert_eq!(managed_routes(&rollout, &invalid), None);
        let unmanaged = Rollout::example("web", 3, vec![]);
        assert_eq!(managed_routes(&unmanaged, &status(0, "a", "b")), None);
    }

    fn step_strategy() -> impl Strategy<Value = CanaryStep> {
        let name = prop_oneof![Just("header"), Just("mirror"), Just("other")];
        prop_oneof![
            (0..=100i32).prop_map(CanaryStep::set_weight),
            Just(CanaryStep::pause()),
            (name.clone(), any::<bool>()).prop_map(|(n, on)| header(n, on.then_some("yes"))),
            (name, 0..=100i32, any::<bool>()).prop_map(|(n, p, on)| mirror(n, p, on)),
        ]
    }

    proptest! {
        /// Completed or aborted: no managed route remains. The set at step i depends only on
        /// steps ≤ i: changing later steps does not change it.
        #[test]
        fn nothing_remains_after_completion_or_abort_and_the_past_decides(
            steps in prop::collection::vec(step_strategy(), 0..12),
            later in prop::collection::vec(step_strategy(), 0..6),
            index in 0usize..20,
            aborted in any::<bool>(),
        ) {
            let rollout = rollout(steps.clone());
            let mut done = status(index as i32, "b", "b");
            prop_assert_eq!(managed_routes(&rollout, &done), Some(vec![]));
            done.stable_rs = Some("a".into());
            done.abort = Some(true);
            prop_assert_eq!(managed_routes(&rollout, &done), Some(vec![]));
            let mut during = status(index as i32, "a", "b");
            during.abort = Some(aborted);
            let in_force = managed_routes(&rollout, &during).unwrap();
            if aborted || index >= steps.len() {
                prop_assert!(in_force.is_empty());
            }
            let managed = vec!["mirror".to_string(), "header".to_string()];
            if index < steps.len() {
                let mut changed = steps[..=index].to_vec();
                changed.extend(later);
                prop_assert_eq!(routes_at(&managed, &steps, index), routes_at(&managed, &changed, index));
            }
        }
    }
}
