//! Private addressing: a listener per running service in its environment's network (its
//! private port and bare name), forwarding to its healthy instances.

use super::*;

impl Reconciler {
    /// Listens, in each environment's network, wherever a running service answers the others
    /// (`Runtime::private_addrs`: its private port, and its bare name with the ports it is
    /// known by), forwarding to its healthy instances; stops listening for services that no
    /// longer run (so their network can go).
    pub(super) async fn ensure_forwarders(&self) {
        // One at a time (the tick and pipelines going live both call it): two would bind for
        // the same service and one's listeners would be lost.
        let _one = self.forwarding.lock().await;
        let rows: Vec<(Uuid, Uuid, i32, String, String, Option<i32>)> = match sqlx::query_as(
            "SELECT s.id, s.environment_id, s.private_port, s.source_kind, s.source, s.port FROM services s WHERE s.private_port IS NOT NULL
             AND EXISTS (SELECT 1 FROM deployments d WHERE d.service_id = s.id AND d.status = 'running')",
        )
        .fetch_all(&self.state.db)
        .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        let running: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
        {
            let mut inner = self.inner();
            inner.forwarders.retain(|service, listeners| {
                if !running.contains(service) {
                    listeners.values().for_each(|h| h.abort());
                    return false;
                }
                // A listener that ended is made again below.
                listeners.retain(|_, h| !h.is_finished());
                true
            });
            inner.private_slots.retain(|service, _| running.contains(service));
        }
        for (service_id, environment_id, private_port, kind, source, port) in rows {
            let database = kind == SourceKind::Database.as_str();
            let known: Vec<u16> = if database {
                app::services::engine_port(&source).into_iter().collect()
            } else {
                // `http://api/` and the port the service says it listens on.
                std::iter::once(80).chain(port.map(|p| p as u16)).collect()
            };
            let missing: Vec<std::net::SocketAddrV4> = {
                let inner = self.inner();
                let have = inner.forwarders.get(&service_id);
                self.runtime.private_addrs(private_port as u16, &known, database).into_iter().filter(|a| !have.is_some_and(|h| h.contains_key(a))).collect()
            };
            if missing.is_empty() {
                continue;
            }
            let slots = self
                .inner()
                .private_slots
                .entry(service_id)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(proxy::PRIVATE_CONNECTIONS)))
                .clone();
            for addr in missing {
                // An address another process holds (a tenant's own, in its own network) is
                // tried again on the next pass.
                match self.runtime.private_listener(environment_id, addr).await {
                    Ok(listener) => {
                        let handle = tokio::spawn(proxy::forward_private(self.state.clone(), service_id, listener, slots.clone()));
                        if let Some(old) = self.inner().forwarders.entry(service_id).or_default().insert(addr, handle) {
                            old.abort();
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, detail = e.internal.as_deref().unwrap_or(""), %addr, %service_id, "cannot listen where the service answers privately"),
                }
            }
        }
    }
}
