//! `--analysis-address-allowlist`: the hosts and networks metric providers may call, so an
//! AnalysisTemplate author cannot make the controller reach arbitrary internal services (SSRF).
//!
//! Entries are host names (`prometheus.monitoring.svc`, case-insensitive), wildcard suffixes
//! (`*.monitoring.svc.cluster.local`, any depth), IP addresses or CIDRs (`10.0.0.0/8`, `fd00::/8`). A URL is
//! allowed when its host is a listed name, or when every address it resolves to (an IP literal: itself)
//! lies in a listed network — every one, so a name cannot smuggle in one bad address among good ones. An
//! empty allowlist allows everything (the flag is opt-in).
//!
//! The check resolves the name once and the HTTP client again; a DNS answer that changes in between is
//! not caught here. Clusters that need that guarantee add a NetworkPolicy on the controller's egress.
use std::net::IpAddr;

use ipnet::IpNet;

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
        if self.is_empty() {
            return Ok(());
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| "the address is not a valid URL".to_string())?;
        let host = parsed.host_str().ok_or("the address has no host")?;
        // IPv6 literals come bracketed: `[fd00::1]`.
        if let Ok(address) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return self.check_addresses(&address.to_string(), &[address]);
        }
        let host = host.to_ascii_lowercase();
        if self.allows_name(&host) {
            return Ok(());
        }
        if self.networks.is_empty() {
            return Err(format!("host {host:?} is not in the analysis address allowlist"));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addresses: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("host {host:?}: cannot resolve it to check the allowlist: {e}"))?
            .map(|socket| socket.ip())
            .collect();
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

    /// The pure half of [`check`](Self::check): every address must lie in a listed network.
    pub fn check_addresses(&self, host: &str, addresses: &[IpAddr]) -> Result<(), String> {
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
            Allowlist::default().check("http://169.254.169.254/").await,
            Ok(()),
            "empty allows all"
        );
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
