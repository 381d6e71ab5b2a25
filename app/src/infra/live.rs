//! What changes while a page is open, shared by every request of this replica: deployment
//! status changes and new log lines (fed from Postgres `LISTEN`, so every replica sees every
//! change), and the routing table of the service proxy.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
};
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum LiveEvent {
    Status(StatusNotice),
    /// New log lines of a deployment are stored.
    Logs(Uuid),
    /// The listener reconnected: anything may have changed.
    Resync,
}

/// A deployment's status changed: whose it is (to filter by) and the change as the domain
/// wrote it (`deployments::StatusChange` as JSON), passed on to whoever needs it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusNotice {
    pub deployment_id: Uuid,
    pub project_id: Uuid,
    pub json: Arc<str>,
}

/// Where an instance listens: an address in a network the runtime names (`None`: the host's
/// own network). The runtime decides both; nothing else interprets the network's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub network: Option<String>,
    pub addr: SocketAddr,
}

/// The healthy instances of one service, taken in turn.
#[derive(Debug, Default)]
pub struct Backends {
    pub endpoints: Vec<Endpoint>,
    next: AtomicUsize,
}

impl Backends {
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Backends { endpoints, next: AtomicUsize::new(0) }
    }

    /// Round robin.
    pub fn pick(&self) -> Option<&Endpoint> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Some(&self.endpoints[i])
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// `web.shop.localhost` → instances. A host that is known but has no healthy instance maps
    /// to empty backends, so the proxy can say "not running" rather than "no such service".
    pub by_host: HashMap<String, Arc<Backends>>,
    /// Service id → instances, for the private port forwarders.
    pub by_service: HashMap<Uuid, Arc<Backends>>,
    /// `web.shop.localhost` → its service, to count what the proxy sends for it.
    pub service_of_host: HashMap<String, Uuid>,
}

/// Bytes this replica's proxy sent to the internet per service, since they were last taken
/// (metered as egress).
#[derive(Default)]
pub struct EgressMeter {
    sent: std::sync::Mutex<HashMap<Uuid, u64>>,
    /// Who measured it (this replica), for the usage records.
    pub source: String,
}

impl EgressMeter {
    pub fn add(&self, service: Uuid, bytes: u64) {
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()).entry(service).or_default() += bytes;
    }

    /// Every count so far, leaving zero.
    pub fn take(&self) -> HashMap<Uuid, u64> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts taken but not stored go back (a failed write).
    pub fn put_back(&self, counts: HashMap<Uuid, u64>) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        for (service, bytes) in counts {
            *sent.entry(service).or_default() += bytes;
        }
    }
}

#[derive(Clone)]
pub struct Live {
    pub events: broadcast::Sender<LiveEvent>,
    pub routes: Arc<RwLock<Arc<RouteTable>>>,
    pub egress: Arc<EgressMeter>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            events: broadcast::channel(4096).0,
            routes: Arc::new(RwLock::new(Arc::new(RouteTable::default()))),
            egress: Arc::new(EgressMeter { sent: Default::default(), source: format!("proxy:{}", Uuid::new_v4()) }),
        }
    }
}

impl Live {
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_routes(&self, table: RouteTable) {
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}
