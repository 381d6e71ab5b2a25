//! Talking to the cluster through kube-rs: checking at start that the platform may do what it
//! needs (SelfSubjectAccessReview for each verb on each kind, so a missing RBAC rule is named
//! before anything is deployed), and applying objects with server-side apply under the field
//! manager `roundhouse`, the namespace first.

use super::manifests::{instance_selector, managed_selector, Object, LABEL_INSTANCE, MANAGED_BY};
use k8s_openapi::{
    api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
    NamespaceResourceScope,
};
use kube::{
    api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Client, Resource,
};
use serde::{de::DeserializeOwned, Serialize};

/// Writing is applying (a server-side apply that creates an object is authorized as `create`
/// too).
const APPLY: &[&str] = &["create", "patch"];
/// What it prunes or deletes, it lists first.
const APPLY_PRUNE: &[&str] = &["list", "create", "patch", "delete"];

/// Each kind the runtime touches, with the API group and subresource RBAC knows it by, and the
/// verbs it uses on it — those only: the start-up check asks for each, and
/// deploy/kubernetes/rbac.yaml grants no more.
pub const PERMISSIONS: &[(&str, &str, &str, &[&str])] = &[
    // `list`, `delete`: a deleted environment's namespace goes.
    ("", "namespaces", "", &["list", "create", "patch", "delete"]),
    ("networking.k8s.io", "networkpolicies", "", APPLY),
    ("", "resourcequotas", "", APPLY),
    ("", "limitranges", "", APPLY),
    // `get`: the platform's image pull secret, copied into each environment.
    ("", "secrets", "", &["get", "list", "create", "patch", "delete"]),
    ("apps", "deployments", "", APPLY_PRUNE),
    // `get`: the claim templates a StatefulSet was made with.
    ("apps", "statefulsets", "", &["get", "list", "create", "patch", "delete"]),
    ("", "services", "", APPLY_PRUNE),
    ("networking.k8s.io", "ingresses", "", APPLY_PRUNE),
    ("batch", "jobs", "", APPLY_PRUNE),
    // The instances' states (one watch), and whether a stopped one's pods are gone.
    ("", "pods", "", &["list", "watch"]),
    ("", "pods", "log", &["get"]),
    // What volumes are billed by; a deleted service's claim goes.
    ("", "persistentvolumeclaims", "", &["list", "delete"]),
];

/// What `remove_instance` deleted: the namespace and service label of what it deleted, and
/// whether that included the service's StatefulSet.
#[derive(Debug, Default)]
pub struct Retired {
    pub owner: Option<(String, String)>,
    pub stateful_set: bool,
}

/// What `apply` learnt from the API server: the address the service's Service answers at in
/// the cluster (its ClusterIP).
#[derive(Debug, Default)]
pub struct Applied {
    pub cluster_ip: Option<std::net::IpAddr>,
}

