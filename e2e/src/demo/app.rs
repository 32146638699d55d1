//! The demo's application as it lives in Git: a Service the simulator sends traffic to and a Rollout
//! whose canary waits for the platform's `sim-success-rate` analysis at 20%. Each release is one commit.
use crate::kit::local_repo::LocalRepo;

/// Directory of the repository the GitSync applies.
pub const APP_PATH: &str = "app";
const ROLLOUT_FILE: &str = "app/rollout.yaml";

/// One release of the app: a commit changing the Rollout's image (and how often it fails).
pub struct Release {
    pub version: u32,
    /// Share of requests the simulator answers with a 500 for this version's pods.
    pub error_rate: &'static str,
    pub note: &'static str,
}

pub const V1: Release = Release {
    version: 1,
    error_rate: "0",
    note: "first release",
};
pub const V2: Release = Release {
    version: 2,
    error_rate: "0",
    note: "healthy",
};
pub const V3: Release = Release {
    version: 3,
    error_rate: "0.4",
    note: "answers 40% of requests with 500",
};

impl Release {
    pub fn image(&self) -> String {
        format!("shop/web:{}", self.version)
    }

    /// The commit subject, which the timeline shows next to the SHA.
    pub fn subject(&self) -> String {
        format!("web v{}: {}, {}", self.version, self.image(), self.note)
    }
}

/// The files that do not change between releases: the Service and a README on how to ship v4.
pub fn write_base(repo: &LocalRepo) -> anyhow::Result<()> {
    repo.write("app/service.yaml", SERVICE)?;
    repo.write("README.md", README)
}

/// Writes `release` into the Rollout and commits it to main; returns the commit SHA.
pub fn commit(repo: &LocalRepo, release: &Release) -> anyhow::Result<String> {
    repo.write(ROLLOUT_FILE, &rollout(release))?;
    repo.commit(&release.subject())
}

/// The shell commands that ship v4 from the work clone (printed by `sluice demo --keep`); they
/// edit the Rollout as `rollout()` writes it.
pub fn ship_v4_commands() -> String {
    format!(
        "sed -i -e 's|{}|shop/web:4|' -e 's|error-rate: \"{}\"|error-rate: \"0\"|' {ROLLOUT_FILE}\n  \
         git commit -qam 'web v4: shop/web:4, the fix' && git push -q origin main",
        V3.image(),
        V3.error_rate
    )
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    sim.sluice.dev/rps: "50"   # the simulator sends this many requests per second to the pods behind it
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#;

const README: &str = "# shop/web\n\nThe GitSync `web` applies `app/` to the `default` namespace every 2 s. \
Commit a change to `app/rollout.yaml` on main (image, or `sim.sluice.dev/error-rate` to make the \
simulated pods fail) and watch Sluice canary it: `sluice get rollout web --watch`.\n";

fn rollout(release: &Release) -> String {
    format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 5
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        sim.sluice.dev/error-rate: "{error_rate}"   # share of requests the simulated pods fail
    spec:
      containers:
      - name: web
        image: {image}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis:
          templates: [{{templateName: sim-success-rate, clusterScope: true}}]
          args: [{{name: service, value: web}}]
      - setWeight: 50
      - pause: {{duration: 5s}}
      - setWeight: 100
"#,
        error_rate = release.error_rate,
        image = release.image(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::api::rollout::Rollout;

    #[test]
    fn every_release_is_a_valid_rollout() {
        for release in [V1, V2, V3] {
            let rollout: Rollout = serde_saphyr::from_str(&rollout(&release)).unwrap();
            let containers = rollout.spec.template.spec().spec.unwrap().containers;
            assert_eq!(containers[0].image.as_deref(), Some(release.image().as_str()));
            assert_eq!(rollout.spec.canary().steps.len(), 5);
        }
    }

    #[test]
    fn the_v4_commands_edit_what_v3_wrote() {
        let v3 = rollout(&V3);
        let commands = ship_v4_commands();
        assert!(v3.contains(&V3.image()) && commands.contains(&V3.image()));
        let error_rate = format!("error-rate: \"{}\"", V3.error_rate);
        assert!(v3.contains(&error_rate) && commands.contains(&error_rate));
    }
}
