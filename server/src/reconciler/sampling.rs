//! CPU and memory samples of the instances this leader runs, stored per service every 5 s (the
//! charts and metering read them).

use super::*;

impl Reconciler {
    pub(super) async fn sample_metrics(&self) {
        let usage = self.runtime.usage().await;
        if usage.is_empty() {
            return;
        }
        let service_of: HashMap<Uuid, Uuid> =
            self.inner().supervised.values().flatten().map(|s| (s.instance_id, s.service_id)).collect();
        let mut per_service: HashMap<Uuid, (f32, i64)> = HashMap::new();
        for (instance, u) in usage {
            if let Some(s) = service_of.get(&instance) {
                let e = per_service.entry(*s).or_default();
                e.0 += u.cpu_percent;
                e.1 += u.memory_bytes as i64;
            }
        }
        let ids: Vec<Uuid> = per_service.keys().copied().collect();
        let cpu: Vec<f32> = ids.iter().map(|i| per_service[i].0).collect();
        let mem: Vec<i64> = ids.iter().map(|i| per_service[i].1).collect();
        let r = sqlx::query(
            "INSERT INTO service_metrics (service_id, cpu_percent, memory_bytes)
             SELECT * FROM UNNEST($1::uuid[], $2::real[], $3::bigint[]) AS m(s, c, b) WHERE EXISTS (SELECT 1 FROM services WHERE id = m.s)",
        )
        .bind(&ids)
        .bind(&cpu)
        .bind(&mem)
        .execute(&self.state.db)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "storing metrics failed");
        }
        let _ = sqlx::query("DELETE FROM service_metrics WHERE at < now() - interval '7 days'").execute(&self.state.db).await;
    }
}
