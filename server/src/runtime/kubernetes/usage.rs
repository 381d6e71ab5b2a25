//! CPU and memory per instance from the cluster's metrics API (metrics.k8s.io, served by
//! metrics-server), which copies the pods' labels, so one list by label answers for every
//! instance. A cluster without it answers no usage: charts stay empty, nothing fails.

use super::manifests::{managed_selector, LABEL_INSTANCE, LABEL_ROLE};
use crate::runtime::Usage;
use kube::{
    api::{ApiResource, DynamicObject, ListParams},
    Api, Client,
};
use uuid::Uuid;

/// `250m` → 0.25 cores; `1234567n` → 0.0012 cores; `2` → 2 cores.
pub fn cores(q: &str) -> Option<f64> {
    let (number, scale) = match q.char_indices().last()? {
        (i, 'n') => (&q[..i], 1e-9),
        (i, 'u') => (&q[..i], 1e-6),
        (i, 'm') => (&q[..i], 1e-3),
        _ => (q, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// `12345Ki` → 12641280 bytes; `64Mi`, `1Gi`, `500M`, `1000`.
pub fn bytes(q: &str) -> Option<u64> {
    const UNITS: [(&str, f64); 8] = [("Ki", 1024.0), ("Mi", 1048576.0), ("Gi", 1073741824.0), ("Ti", 1099511627776.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)];
    let (number, scale) = UNITS.iter().find_map(|(unit, scale)| q.strip_suffix(unit).map(|n| (n, *scale))).unwrap_or((q, 1.0));
    number.parse::<f64>().ok().map(|n| (n * scale) as u64)
}

pub async fn usage(client: &Client, installation: &str) -> Result<Vec<(Uuid, Usage)>, kube::Error> {
    let resource = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    // Builds are not instances.
    let selector = format!("{},{LABEL_ROLE}!=build", managed_selector(installation));
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|pod| {
            let instance: Uuid = pod.metadata.labels.as_ref()?.get(LABEL_INSTANCE)?.parse().ok()?;
            let (mut cpu, mut memory) = (0.0, 0u64);
            for c in pod.data.get("containers")?.as_array()? {
                cpu += c["usage"]["cpu"].as_str().and_then(cores).unwrap_or(0.0);
                memory += c["usage"]["memory"].as_str().and_then(bytes).unwrap_or(0);
            }
            Some((instance, Usage { cpu_percent: (cpu * 100.0) as f32, memory_bytes: memory }))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_of_the_metrics_api_are_read() {
        assert_eq!(cores("250m"), Some(0.25));
        assert!((cores("1234567n").unwrap() - 0.001234567).abs() < 1e-12);
        assert_eq!(cores("2"), Some(2.0));
        assert_eq!(cores("x"), None);
        assert_eq!(bytes("12345Ki"), Some(12345 * 1024));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1000"), Some(1000));
        assert_eq!(bytes("lots"), None);
    }
}
