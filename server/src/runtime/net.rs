//! Reaching an instance wherever it listens: on the host, or inside a network namespace a
//! runtime made for its environment (named by the path of the namespace's bind mount).
//!
//! A socket belongs to the network namespace it was created in and stays there, whatever
//! thread uses it later. So sockets for a namespace are made by one dedicated thread that
//! enters namespaces and does nothing else; every other thread of the platform stays in the
//! host's namespace. The proxy, health checks and private-port forwarders all go through here.

use app::infra::live::Endpoint;
use socket2::{Domain, Socket, Type};
use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{mpsc, Mutex, OnceLock},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

struct Job {
    network: String,
    listen_on: Option<SocketAddr>,
    reply: oneshot::Sender<io::Result<Socket>>,
}

fn factory() -> &'static Mutex<mpsc::Sender<Job>> {
    static TX: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("rh-netns".into())
            .spawn(move || {
                for job in rx {
                    let _ = job.reply.send(socket_in(&job.network, job.listen_on));
                }
            })
            .expect("spawning the network namespace thread");
        Mutex::new(tx)
    })
}

/// On the factory thread only: enter the namespace, make the socket.
fn socket_in(network: &str, listen_on: Option<SocketAddr>) -> io::Result<Socket> {
    let ns = std::fs::File::open(network)?;
    // SAFETY: setns on an open namespace descriptor; this thread runs nothing else.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let domain = match listen_on {
        Some(SocketAddr::V6(_)) => Domain::IPV6,
        _ => Domain::IPV4,
    };
    let socket = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)?;
    if let Some(addr) = listen_on {
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
    }
    Ok(socket)
}

async fn make(network: &str, listen_on: Option<SocketAddr>) -> io::Result<Socket> {
    let (reply, rx) = oneshot::channel();
    let job = Job { network: network.to_string(), listen_on, reply };
    factory()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| io::Error::other("the network namespace thread is gone"))?;
    rx.await.map_err(|_| io::Error::other("the network namespace thread dropped a request"))?
}

/// A TCP connection to an endpoint.
pub async fn connect(ep: &Endpoint) -> io::Result<TcpStream> {
    match &ep.network {
        None => TcpStream::connect(ep.addr).await,
        Some(network) => {
            let socket = make(network, None).await?;
            let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
            socket.connect(ep.addr).await
        }
    }
}

/// The loopback address a service's bare name resolves to inside its environment's network:
/// `127.1.x.y` from its private port (unique on the platform), so every service has its own
/// address and `db:5432` and `api:80` never collide. All of 127/8 is the network's loopback.
pub fn private_ip(private_port: u16) -> std::net::Ipv4Addr {
    let [hi, lo] = private_port.to_be_bytes();
    std::net::Ipv4Addr::new(127, 1, hi, lo)
}

/// The `/etc/hosts` of a sandbox in an environment: localhost, and each service of the
/// environment by its name (and its name in lower case with `-` for `_`, the form a DNS name
/// takes) at its private address.
pub fn hosts_file(peers: &[super::Peer]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for p in peers {
        let dns = p.name.to_lowercase().replace('_', "-");
        // The DNS form is an alias only when no other service is called that (`my-api` beside
        // `my_api`): a name always means one service.
        let taken = peers.iter().any(|o| o.private_port != p.private_port && o.name.eq_ignore_ascii_case(&dns));
        let names = if dns == p.name || taken { p.name.clone() } else { format!("{} {dns}", p.name) };
        out.push_str(&format!("{}\t{names}\n", private_ip(p.private_port)));
    }
    out
}

/// A listener on `addr` in `network` (the host's when `None`).
pub async fn listen(network: Option<&str>, addr: SocketAddr) -> io::Result<TcpListener> {
    match network {
        None => TcpListener::bind(addr).await,
        Some(network) => TcpListener::from_std(make(network, Some(addr)).await?.into()),
    }
}