#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// The installation whose objects it lists (`Settings::installation`).
    installation: String,
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        Cluster { client, installation: "default".into() }
    }

    /// The same cluster, listing only `installation`'s objects.
    pub fn for_installation(self, installation: &str) -> Self {
        Cluster { installation: installation.to_string(), ..self }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The cluster from `KUBECONFIG` (or `~/.kube/config`), else the in-cluster service account.
    pub async fn connect() -> anyhow::Result<Self> {
        let client = Client::try_default().await.map_err(|e| anyhow::anyhow!("no Kubernetes cluster: set KUBECONFIG or run in a cluster ({e})"))?;
        Ok(Cluster::new(client))
    }

    /// Every verb on every kind the platform may not use, as `verb group/resource`; empty
    /// when it has all it needs.
    pub async fn missing_permissions(&self) -> Result<Vec<String>, kube::Error> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let mut missing = Vec::new();
        let each = PERMISSIONS.iter().flat_map(|(group, resource, subresource, verbs)| verbs.iter().map(move |verb| (*group, *resource, *subresource, *verb)));
        for (group, resource, subresource, verb) in each {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(group.to_string()),
                        resource: Some(resource.to_string()),
                        subresource: (!subresource.is_empty()).then(|| subresource.to_string()),
                        verb: Some(verb.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api.create(&PostParams::default(), &review).await?;
            if !answer.status.is_some_and(|s| s.allowed) {
                let resource = if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") };
                missing.push(if group.is_empty() { format!("{verb} {resource}") } else { format!("{verb} {group}/{resource}") });
            }
        }
        Ok(missing)
    }

    /// Server-side applies `objects` in order (the environment's before a service's), taking
    /// over fields another manager set: what Roundhouse writes is what runs.
    pub async fn apply(&self, objects: &[Object]) -> Result<Applied, kube::Error> {
        let params = PatchParams::apply(MANAGED_BY).force();
        let mut applied = Applied::default();
        for object in objects {
            match object {
                Object::Namespace(o) => {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone()).patch(&name, &params, &Patch::Apply(o)).await?;
                }
                Object::NetworkPolicy(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::LimitRange(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::ResourceQuota(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::Secret(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::Deployment(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::StatefulSet(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::Service(o) => {
                    let answered = self.apply_namespaced(o, &params).await?;
                    // A headless Service has none ("None").
                    if let Some(ip) = answered.spec.and_then(|s| s.cluster_ip).and_then(|ip| ip.parse().ok()) {
                        applied.cluster_ip = Some(ip);
                    }
                }
                Object::Ingress(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
                Object::Job(o) => {
                    self.apply_namespaced(o, &params).await?;
                }
            }
        }
        Ok(applied)
    }

    async fn apply_namespaced<K>(&self, object: &K, params: &PatchParams) -> Result<K, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
    {
        let meta = object.meta();
        let (namespace, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        Api::<K>::namespaced(self.client.clone(), &namespace).patch(&name, params, &Patch::Apply(object)).await
    }

    /// Deletes the objects of `kind` in `namespace` that carry `selector` but are not in `keep`
    /// (what a service no longer needs); the deletion waits for what they own (foreground).
    /// Answers the names deleted.
    pub async fn prune<K>(&self, namespace: &str, selector: &str, keep: &[String]) -> Result<Vec<String>, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
    {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        let mut deleted = Vec::new();
        for item in api.list(&ListParams::default().labels(selector)).await? {
            let name = item.meta().name.clone().unwrap_or_default();
            if !keep.contains(&name) {
                api.delete(&name, &DeleteParams::foreground()).await?;
                deleted.push(name);
            }
        }
        Ok(deleted)
    }

    /// Deletes what one instance made — its Deployment or Job, its Secret, and the service's
    /// StatefulSet while this instance still holds it (a newer instance that took it over
    /// relabelled it) — waiting for what they own (foreground). Answers the namespace and
    /// service of what it deleted.
    pub async fn remove_instance(&self, instance: uuid::Uuid) -> Result<Retired, kube::Error> {
        use k8s_openapi::api::{apps::v1::{Deployment, StatefulSet}, batch::v1::Job, core::v1::Secret};
        let selector = format!("{},{}", managed_selector(&self.installation), instance_selector(instance));
        let set = self.delete_all::<StatefulSet>(&selector).await?.0;
        let mut owner = self.delete_all::<Deployment>(&selector).await?.0;
        owner = owner.or(set.clone());
        owner = owner.or(self.delete_all::<Job>(&selector).await?.0);
        owner = owner.or(self.delete_all::<Secret>(&selector).await?.0);
        Ok(Retired { owner, stateful_set: set.is_some() })
    }

    /// Deletes every object of kind `K`, in any namespace, that carries `selector`; answers
    /// the namespace and service label of the last one, and how many there were.
    async fn delete_all<K>(&self, selector: &str) -> Result<(Option<(String, String)>, usize), kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
    {
        let mut owner = None;
        let items = Api::<K>::all(self.client.clone()).list(&ListParams::default().labels(selector)).await?;
        let count = items.items.len();
        for item in items {
            let meta = item.meta();
            let (namespace, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
            let service = meta.labels.as_ref().and_then(|l| l.get(super::manifests::LABEL_SERVICE)).cloned().unwrap_or_default();
            match Api::<K>::namespaced(self.client.clone(), &namespace).delete(&name, &DeleteParams::foreground()).await {
                Ok(_) => {}
                // Gone already: what was wanted.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            owner = Some((namespace, service));
        }
        Ok((owner, count))
    }

    /// Deletes an instance's variables only (a finished run's, or an instance that handed its
    /// StatefulSet back).
    pub async fn remove_secrets(&self, instance: uuid::Uuid) -> Result<(), kube::Error> {
        let selector = format!("{},{}", managed_selector(&self.installation), instance_selector(instance));
        self.delete_all::<k8s_openapi::api::core::v1::Secret>(&selector).await.map(|_| ())
    }

    /// Deletes every build Job of this installation (an earlier leader's, nobody waits for);
    /// answers how many.
    pub async fn remove_builds(&self) -> Result<usize, kube::Error> {
        let selector = format!("{},{}=build", managed_selector(&self.installation), super::manifests::LABEL_ROLE);
        Ok(self.delete_all::<k8s_openapi::api::batch::v1::Job>(&selector).await?.1)
    }

    /// The volume claim templates of a StatefulSet, if it exists.
    pub async fn claim_templates(&self, namespace: &str, name: &str) -> Result<Option<Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>>, kube::Error> {
        let set = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(self.client.clone(), namespace).get_opt(name).await?;
        Ok(set.and_then(|s| s.spec).and_then(|s| s.volume_claim_templates))
    }

    /// Deletes a service's volume claims, in any namespace.
    pub async fn remove_claims(&self, service: uuid::Uuid) -> Result<(), kube::Error> {
        let selector = format!("{},{}={service}", managed_selector(&self.installation), super::manifests::LABEL_SERVICE);
        self.delete_all::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(&selector).await.map(|_| ())
    }

    /// The environments this installation has a namespace for.
    pub async fn namespaces(&self) -> Result<Vec<uuid::Uuid>, kube::Error> {
        let list = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone()).list(&ListParams::default().labels(&managed_selector(&self.installation))).await?;
        Ok(list.items.iter().filter_map(|n| n.metadata.labels.as_ref()?.get(super::manifests::LABEL_ENVIRONMENT)?.parse().ok()).collect())
    }

    /// Deletes an environment's namespace and all in it (the API server finishes it).
    pub async fn remove_namespace(&self, name: &str) -> Result<(), kube::Error> {
        match Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone()).delete(name, &DeleteParams::foreground()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits (up to `patience`) until the StatefulSet `name` no longer exists.
    pub async fn stateful_set_gone(&self, namespace: &str, name: &str, patience: std::time::Duration) -> bool {
        let api = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(self.client.clone(), namespace);
        let until = tokio::time::Instant::now() + patience;
        loop {
            match api.get_opt(name).await {
                Ok(None) => return true,
                _ if tokio::time::Instant::now() >= until => return false,
                _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }

    /// Waits (up to `patience`) until no pod of the instance is left; answers whether none is.
    pub async fn pods_gone(&self, instance: uuid::Uuid, patience: std::time::Duration) -> bool {
        let api = Api::<k8s_openapi::api::core::v1::Pod>::all(self.client.clone());
        let params = ListParams::default().labels(&format!("{},{}", managed_selector(&self.installation), instance_selector(instance)));
        let until = tokio::time::Instant::now() + patience;
        loop {
            match api.list(&params).await {
                Ok(list) if list.items.is_empty() => return true,
                _ if tokio::time::Instant::now() >= until => return false,
                _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }

    /// Once no instance of a service runs in `namespace`, its Service(s) and Ingress go too.
    pub async fn prune_service(&self, namespace: &str, service: &str) -> Result<(), kube::Error> {
        use k8s_openapi::api::{apps::v1::{Deployment, StatefulSet}, core::v1::Service, networking::v1::Ingress};
        let selector = format!("{}={service}", super::manifests::LABEL_SERVICE);
        let params = ListParams::default().labels(&selector);
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), namespace).list(&params).await?;
        let sets = Api::<StatefulSet>::namespaced(self.client.clone(), namespace).list(&params).await?;
        if deployments.items.is_empty() && sets.items.is_empty() {
            self.prune::<Service>(namespace, &selector, &[]).await?;
            self.prune::<Ingress>(namespace, &selector, &[]).await?;
        }
        Ok(())
    }

    /// The instances whose objects run in the cluster: every Deployment, StatefulSet and Job
    /// the platform manages, by the instance label (builds are not instances).
    pub async fn instances(&self) -> Result<Vec<uuid::Uuid>, kube::Error> {
        use k8s_openapi::api::{apps::v1::{Deployment, StatefulSet}, batch::v1::Job};
        let params = ListParams::default().labels(&format!("{},{}!=build", managed_selector(&self.installation), super::manifests::LABEL_ROLE));
        let mut found = Vec::new();
        let mut take = |labels: Option<&std::collections::BTreeMap<String, String>>| {
            if let Some(id) = labels.and_then(|l| l.get(LABEL_INSTANCE)).and_then(|v| v.parse().ok()) {
                found.push(id);
            }
        };
        for d in Api::<Deployment>::all(self.client.clone()).list(&params).await? {
            take(d.metadata.labels.as_ref());
        }
        for s in Api::<StatefulSet>::all(self.client.clone()).list(&params).await? {
            take(s.metadata.labels.as_ref());
        }
        for j in Api::<Job>::all(self.client.clone()).list(&params).await? {
            take(j.metadata.labels.as_ref());
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Each volume claim's capacity, by the service it belongs to (what volumes are billed by).
    pub async fn volume_claims(&self) -> Result<Vec<(uuid::Uuid, u64)>, kube::Error> {
        let claims = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::all(self.client.clone()).list(&ListParams::default().labels(&managed_selector(&self.installation))).await?;
        Ok(claims
            .items
            .iter()
            .filter_map(|c| {
                let service = c.metadata.labels.as_ref()?.get(super::manifests::LABEL_SERVICE)?.parse().ok()?;
                let capacity = c.status.as_ref()?.capacity.as_ref()?.get("storage")?;
                Some((service, super::usage::bytes(&capacity.0)?))
            })
            .collect())
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
