//! `sluice get gitsync [NAME]` and `sluice get pipeline`: read GitSyncs (and the upstreams they
//! follow in other namespaces), render with `gitsync_view`.
use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::gitsync_view::{self, Key};
use super::output::{Rendering, print_object, print_objects};
use super::{Error, OutputFormat, Result, Target};
use crate::api::gitsync::GitSync;

/// How many GitSyncs outside the listed ones are read to complete chains (upstreams in other
/// namespaces): each is one GET, and a hostile chain must not turn one command into thousands.
const MAX_EXTRA_READS: usize = 64;

/// Lists GitSyncs in the target namespace, or everywhere.
async fn list_gitsyncs(target: &Target, all_namespaces: bool) -> Result<Vec<GitSync>> {
    let (api, where_) = if all_namespaces {
        (Api::<GitSync>::all(target.client.clone()), "any namespace".to_string())
    } else {
        (target.api::<GitSync>(), format!("namespace \"{}\"", target.namespace))
    };
    let mut gitsyncs = match target
        .call(
            format!("listing gitsyncs in {where_}"),
            api.list(&ListParams::default()),
        )
        .await
    {
        Err(Error::Api { code: Some(404), .. }) => {
            return Err(Error::Config(
                "the GitSync CRD (gitsyncs.sluice.dev) is not installed in this cluster; install it with \
                 `sluice crds | kubectl apply --server-side -f -`"
                    .into(),
            ));
        }
        other => other?.items,
    };
    gitsyncs.sort_by_key(|g| (g.namespace(), g.name_any()));
    Ok(gitsyncs)
}

/// Reads, one GET each, the upstreams (and dependencies) the GitSyncs name that are not among them,
/// following their own upstreams in turn, up to [`MAX_EXTRA_READS`]. One that cannot be read (gone,
/// or RBAC) is left out: the views call it missing.
async fn complete_chains(target: &Target, gitsyncs: &mut Vec<GitSync>) {
    let mut tried: BTreeSet<Key> = gitsyncs
        .iter()
        .map(|g| (g.namespace().unwrap_or_default(), g.name_any()))
        .collect();
    let mut reads = 0;
    let mut next = 0;
    while next < gitsyncs.len() && reads < MAX_EXTRA_READS {
        let namespace = gitsyncs[next].namespace().unwrap_or_default();
        let wanted: Vec<Key> = gitsyncs[next]
            .spec
            .referenced_gitsyncs(&namespace)
            .map(|(ns, name)| (ns.to_string(), name.to_string()))
            .filter(|key| !tried.contains(key))
            .collect();
        next += 1;
        for (ns, name) in wanted {
            if reads >= MAX_EXTRA_READS {
                break;
            }
            reads += 1;
            tried.insert((ns.clone(), name.clone()));
            let api: Api<GitSync> = Api::namespaced(target.client.clone(), &ns);
            if let Ok(Some(found)) = target
                .call(format!("reading gitsync {ns}/{name}"), api.get_opt(&name))
                .await
            {
                gitsyncs.push(found);
            }
        }
    }
}

/// `sluice get gitsync NAME [-o json|yaml|wide|name]`.
pub async fn show(target: &Target, name: &str, output: Option<OutputFormat>) -> Result<()> {
    let what = format!("reading gitsync \"{name}\" in namespace \"{}\"", target.namespace);
    let gitsync = match target.call(what, target.api::<GitSync>().get_opt(name)).await? {
        Some(gitsync) => gitsync,
        None => {
            return Err(Error::Invalid(format!(
                "gitsync \"{name}\" not found in namespace \"{}\"",
                target.namespace
            )));
        }
    };
    if let Rendering::Objects(format) = Rendering::of(output) {
        return print_object(&gitsync, format);
    }
    // Its namespace's GitSyncs (who follows it is usually there), then its chain elsewhere.
    let mut related = list_gitsyncs(target, false).await.unwrap_or_default();
    if !related.iter().any(|g| g.name_any() == name) {
        related.push(gitsync.clone());
    }
    complete_chains(target, &mut related).await;
    print!("{}", gitsync_view::render(&gitsync, &related, chrono::Utc::now()));
    Ok(())
}

/// `sluice get gitsyncs [-A] [-o json|yaml|wide|name]`.
pub async fn list(target: &Target, all_namespaces: bool, output: Option<OutputFormat>) -> Result<()> {
    let gitsyncs = list_gitsyncs(target, all_namespaces).await?;
    let wide = match Rendering::of(output) {
        Rendering::Objects(format) => return print_objects(&gitsyncs, format),
        Rendering::Human { wide } => wide,
    };
    if gitsyncs.is_empty() {
        let where_ = if all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace \"{}\"", target.namespace)
        };
        println!("No gitsyncs found in {where_}.");
        return Ok(());
    }
    print!(
        "{}",
        gitsync_view::render_list(&gitsyncs, all_namespaces, wide, chrono::Utc::now())
    );
    Ok(())
}

/// `sluice get pipeline [-A]`: every chain of stages as dev → staging → prod with the revision at each.
pub async fn pipeline(target: &Target, all_namespaces: bool) -> Result<()> {
    let mut gitsyncs = list_gitsyncs(target, all_namespaces).await?;
    complete_chains(target, &mut gitsyncs).await;
    let namespace = (!all_namespaces).then_some(target.namespace.as_str());
    print!(
        "{}",
        gitsync_view::render_pipelines(&gitsyncs, namespace, chrono::Utc::now())
    );
    Ok(())
}
