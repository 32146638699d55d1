//! `--analysis-address-allowlist`: the hosts and networks metric providers may call, so an
//! AnalysisTemplate author cannot make the controller reach arbitrary internal services (SSRF).
//!
//! Entries are host names (`prometheus.monitoring.svc`, case-insensitive), wildcard suffixes
//! (`*.monitoring.svc.cluster.local`, any depth), IP addresses or CIDRs (`10.0.0.0/8`, `fd00::/8`). A URL is
//! allowed when its host is a listed name, or when every address it resolves to (an IP literal: itself)
//! lies in a listed network — every one, so a name cannot smuggle in one bad address among good ones. An
//! empty allowlist allows every other address (deploy/ sets one the operator edits).
//!
//! Whatever the allowlist, link-local addresses (169.254.0.0/16, fe80::/10 — where cloud metadata services
//! answer, and their credentials with them), AWS's IPv6 metadata address fd00:ec2::254 and the name
//! `metadata.google.internal` are refused unless an entry names them explicitly (a network containing the
//! address, or the host name itself).
//!
//! The check resolves the name once and the HTTP client again; a DNS answer that changes in between is
//! not caught here. Clusters that need that guarantee add a NetworkPolicy on the controller's egress.
use std::net::IpAddr;

use ipnet::IpNet;

/// Networks refused unless listed (see the module comment).
const METADATA_NETWORKS: [&str; 3] = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];
/// Host names refused unless listed.
const METADATA_HOSTS: [&str; 1] = ["metadata.google.internal"];

/// Whether `address` is one of the metadata/link-local addresses refused unless listed.
fn is_metadata_address(address: &IpAddr) -> bool {
    let address = address.to_canonical();
    METADATA_NETWORKS
        .iter()
        .filter_map(|network| network.parse::<IpNet>().ok())
        .any(|network| network.contains(&address))
}

/// A parsed allowlist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allowlist {
    hosts: Vec<String>,
    suffixes: Vec<String>,
    networks: Vec<IpNet>,
}

impl Allowlist {
    /// Parses the flag's entries (empty strings are skipped; a comma-separated entry is split, so
    /// `--analysis-address-allowlist=a,b` works however the flag is declared).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut allowlist = Allowlist::default();
        for entry in entries
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if let Ok(network) = entry.parse::<IpNet>() {
                allowlist.networks.push(network.trunc());
            } else if let Ok(address) = entry.parse::<IpAddr>() {
                allowlist.networks.push(IpNet::from(address.to_canonical()));
            } else if let Some(suffix) = entry.strip_prefix("*.") {
                check_host_name(suffix).map_err(|why| format!("allowlist entry {entry:?}: {why}"))?;
                allowlist.suffixes.push(format!(".{}", suffix.to_ascii_lowercase()));
            } else {
                check_host_name(entry).map_err(|why| format!("allowlist entry {entry:?}: {why}"))?;
                allowlist.hosts.push(entry.to_ascii_lowercase());
            }
        }
        Ok(allowlist)
    }

    /// Whether the allowlist allows everything.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.suffixes.is_empty() && self.networks.is_empty()
    }

    /// Checks `url`: a listed host name passes at once; otherwise the host is resolved (an IP literal
    /// is taken as it is) and every address must lie in a listed network.
    pub async fn check(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "the address is not a valid URL".to_string())?;
        let host = parsed.host_str().ok_or("the address has no host")?;
        // IPv6 literals come bracketed: `[fd00::1]`.
        if let Ok(address) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return self.check_addresses(&address.to_string(), &[address]);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.allows_name(&host) {
            return Ok(());
        }
        if METADATA_HOSTS.contains(&host.as_str()) {
            return Err(format!(
                "host {host:?} is a cloud metadata service; list it in --analysis-address-allowlist to allow it"
            ));
        }
        if !self.is_empty() && self.networks.is_empty() {
            return Err(format!("host {host:?} is not in the analysis address allowlist"));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addresses: Vec<IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(found) => found.map(|socket| socket.ip()).collect(),
            // With no list, only the metadata addresses are refused: a name that does not resolve is the
            // HTTP client's error to report, as it would be without this check.
            Err(_) if self.is_empty() => return Ok(()),
            Err(e) => return Err(format!("host {host:?}: cannot resolve it to check the allowlist: {e}")),
        };
        if addresses.is_empty() && self.is_empty() {
            return Ok(());
        }
        if addresses.is_empty() {
            return Err(format!("host {host:?}: resolves to no address"));
        }
        self.check_addresses(&host, &addresses)
    }

    /// Whether a (lower-case) host name is listed, exactly or by a wildcard suffix.
    pub fn allows_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|h| h == host) || self.suffixes.iter().any(|suffix| host.ends_with(suffix.as_str()))
    }

    /// The pure half of [`check`](Self::check): no address may be a metadata/link-local one the list
    /// does not name, and with a non-empty list every address must lie in a listed network.
    pub fn check_addresses(&self, host: &str, addresses: &[IpAddr]) -> Result<(), String> {
        let listed = |address: &IpAddr| self.networks.iter().any(|network| network.contains(address));
        if let Some(address) = addresses
            .iter()
            .map(|address| address.to_canonical())
            .find(|address| is_metadata_address(address) && !listed(address))
        {
            let named = if address.to_string() == host {
                format!("address {address}")
            } else {
                format!("host {host:?} resolves to {address}, which")
            };
            return Err(format!(
                "{named} is link-local (where cloud metadata services answer); list it in \
                 --analysis-address-allowlist to allow it"
            ));
        }
        if self.is_empty() {
            return Ok(());
        }
        match addresses
            .iter()
            .map(|address| address.to_canonical())
            .find(|address| !self.networks.iter().any(|network| network.contains(address)))
        {
            Some(address) if address.to_string() == host => {
                Err(format!("address {address} is not in the analysis address allowlist"))
            }
            Some(address) => Err(format!(
                "host {host:?} resolves to {address}, which is not in the analysis address allowlist"
            )),
            None => Ok(()),
        }
    }
}

