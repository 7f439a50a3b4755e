//! Where a client connects, compared by what it reaches rather than how it is written: host
//! names resolved (DNS), every name and address of this machine as one "this host" (loopback,
//! the wildcard addresses, the addresses of its interfaces, its unix sockets), a port.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::path::PathBuf;

/// One machine a host stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Machine {
    /// This machine, however reached.
    ThisHost,
    /// Another machine's address.
    Address(IpAddr),
    /// A name that does not resolve here, lowercase: compared by name.
    Name(String),
}

/// One place a client connects to: a host and port, or a unix socket of this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// How people know it: the host as written (lowercase) and the port, or the socket.
    shown: String,
    machines: BTreeSet<Machine>,
    /// `None`: a socket whose server's port is not known (Redis), so any port of this host.
    port: Option<u16>,
    /// A Redis socket file, to tell two Redis sockets apart.
    socket: Option<PathBuf>,
    resolved: bool,
}

impl Endpoint {
    /// `host` (a name, an IPv4 address, an IPv6 address with or without brackets) and `port`.
    /// Resolves the name: call it off the async threads.
    pub(crate) fn tcp(host: &str, port: u16) -> Endpoint {
        let name = host_name(host);
        let (machines, resolved) = machines(&name);
        let shown = if name.contains(':') {
            format!("[{name}]:{port}")
        } else {
            format!("{name}:{port}")
        };
        Endpoint {
            shown,
            machines,
            port: Some(port),
            socket: None,
            resolved,
        }
    }

    /// A unix socket of this machine. PostgreSQL names a directory and a port (the socket is
    /// `.s.PGSQL.<port>` in it) and counts as the same server as this host's TCP port; Redis
    /// names the socket file, whose server may also listen on any TCP port here.
    pub(crate) fn socket(shown: String, path: PathBuf, port: Option<u16>) -> Endpoint {
        Endpoint {
            shown,
            machines: BTreeSet::from([Machine::ThisHost]),
            port,
            socket: port.is_none().then_some(path),
            resolved: true,
        }
    }

    /// The same endpoint, named otherwise for people.
    pub(crate) fn shown_as(self, shown: String) -> Endpoint {
        Endpoint { shown, ..self }
    }

    /// Whether a client of one may reach the server a client of the other reaches.
    pub(crate) fn overlaps(&self, other: &Endpoint) -> bool {
        if self.machines.is_disjoint(&other.machines) {
            return false;
        }
        match (self.port, other.port) {
            (Some(a), Some(b)) => a == b,
            // Two Redis sockets: one server has one socket.
            (None, None) => self.socket == other.socket,
            _ => true,
        }
    }