/// A port nothing listens on in `network` right now (on loopback).
pub async fn free_port(network: Option<&str>) -> io::Result<u16> {
    let l = listen(network, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    Ok(l.local_addr()?.port())
}

/// The `host:port` an HTTP client is given for an endpoint: the address itself on the host's
/// network, otherwise a name that stands for (network, address) in this process
/// (`e<n>.roundhouse.invalid`, a name that can never resolve), which `NetConnector` maps back.
pub fn authority(ep: &Endpoint) -> String {
    match &ep.network {
        None => ep.addr.to_string(),
        Some(network) => {
            static NAMES: OnceLock<Mutex<HashMap<(String, std::net::IpAddr), usize>>> = OnceLock::new();
            let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
            let n = names.len();
            let id = *names.entry((network.clone(), ep.addr.ip())).or_insert(n);
            by_name().lock().unwrap_or_else(|e| e.into_inner()).entry(id).or_insert_with(|| (network.clone(), ep.addr.ip()));
            format!("e{id}.roundhouse.invalid:{}", ep.addr.port())
        }
    }
}

fn by_name() -> &'static Mutex<HashMap<usize, (String, std::net::IpAddr)>> {
    static BY: OnceLock<Mutex<HashMap<usize, (String, std::net::IpAddr)>>> = OnceLock::new();
    BY.get_or_init(Default::default)
}

/// The endpoint an authority made by `authority` stands for.
pub fn endpoint_of(host: &str, port: u16) -> Option<Endpoint> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Some(Endpoint { network: None, addr: SocketAddr::new(ip, port) });
    }
    let id: usize = host.strip_suffix(".roundhouse.invalid")?.strip_prefix('e')?.parse().ok()?;
    let (network, ip) = by_name().lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()?;
    Some(Endpoint { network: Some(network), addr: SocketAddr::new(ip, port) })
}

/// A connector for hyper's pooled client that dials endpoints by their `authority`.
#[derive(Clone, Default)]
pub struct NetConnector;

impl tower::Service<http::Uri> for NetConnector {
    type Response = hyper_util::rt::TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let port = uri.port_u16().unwrap_or(80);
            let ep = endpoint_of(host, port).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown endpoint"))?;
            let stream = connect(&ep).await?;
            let _ = stream.set_nodelay(true);
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_map_back_to_their_endpoints() {
        let host = Endpoint { network: None, addr: "127.0.0.1:8080".parse().unwrap() };
        assert_eq!(authority(&host), "127.0.0.1:8080");
        let inside = Endpoint { network: Some("/run/roundhouse/x/netns/env1".into()), addr: "127.0.0.1:40001".parse().unwrap() };
        let a = authority(&inside);
        let (h, p) = a.rsplit_once(':').unwrap();
        assert!(h.ends_with(".roundhouse.invalid"), "{a}");
        assert_eq!(endpoint_of(h, p.parse().unwrap()), Some(inside.clone()));
        // The same network gets the same name; another gets another.
        assert_eq!(authority(&inside), a);
        let other = Endpoint { network: Some("/run/roundhouse/x/netns/env2".into()), addr: "127.0.0.1:40001".parse().unwrap() };
        assert_ne!(authority(&other), a);
        assert_eq!(endpoint_of("e999999.roundhouse.invalid", 1), None);
    }

    #[test]
    fn every_private_port_has_its_own_address_and_names_resolve_to_it() {
        assert_eq!(private_ip(20000).to_string(), "127.1.78.32");
        assert_eq!(private_ip(29999).to_string(), "127.1.117.47");
        let all: std::collections::HashSet<_> = (1024..=65535).map(private_ip).collect();
        assert_eq!(all.len(), 65535 - 1024 + 1, "no two ports share an address");
        let peers = [
            super::super::Peer { name: "db".into(), private_port: 20000 },
            super::super::Peer { name: "My_Api".into(), private_port: 20001 },
        ];
        let hosts = hosts_file(&peers);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.contains("127.1.78.32\tdb\n"), "{hosts}");
        assert!(hosts.contains("127.1.78.33\tMy_Api my-api\n"), "{hosts}");
        let clash = [
            super::super::Peer { name: "my_api".into(), private_port: 20000 },
            super::super::Peer { name: "my-api".into(), private_port: 20001 },
        ];
        let hosts = hosts_file(&clash);
        assert!(hosts.contains("127.1.78.32\tmy_api\n") && hosts.contains("127.1.78.33\tmy-api\n"), "one name, one service: {hosts}");
    }
}