fn check_host_name(name: &str) -> Result<(), &'static str> {
    let valid = !name.is_empty()
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    if valid {
        Ok(())
    } else {
        Err("expected a host name, *.suffix, an IP address or a CIDR (no scheme, port or path)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowlist(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_unless_listed() {
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        let aws_v6: IpAddr = "fd00:ec2::254".parse().unwrap();
        let link_local_v6: IpAddr = "fe80::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:169.254.1.1".parse().unwrap();
        for list in [
            allowlist(&[]),
            allowlist(&["10.0.0.0/8"]),
            allowlist(&["prometheus.monitoring"]),
        ] {
            for address in [metadata, aws_v6, link_local_v6, mapped] {
                let error = list.check_addresses(&address.to_string(), &[address]).unwrap_err();
                assert!(error.contains("link-local"), "{error}");
            }
            let error = list.check_addresses("evil.example", &[metadata]).unwrap_err();
            assert!(
                error.contains(r#"host "evil.example" resolves to 169.254.169.254"#),
                "{error}"
            );
        }
        let listed = allowlist(&["169.254.169.254", "fd00:ec2::/32"]);
        assert_eq!(listed.check_addresses("169.254.169.254", &[metadata]), Ok(()));
        assert_eq!(listed.check_addresses("fd00:ec2::254", &[aws_v6]), Ok(()));
        assert!(
            listed
                .check_addresses("169.254.0.1", &["169.254.0.1".parse().unwrap()])
                .is_err()
        );
        // Loopback is an ordinary address: allowed with no list, refused by a list that does not name it.
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(allowlist(&[]).check_addresses("127.0.0.1", &[loopback]), Ok(()));
        assert!(
            allowlist(&["10.0.0.0/8"])
                .check_addresses("127.0.0.1", &[loopback])
                .is_err()
        );
    }

    #[tokio::test]
    async fn metadata_host_names_are_refused_without_resolving_them() {
        let error = allowlist(&[])
            .check("http://metadata.google.internal/computeMetadata/v1/")
            .await
            .unwrap_err();
        assert!(error.contains("cloud metadata service"), "{error}");
        let error = allowlist(&[])
            .check("http://METADATA.google.internal./x")
            .await
            .unwrap_err();
        assert!(error.contains("cloud metadata service"), "{error}");
        assert_eq!(
            allowlist(&["metadata.google.internal"])
                .check("http://metadata.google.internal/")
                .await,
            Ok(())
        );
        let error = allowlist(&[])
            .check("http://169.254.169.254/latest/meta-data/")
            .await
            .unwrap_err();
        assert!(error.contains("link-local"), "{error}");
        assert_eq!(allowlist(&[]).check("http://127.0.0.1:9090/").await, Ok(()));
    }

    #[test]
    fn parse_rejects_what_is_not_a_host_or_network() {
        for bad in [
            "http://prometheus",
            "prometheus:9090",
            "10.0.0.0/33",
            "a..b",
            "prom/metrics",
            "*.",
        ] {
            let error = Allowlist::parse(&[bad.to_string()]).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
        let parsed = allowlist(&[
            "Prometheus.Monitoring",
            "10.1.2.3/8, fd00::/8",
            "",
            "192.168.0.7",
            "*.svc.cluster.local",
        ]);
        assert_eq!(parsed.hosts, vec!["prometheus.monitoring"]);
        assert_eq!(parsed.suffixes, vec![".svc.cluster.local"]);
        let networks: Vec<String> = parsed.networks.iter().map(ToString::to_string).collect();
        assert_eq!(networks, vec!["10.0.0.0/8", "fd00::/8", "192.168.0.7/32"]);
        assert!(Allowlist::parse(&[]).unwrap().is_empty());
    }

    #[tokio::test]
    async fn check_table() {
        let list = allowlist(&[
            "prometheus.monitoring",
            "*.svc.cluster.local",
            "10.0.0.0/8",
            "fd00::/8",
            "127.0.0.1",
        ]);
        let cases = [
            ("http://prometheus.monitoring:9090", Ok(())),
            ("http://PROMETHEUS.monitoring./api", Ok(())),
            ("http://thanos.monitoring.svc.cluster.local:9090", Ok(())),
            // Not matched by the wildcard (needs a label before it), so it is resolved — and fails here.
            ("http://svc.cluster.local", Err("host \"svc.cluster.local\"")),
            ("http://10.20.30.40:9090", Ok(())),
            ("http://11.0.0.1:9090", Err("address 11.0.0.1 is not")),
            ("http://[fd00::1]:9090", Ok(())),
            ("http://[::ffff:10.0.0.1]/", Ok(())),
            ("http://[fe80::1]:9090", Err("fe80::1")),
            ("http://127.0.0.1:1/", Ok(())),
            ("http://169.254.169.254/latest/meta-data", Err("169.254.169.254")),
            ("not a url", Err("not a valid URL")),
        ];
        for (url, expected) in cases {
            match (list.check(url).await, expected) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(expected)) => assert!(error.contains(expected), "{url}: {error}"),
                (got, expected) => panic!("{url}: got {got:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            Allowlist::default().check("http://10.20.30.40/").await,
            Ok(()),
            "empty allows every address but the metadata ones"
        );
        let error = Allowlist::default().check("http://169.254.169.254/").await.unwrap_err();
        assert!(error.contains("link-local"), "{error}");
    }

    #[tokio::test]
    async fn names_are_resolved_and_every_address_checked() {
        // localhost may resolve to 127.0.0.1 and ::1: both must be allowed.
        let loopback = allowlist(&["127.0.0.0/8", "::1"]);
        assert_eq!(loopback.check("http://localhost:9090").await, Ok(()));
        let error = allowlist(&["10.0.0.0/8"])
            .check("http://localhost:9090")
            .await
            .unwrap_err();
        assert!(error.contains("\"localhost\" resolves to"), "{error}");
        let error = allowlist(&["prometheus"]).check("http://localhost").await.unwrap_err();
        assert!(error.contains("not in the analysis address allowlist"), "{error}");
        let mixed = allowlist(&["127.0.0.0/8"]);
        let addresses = ["127.0.0.1".parse().unwrap(), "8.8.8.8".parse().unwrap()];
        assert!(
            mixed
                .check_addresses("two-faced", &addresses)
                .unwrap_err()
                .contains("8.8.8.8")
        );
    }
}