    /// The host as written (lowercase) and the port, or the socket.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// What people should know besides the name: ` (this host)`, ` (not resolved)`, or "".
    pub(crate) fn remarks(&self) -> &'static str {
        if self.machines.contains(&Machine::ThisHost) {
            " (this host)"
        } else if !self.resolved {
            " (not resolved)"
        } else {
            ""
        }
    }

    /// The name that did not resolve, if it did not.
    pub(crate) fn unresolved(&self) -> Option<&str> {
        if self.resolved {
            return None;
        }
        self.machines.iter().find_map(|machine| match machine {
            Machine::Name(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

/// `127.0.0.1:5432 (this host)`, `db.internal:5432 (not resolved)`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.shown, self.remarks())
    }
}

/// A host as compared by name: without IPv6 brackets or a zone (`%eth0`), without the root's
/// trailing dot, lowercase.
pub(crate) fn host_name(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let host = match host.split_once('%') {
        Some((address, _zone)) if address.parse::<Ipv6Addr>().is_ok() => address,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// The machines `name` (already [`host_name`]) stands for, and whether it resolved.
fn machines(name: &str) -> (BTreeSet<Machine>, bool) {
    if let Ok(address) = name.parse::<IpAddr>() {
        return (BTreeSet::from([machine(address, &local_addresses())]), true);
    }
    if name == "localhost" || name.ends_with(".localhost") {
        return (BTreeSet::from([Machine::ThisHost]), true);
    }
    // RFC 6761: `.invalid` never resolves; asking would only risk a resolver's timeout.
    let never = name.is_empty() || name == "invalid" || name.ends_with(".invalid");
    if never {
        return (BTreeSet::from([Machine::Name(name.to_string())]), false);
    }
    let local = local_addresses();
    let resolved: BTreeSet<Machine> = match (name, 0).to_socket_addrs() {
        Ok(addresses) => addresses
            .map(|address| machine(address.ip(), &local))
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    if resolved.is_empty() {
        (BTreeSet::from([Machine::Name(name.to_string())]), false)
    } else {
        (resolved, true)
    }
}

/// The address that `text` writes (`127.0.0.1`, `::1`, `[::1]`), without looking up a name.
pub(crate) fn numeric_address(text: &str) -> Option<IpAddr> {
    host_name(text).parse().ok()
}

fn machine(address: IpAddr, local: &BTreeSet<IpAddr>) -> Machine {
    let address = address.to_canonical();
    if address.is_loopback() || address.is_unspecified() || local.contains(&address) {
        Machine::ThisHost
    } else {
        Machine::Address(address)
    }
}

/// The addresses of this machine's interfaces (whatever their state).
fn local_addresses() -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list and stores its head in `list`; on failure it
    // stores nothing and we return before reading it.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed; a
        // non-null `ifa_addr` points to a sockaddr whose family says its real type.
        unsafe {
            let address = (*cursor).ifa_addr;
            if !address.is_null() {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        out.insert(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        out.insert(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cursor = (*cursor).ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once, after the last read.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// An address of one of this machine's interfaces that is not loopback, if it has one (tests
/// reach this host through it).
#[cfg(test)]
pub(crate) fn interface_address() -> Option<IpAddr> {
    local_addresses()
        .into_iter()
        .find(|address| !address.is_loopback() && !address.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        Endpoint::tcp(a, 5432).overlaps(&Endpoint::tcp(b, 5432))
    }

    #[test]
    fn every_name_of_this_host_is_this_host() {
        let mut names = vec![
            "localhost".to_string(),
            "LOCALHOST".into(),
            "localhost.".into(),
            "127.0.0.1".into(),
            "127.0.1.1".into(),
            "::1".into(),
            "[::1]".into(),
            "0.0.0.0".into(),
            "::".into(),
            "::ffff:127.0.0.1".into(),
        ];
        if let Some(address) = interface_address() {
            names.push(address.to_string());
        }
        for name in &names {
            assert!(same(name, "127.0.0.1"), "{name}");
            let endpoint = Endpoint::tcp(name, 5432);
            assert!(endpoint.to_string().ends_with("(this host)"), "{endpoint}");
        }
        assert!(!same("127.0.0.1", "192.0.2.200"));
        assert!(!same("192.0.2.200", "192.0.2.201"));
        assert!(same("192.0.2.200", "192.0.2.200"));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_compared_by_name() {
        let endpoint = Endpoint::tcp("Nothere.INVALID", 6379);
        assert_eq!(endpoint.unresolved(), Some("nothere.invalid"));
        assert_eq!(endpoint.to_string(), "nothere.invalid:6379 (not resolved)");
        assert!(endpoint.overlaps(&Endpoint::tcp("nothere.invalid.", 6379)));
        assert!(!endpoint.overlaps(&Endpoint::tcp("other.invalid", 6379)));
        assert!(!endpoint.overlaps(&Endpoint::tcp("127.0.0.1", 6379)));
        assert_eq!(Endpoint::tcp("localhost", 1).unresolved(), None);
    }

    #[test]
    fn ports_and_sockets() {
        let tcp = Endpoint::tcp("127.0.0.1", 5432);
        assert!(!tcp.overlaps(&Endpoint::tcp("127.0.0.1", 5433)));
        let pg_socket = |port| Endpoint::socket("s".into(), "/run/pg".into(), Some(port));
        assert!(pg_socket(5432).overlaps(&tcp));
        assert!(!pg_socket(5433).overlaps(&tcp));
        let redis_socket = |path: &str| Endpoint::socket("s".into(), path.into(), None);
        assert!(redis_socket("/run/a.sock").overlaps(&Endpoint::tcp("localhost", 6380)));
        assert!(redis_socket("/run/a.sock").overlaps(&redis_socket("/run/a.sock")));
        assert!(!redis_socket("/run/a.sock").overlaps(&redis_socket("/run/b.sock")));
        assert!(!redis_socket("/run/a.sock").overlaps(&Endpoint::tcp("192.0.2.200", 6379)));
    }

    #[test]
    fn numeric_addresses_are_read_without_a_lookup() {
        assert_eq!(numeric_address("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(numeric_address("localhost"), None);
        assert_eq!(numeric_address(""), None);
    }
}
