//! Finding the domain's DCs in DNS: the SRV records every AD DC registers,
//! `_ldap._tcp.dc._msdcs.DOMAIN` (all DCs) and `_ldap._tcp.SITE._sites.dc._msdcs.DOMAIN` (the
//! DCs of one site). The lookup is behind [`SrvResolver`] so the ordering rules are tested
//! without a DNS server; [`SystemResolver`] asks the resolvers the operating system is set up
//! with (`/etc/resolv.conf`, or the Windows network settings).

use std::future::Future;

use super::DirectoryError;
use crate::error::ErrorKind;

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The DC's host name, without the trailing dot.
    pub target: String,
}

/// Why a lookup gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name has no SRV records (NXDOMAIN or an empty answer).
    NotFound,
    /// No DNS server answered, or it answered with an error.
    Failed(String),
}

pub trait SrvResolver {
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<SrvTarget>, LookupError>>;
}

/// What to look up and how to turn the answers into URLs.
#[derive(Debug, Clone)]
pub struct DiscoveryRequest<'a> {
    /// The AD domain's DNS name (`example.com`).
    pub domain: &'a str,
    /// The site this machine is in, when known: its DCs come first.
    pub site: Option<&'a str>,
    /// `ldap://HOST:PORT` with StartTLS instead of `ldaps://HOST` (port 636).
    pub starttls: bool,
    /// This machine's own names (short and fully qualified): when it is a DC, it comes first.
    pub local_names: &'a [String],
}

/// The SRV names to ask, the site's first.
pub fn srv_names(domain: &str, site: Option<&str>) -> Vec<String> {
    let domain = domain.trim_end_matches('.');
    let mut names = Vec::new();
    if let Some(site) = site.filter(|s| !s.is_empty()) {
        names.push(format!("_ldap._tcp.{site}._sites.dc._msdcs.{domain}"));
    }
    names.push(format!("_ldap._tcp.dc._msdcs.{domain}"));
    names
}

/// Orders the DCs: this machine when it is one of them, then the site's DCs, then the rest;
/// within each group by SRV priority (lowest first), then weight (highest first), then name,
/// so that the order is stable from run to run. Each DC once.
pub fn order(site: &[SrvTarget], all: &[SrvTarget], local_names: &[String]) -> Vec<SrvTarget> {
    let sorted = |list: &[SrvTarget]| {
        let mut v = list.to_vec();
        v.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(b.weight.cmp(&a.weight))
                .then(a.target.to_ascii_lowercase().cmp(&b.target.to_ascii_lowercase()))
        });
        v
    };
    let is_local = |t: &SrvTarget| {
        let name = t.target.to_ascii_lowercase();
        let short = name.split('.').next().unwrap_or("");
        local_names.iter().any(|l| {
            let l = l.trim_end_matches('.').to_ascii_lowercase();
            l == name || (!l.contains('.') && l == short)
        })
    };
    let mut out: Vec<SrvTarget> = Vec::new();
    let candidates: Vec<SrvTarget> = sorted(site).into_iter().chain(sorted(all)).collect();
    for t in candidates.iter().filter(|t| is_local(t)).chain(candidates.iter()) {
        if !out.iter().any(|o| o.target.eq_ignore_ascii_case(&t.target)) {
            out.push(t.clone());
        }
    }
    out
}

/// The URL ausi connects to for one DC.
pub fn url_of(t: &SrvTarget, starttls: bool) -> String {
    if starttls { format!("ldap://{}:{}", t.target, t.port) } else { format!("ldaps://{}", t.target) }
}

/// The DCs DNS announces for the domain, as URLs in the order to try them.
pub async fn discover(
    request: &DiscoveryRequest<'_>,
    resolver: &impl SrvResolver,
) -> Result<Vec<String>, DirectoryError> {
    let names = srv_names(request.domain, request.site);
    let general = names.last().cloned().unwrap_or_default();
    let mut site = Vec::new();
    if names.len() == 2 {
        // A site without records (a misspelt site, or one without DCs) is not an error.
        match resolver.srv(&names[0]).await {
            Ok(found) => site = found,
            Err(LookupError::NotFound) => {}
            Err(LookupError::Failed(detail)) => tracing::warn!(name = %names[0], %detail, "site DC lookup failed"),
        }
    }
    let all = match resolver.srv(&general).await {
        Ok(found) => found,
        Err(LookupError::NotFound) if !site.is_empty() => Vec::new(),
        Err(LookupError::NotFound) => {
            return Err(DirectoryError::Discovery {
                name: general,
                detail: "no SRV records: is this the AD domain's DNS name, and does this machine use the domain's DNS servers?".into(),
                kind: ErrorKind::Config,
            });
        }
        Err(LookupError::Failed(detail)) if site.is_empty() => {
            return Err(DirectoryError::Discovery { name: general, detail, kind: ErrorKind::Temporary });
        }
        Err(LookupError::Failed(_)) => Vec::new(),
    };
    let ordered = order(&site, &all, request.local_names);
    Ok(ordered
        .iter()
        .filter(|t| !t.target.is_empty() && t.target != ".")
        .map(|t| url_of(t, request.starttls))
        .collect())
}

