//! Talking to the cluster through kube-rs: checking at start that the platform may do what it
//! needs (SelfSubjectAccessReview for each verb on each kind, so a missing RBAC rule is named
//! before anything is deployed), and applying objects with server-side apply under the field
//! manager `roundhouse`, the namespace first.

use super::manifests::{Object, MANAGED_BY};
use k8s_openapi::{
    api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
    NamespaceResourceScope,
};
use kube::{
    api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Client, Resource,
};
use serde::{de::DeserializeOwned, Serialize};

/// The kinds the runtime writes, with the API group RBAC knows them by.
pub const KINDS: [(&str, &str); 10] = [
    ("", "namespaces"),
    ("networking.k8s.io", "networkpolicies"),
    ("", "resourcequotas"),
    ("", "secrets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("", "services"),
    ("networking.k8s.io", "ingresses"),
    ("batch", "cronjobs"),
    ("batch", "jobs"),
];
/// What it does with each of them.
pub const VERBS: [&str; 5] = ["get", "list", "watch", "patch", "delete"];

pub struct Cluster {
    client: Client,
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        Cluster { client }
    }

    /// The cluster from `KUBECONFIG` (or `~/.kube/config`), else the in-cluster service account.
    pub async fn connect() -> anyhow::Result<Self> {
        let client = Client::try_default().await.map_err(|e| anyhow::anyhow!("no Kubernetes cluster: set KUBECONFIG or run in a cluster ({e})"))?;
        Ok(Cluster { client })
    }

    /// Every verb on every kind the platform may not use, as `verb group/resource`; empty
    /// when it has all it needs.
    pub async fn missing_permissions(&self) -> Result<Vec<String>, kube::Error> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let mut missing = Vec::new();
        for (group, resource) in KINDS {
            for verb in VERBS {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            group: Some(group.to_string()),
                            resource: Some(resource.to_string()),
                            verb: Some(verb.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let answer = api.create(&PostParams::default(), &review).await?;
                if !answer.status.is_some_and(|s| s.allowed) {
                    missing.push(if group.is_empty() { format!("{verb} {resource}") } else { format!("{verb} {group}/{resource}") });
                }
            }
        }
        Ok(missing)
    }

    /// Server-side applies `objects` in order (the environment's before a service's), taking
    /// over fields another manager set: what Roundhouse writes is what runs.
    pub async fn apply(&self, objects: &[Object]) -> Result<(), kube::Error> {
        let params = PatchParams::apply(MANAGED_BY).force();
        for object in objects {
            match object {
                Object::Namespace(o) => {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone()).patch(&name, &params, &Patch::Apply(o)).await?;
                }
                Object::NetworkPolicy(o) => self.apply_namespaced(o, &params).await?,
                Object::ResourceQuota(o) => self.apply_namespaced(o, &params).await?,
                Object::Secret(o) => self.apply_namespaced(o, &params).await?,
                Object::Deployment(o) => self.apply_namespaced(o, &params).await?,
                Object::StatefulSet(o) => self.apply_namespaced(o, &params).await?,
                Object::Service(o) => self.apply_namespaced(o, &params).await?,
                Object::Ingress(o) => self.apply_namespaced(o, &params).await?,
                Object::CronJob(o) => self.apply_namespaced(o, &params).await?,
                Object::Job(o) => self.apply_namespaced(o, &params).await?,
            }
        }
        Ok(())
    }

    async fn apply_namespaced<K>(&self, object: &K, params: &PatchParams) -> Result<(), kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
    {
        let meta = object.meta();
        let (namespace, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        Api::<K>::namespaced(self.client.clone(), &namespace).patch(&name, params, &Patch::Apply(object)).await?;
        Ok(())
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
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