/// The operating system's DNS resolvers (hickory-resolver, with the system configuration).
pub struct SystemResolver;

impl SrvResolver for SystemResolver {
    async fn srv(&self, name: &str) -> Result<Vec<SrvTarget>, LookupError> {
        let resolver = hickory_resolver::TokioResolver::builder_tokio()
            .map_err(|e| LookupError::Failed(format!("cannot read the system's DNS configuration: {e}")))?
            .build()
            .map_err(|e| LookupError::Failed(e.to_string()))?;
        srv_lookup(&resolver, name).await
    }
}

/// One DNS server, by address (UDP): the same lookup as [`SystemResolver`], against a server
/// the caller names instead of the system's.
pub struct DnsServer(pub std::net::SocketAddr);

impl SrvResolver for DnsServer {
    async fn srv(&self, name: &str) -> Result<Vec<SrvTarget>, LookupError> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let mut server = NameServerConfig::udp(self.0.ip());
        for connection in &mut server.connections {
            connection.port = self.0.port();
        }
        let config = ResolverConfig::from_name_servers(vec![server]);
        let resolver = hickory_resolver::TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .build()
            .map_err(|e| LookupError::Failed(e.to_string()))?;
        srv_lookup(&resolver, name).await
    }
}

async fn srv_lookup(resolver: &hickory_resolver::TokioResolver, name: &str) -> Result<Vec<SrvTarget>, LookupError> {
    use hickory_resolver::proto::rr::RData;
    // A trailing dot: the name is absolute, no search domains are appended.
    let lookup = match resolver.srv_lookup(format!("{}.", name.trim_end_matches('.'))).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Err(LookupError::NotFound),
        Err(e) => return Err(LookupError::Failed(e.to_string())),
    };
    let found: Vec<SrvTarget> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(SrvTarget {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv.target.to_utf8().trim_end_matches('.').to_owned(),
            }),
            _ => None,
        })
        .collect();
    if found.is_empty() { Err(LookupError::NotFound) } else { Ok(found) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn t(priority: u16, weight: u16, target: &str) -> SrvTarget {
        SrvTarget { priority, weight, port: 389, target: target.to_owned() }
    }

    /// Answers from a table; names not in it are NXDOMAIN; `fail` names a DNS failure.
    struct Table(HashMap<String, Vec<SrvTarget>>, Option<String>);

    impl SrvResolver for Table {
        async fn srv(&self, name: &str) -> Result<Vec<SrvTarget>, LookupError> {
            if self.1.as_deref() == Some(name) {
                return Err(LookupError::Failed("timed out".into()));
            }
            self.0.get(name).cloned().ok_or(LookupError::NotFound)
        }
    }

    fn table(entries: &[(&str, Vec<SrvTarget>)], fail: Option<&str>) -> Table {
        Table(entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(), fail.map(str::to_owned))
    }

    fn request<'a>(site: Option<&'a str>, local: &'a [String]) -> DiscoveryRequest<'a> {
        DiscoveryRequest { domain: "example.com", site, starttls: false, local_names: local }
    }

    /// A DNS server on loopback (a std UDP socket) that answers SRV queries for `name` with
    /// `targets` and NXDOMAIN for anything else: the real resolver's packets, end to end.
    fn dns_server(name: &'static str, targets: Vec<SrvTarget>) -> std::net::SocketAddr {
        use hickory_resolver::proto::op::{Message, ResponseCode};
        use hickory_resolver::proto::rr::rdata::SRV;
        use hickory_resolver::proto::rr::{Name, RData, Record};
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.metadata.recursion_desired = query.metadata.recursion_desired;
                answer.metadata.recursion_available = true;
                let asked = query.queries.first().cloned();
                if let Some(q) = &asked {
                    answer.add_query(q.clone());
                }
                let known = asked.as_ref().is_some_and(|q| q.name().to_utf8().trim_end_matches('.') == name);
                if known {
                    for t in &targets {
                        let srv =
                            SRV::new(t.priority, t.weight, t.port, Name::from_utf8(format!("{}.", t.target)).unwrap());
                        answer.add_answer(Record::from_rdata(
                            Name::from_utf8(format!("{name}.")).unwrap(),
                            60,
                            RData::SRV(srv),
                        ));
                    }
                } else {
                    answer.metadata.response_code = ResponseCode::NXDomain;
                }
                let _ = socket.send_to(&answer.to_vec().unwrap(), from);
            }
        });
        addr
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_real_resolver_reads_srv_answers_from_a_dns_server() {
        let general = "_ldap._tcp.dc._msdcs.example.com";
        let addr = dns_server(general, vec![t(0, 100, "dc1.example.com"), t(5, 100, "dc2.example.com")]);
        let resolver = DnsServer(addr);
        let mut found = resolver.srv(general).await.unwrap();
        found.sort_by(|a, b| a.target.cmp(&b.target));
        assert_eq!(found, [t(0, 100, "dc1.example.com"), t(5, 100, "dc2.example.com")]);
        assert_eq!(resolver.srv("_ldap._tcp.Lyon._sites.dc._msdcs.example.com").await, Err(LookupError::NotFound));
        let urls = discover(&request(Some("Lyon"), &[]), &resolver).await.unwrap();
        assert_eq!(urls, ["ldaps://dc1.example.com", "ldaps://dc2.example.com"]);
    }

    #[test]
    fn names_follow_ads_srv_layout() {
        assert_eq!(srv_names("example.com.", None), vec!["_ldap._tcp.dc._msdcs.example.com"]);
        assert_eq!(
            srv_names("example.com", Some("Paris")),
            vec!["_ldap._tcp.Paris._sites.dc._msdcs.example.com", "_ldap._tcp.dc._msdcs.example.com"]
        );
    }

    #[test]
    fn order_is_local_then_site_then_priority_and_weight() {
        let all = vec![
            t(0, 100, "dc3.example.com"),
            t(0, 100, "dc1.example.com"),
            t(10, 100, "dc0.example.com"),
            t(0, 200, "dc2.example.com"),
        ];
        let names = |v: Vec<SrvTarget>| v.into_iter().map(|t| t.target).collect::<Vec<_>>();
        // Priority first, then weight (highest first), then name.
        assert_eq!(
            names(order(&[], &all, &[])),
            ["dc2.example.com", "dc1.example.com", "dc3.example.com", "dc0.example.com"]
        );
        // The site's DCs before the rest, each DC once.
        let site = vec![t(0, 100, "dc3.example.com")];
        assert_eq!(
            names(order(&site, &all, &[])),
            ["dc3.example.com", "dc2.example.com", "dc1.example.com", "dc0.example.com"]
        );
        // Running on a DC: that DC first (by its FQDN or its short name).
        for local in [vec!["DC0.example.com".to_owned()], vec!["dc0".to_owned()]] {
            assert_eq!(names(order(&site, &all, &local))[0], "dc0.example.com");
        }
        // A short name does not match another domain's FQDN.
        assert_eq!(names(order(&[], &all, &["dc0.other.org".to_owned()]))[0], "dc2.example.com");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn discovery_gives_urls_and_translates_failures() {
        let general = "_ldap._tcp.dc._msdcs.example.com";
        let site = "_ldap._tcp.Lyon._sites.dc._msdcs.example.com";
        let r = table(
            &[
                (general, vec![t(0, 100, "dc1.example.com"), t(0, 100, "dc2.example.com")]),
                (site, vec![t(0, 100, "dc2.example.com")]),
            ],
            None,
        );
        assert_eq!(
            discover(&request(Some("Lyon"), &[]), &r).await.unwrap(),
            ["ldaps://dc2.example.com", "ldaps://dc1.example.com"]
        );
        // A site without DCs is no error.
        assert_eq!(discover(&request(Some("Nowhere"), &[]), &r).await.unwrap().len(), 2);
        // StartTLS: ldap:// on the SRV port.
        let tls = DiscoveryRequest { starttls: true, ..request(None, &[]) };
        assert_eq!(discover(&tls, &r).await.unwrap()[0], "ldap://dc1.example.com:389");
        // No records: a configuration error (78); DNS not answering: temporary (75).
        let none = table(&[], None);
        let e = discover(&request(None, &[]), &none).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains(general), "{e}");
        let down = table(&[], Some(general));
        assert_eq!(discover(&request(None, &[]), &down).await.unwrap_err().kind(), ErrorKind::Temporary);
        // The site answered but the domain-wide name failed: the site's DCs are enough.
        let partial = table(&[(site, vec![t(0, 0, "dc9.example.com")])], Some(general));
        assert_eq!(discover(&request(Some("Lyon"), &[]), &partial).await.unwrap(), ["ldaps://dc9.example.com"]);
    }
}
