//! The pods of every instance, from one watch of the whole cluster (every pod labelled
//! `managed-by=roundhouse`, through kube-runtime's watcher: a list, then a watch resumed from
//! where it stood, listed again when the API server says it is too far behind). Each instance's
//! latest state is kept in a `watch` channel that `ready`, the instance's supervisor and its
//! log follower subscribe to.

use super::manifests::{managed_selector, LABEL_INSTANCE};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::watch;
use uuid::Uuid;

/// What the platform makes of an instance's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not there yet: being scheduled, its image pulled, its container created.
    Pending,
    /// Its container runs; `ready` once its readiness probe passes. `restarts`: how often it
    /// was restarted; `last_exit`: how its previous run ended.
    Running { ready: bool, restarts: i32, last_exit: Option<i32> },
    /// It exited and the kubelet waits before starting it again (CrashLoopBackOff).
    BackingOff { restarts: i32, last_exit: Option<i32> },
    /// It cannot run as it is: its image's name is invalid, its configuration is refused.
    /// `user` is for the owner; `internal` is what the cluster said.
    Stuck { user: String, internal: String },
    /// Its image cannot be pulled now; the kubelet keeps trying (a registry's rate limit, a
    /// tag pushed a moment later).
    Pulling { user: String, internal: String },
    /// No node has room for it now; the cluster keeps trying (a node may free up or be added).
    /// `internal` is what the scheduler said.
    Unschedulable { internal: String },
    /// It ran to its end (a one-off run): its exit code.
    Ended { exit_code: Option<i32> },
    /// Its pod was deleted.
    Gone,
}

/// What the owner is told while no node has room for their instance.
pub const NO_ROOM: &str = "No node of the cluster has room for it now (its CPU, memory or volume): the cluster keeps trying.";

/// An instance's pod: its name (for its logs) and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub state: PodState,
}

impl Default for Observed {
    fn default() -> Self {
        Observed { pod: None, namespace: None, state: PodState::Pending }
    }
}

const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];
const BAD_IMAGES: [&str; 2] = ["InvalidImageName", "ErrImageNeverPull"];
const CONFIG_FAILURES: [&str; 3] = ["CreateContainerConfigError", "CreateContainerError", "RunContainerError"];

/// Reads a pod's status the way the platform's states need it.
pub fn observe(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else { return PodState::Pending };
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    if let Some(c) = unschedulable {
        return PodState::Unschedulable { internal: c.message.clone().unwrap_or_default() };
    }
    let Some(container) = status.container_statuses.iter().flatten().next() else {
        return match status.phase.as_deref() {
            Some("Failed") => PodState::Ended { exit_code: None },
            _ => PodState::Pending,
        };
    };
    let restarts = container.restart_count;
    let last_exit = container.last_state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    let state = container.state.as_ref();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let internal = format!("{reason}: {}", waiting.message.as_deref().unwrap_or_default());
        let image = container.image.clone();
        if PULL_FAILURES.contains(&reason) {
            return PodState::Pulling {
                user: format!("The image {image} could not be pulled: check its name and tag, and that it is public or the cluster's pull secret can read it."),
                internal,
            };
        }
        if BAD_IMAGES.contains(&reason) {
            return PodState::Stuck { user: format!("The image {image} cannot be pulled: its name is not one a registry serves."), internal };
        }
        if CONFIG_FAILURES.contains(&reason) {
            return PodState::Stuck { user: "The cluster could not create its container (its command or configuration was refused).".into(), internal };
        }
        if reason == "CrashLoopBackOff" {
            return PodState::BackingOff { restarts, last_exit };
        }
        return PodState::Pending;
    }
    if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
        return match status.phase.as_deref() {
            // A container of an always-restarted pod ends between its runs.
            Some("Running") | Some("Pending") => PodState::BackingOff { restarts, last_exit: Some(done.exit_code) },
            _ => PodState::Ended { exit_code: Some(done.exit_code) },
        };
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return PodState::Running { ready: container.ready, restarts, last_exit };
    }
    PodState::Pending
}

/// The instance a pod belongs to.
fn instance_of(pod: &Pod) -> Option<Uuid> {
    pod.metadata.labels.as_ref()?.get(LABEL_INSTANCE)?.parse().ok()
}

/// Every instance's pod, as the watch last saw it.
#[derive(Default)]
pub struct Pods {
    instances: Mutex<HashMap<Uuid, watch::Sender<Observed>>>,
    /// Since when the watch has failed without a success in between (the cluster is away).
    failing_since: Mutex<Option<std::time::Instant>>,
    /// The instances a (re)list has shown so far, between its `Init` and `InitDone`.
    listed: Mutex<Option<std::collections::HashSet<Uuid>>>,
}

impl Pods {
    /// Starts watching the cluster's pods; the watch ends with the answer.
    pub fn watch(client: Client, installation: &str) -> (Arc<Pods>, tokio::task::JoinHandle<()>) {
        let selector = managed_selector(installation);
        let pods = Arc::new(Pods::default());
        let this = pods.clone();
        let task = tokio::spawn(async move {
            let api: Api<Pod> = Api::all(client);
            let config = watcher::Config::default().labels(&selector);
            let mut events = std::pin::pin!(watcher(api, config).default_backoff());
            while let Some(event) = events.next().await {
                let ok = event.is_ok();
                match event {
                    Ok(watcher::Event::Apply(pod)) => this.saw(&pod),
                    Ok(watcher::Event::InitApply(pod)) => {
                        if let (Some(listed), Some(instance)) = (this.listed.lock().unwrap_or_else(|e| e.into_inner()).as_mut(), instance_of(&pod)) {
                            listed.insert(instance);
                        }
                        this.saw(&pod);
                    }
                    Ok(watcher::Event::Delete(pod)) => this.deleted(&pod),
                    Ok(watcher::Event::Init) => *this.listed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Default::default()),
                    Ok(watcher::Event::InitDone) => {
                        let listed = this.listed.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
                        this.relisted(&listed);
                    }
                    // The watcher lists again after its backoff.
                    Err(e) => tracing::warn!(error = %e, "watching the cluster's pods"),
                }
                let mut failing = this.failing_since.lock().unwrap_or_else(|e| e.into_inner());
                match (ok, *failing) {
                    (true, _) => *failing = None,
                    (false, None) => *failing = Some(std::time::Instant::now()),
                    (false, Some(_)) => {}
                }
            }
        });
        (pods, task)
    }

    fn sender(&self, instance: Uuid) -> watch::Sender<Observed> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).entry(instance).or_insert_with(|| watch::channel(Observed::default()).0).clone()
    }

    fn saw(&self, pod: &Pod) {
        let Some(instance) = instance_of(pod) else { return };
        self.sweep();
        let observed = Observed { pod: pod.metadata.name.clone(), namespace: pod.metadata.namespace.clone(), state: observe(pod) };
        self.sender(instance).send_if_modified(|now| {
            let changed = *now != observed;
            *now = observed;
            changed
        });
    }

    /// A deleted pod is the instance's end only if it was its latest one (a replaced pod's
    /// deletion may come after its successor was seen).
    fn deleted(&self, pod: &Pod) {
        let Some(instance) = instance_of(pod) else { return };
        // An instance nobody asked about needs no entry for its end.
        let Some(sender) = self.instances.lock().unwrap_or_else(|e| e.into_inner()).get(&instance).cloned() else { return };
        sender.send_if_modified(|now| {
            if now.pod.is_some() && now.pod != pod.metadata.name {
                return false;
            }
            *now = Observed { state: PodState::Gone, ..now.clone() };
            true
        });
    }

    /// After a (re)list: pods deleted while the watch was away sent no deletion, so every
    /// instance whose pod the list did not show is gone.
    fn relisted(&self, listed: &std::collections::HashSet<Uuid>) {
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        for (instance, sender) in instances.iter() {
            if !listed.contains(instance) {
                sender.send_if_modified(|now| {
                    if now.pod.is_none() || now.state == PodState::Gone {
                        return false;
                    }
                    now.state = PodState::Gone;
                    true
                });
            }
        }
    }

    /// Forgets instances nobody follows whose pod is gone or ended, so the map holds what is
    /// followed and what runs (one entry per pod of the cluster at most).
    fn sweep(&self) {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.receiver_count() > 0 || !matches!(s.borrow().state, PodState::Gone | PodState::Ended { .. }));
    }

    /// How long the watch has been failing, if it is.
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        self.failing_since.lock().unwrap_or_else(|e| e.into_inner()).map(|since| since.elapsed())
    }

    /// The instance's pod from now on.
    pub fn subscribe(&self, instance: Uuid) -> watch::Receiver<Observed> {
        self.sender(instance).subscribe()
    }

    /// The instance is gone for good: its entry too.
    pub fn forget(&self, instance: Uuid) {
        self.instances.lock().unwrap_or_else(|e| e.into_inner()).remove(&instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "web-1" }, "status": status })).unwrap()
    }

    fn container(state: serde_json::Value, restarts: i32, last: Option<i32>) -> serde_json::Value {
        let last = last.map_or(json!({}), |code| json!({ "terminated": { "exitCode": code } }));
        json!({ "name": "web", "image": "ghcr.io/acme/web:1", "imageID": "", "ready": false, "restartCount": restarts, "state": state, "lastState": last })
    }

    #[test]
    fn a_pods_status_becomes_the_platforms_state() {
        assert_eq!(observe(&pod(json!({ "phase": "Pending" }))), PodState::Pending);
        let running = pod(json!({ "phase": "Running", "containerStatuses": [container(json!({ "running": {} }), 0, None)] }));
        assert_eq!(observe(&running), PodState::Running { ready: false, restarts: 0, last_exit: None });
        let mut ready = container(json!({ "running": {} }), 2, Some(1));
        ready["ready"] = json!(true);
        assert_eq!(observe(&pod(json!({ "phase": "Running", "containerStatuses": [ready] }))), PodState::Running { ready: true, restarts: 2, last_exit: Some(1) });
        let crashing = container(json!({ "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 10s" } }), 3, Some(137));
        assert_eq!(observe(&pod(json!({ "phase": "Running", "containerStatuses": [crashing] }))), PodState::BackingOff { restarts: 3, last_exit: Some(137) });
        let done = container(json!({ "terminated": { "exitCode": 0 } }), 0, None);
        assert_eq!(observe(&pod(json!({ "phase": "Succeeded", "containerStatuses": [done] }))), PodState::Ended { exit_code: Some(0) });
    }

    #[test]
    fn what_keeps_a_pod_from_running_is_told_without_the_clusters_insides() {
        let pulling = container(json!({ "waiting": { "reason": "ImagePullBackOff", "message": "pull access denied for node-7.internal" } }), 0, None);
        let PodState::Pulling { user, internal } = observe(&pod(json!({ "phase": "Pending", "containerStatuses": [pulling] }))) else { panic!("pulling") };
        assert!(user.contains("ghcr.io/acme/web:1 could not be pulled"), "{user}");
        assert!(!user.contains("node-7") && internal.contains("node-7"));
        let unschedulable = json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory." }] });
        let PodState::Unschedulable { internal } = observe(&pod(unschedulable)) else { panic!("unschedulable") };
        assert!(internal.contains("0/3 nodes"));
    }

    fn labelled(name: &str, instance: Uuid, phase: &str) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": { LABEL_INSTANCE: instance.to_string() } }, "status": { "phase": phase } })).unwrap()
    }

    #[test]
    fn a_relist_marks_gone_what_it_no_longer_shows_and_nothing_else() {
        let pods = Pods::default();
        let (shown, deleted_meanwhile, not_yet_made) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let (a, b, c) = (pods.subscribe(shown), pods.subscribe(deleted_meanwhile), pods.subscribe(not_yet_made));
        pods.saw(&labelled("a", shown, "Running"));
        pods.saw(&labelled("b", deleted_meanwhile, "Running"));
        pods.relisted(&std::collections::HashSet::from([shown]));
        assert_ne!(a.borrow().state, PodState::Gone);
        assert_eq!(b.borrow().state, PodState::Gone, "its deletion was missed while the watch was away");
        assert_eq!(c.borrow().state, PodState::Pending, "an instance whose pod is not made yet is not gone");
    }

    #[test]
    fn entries_nobody_follows_go_once_their_pod_is_gone() {
        let pods = Pods::default();
        let (followed, unfollowed) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let rx = pods.subscribe(followed);
        pods.saw(&labelled("a", followed, "Running"));
        pods.saw(&labelled("b", unfollowed, "Running"));
        pods.deleted(&labelled("a", followed, "Running"));
        pods.deleted(&labelled("b", unfollowed, "Running"));
        pods.saw(&labelled("c", Uuid::from_u128(3), "Pending"));
        let kept: std::collections::HashSet<Uuid> = pods.instances.lock().unwrap().keys().copied().collect();
        assert!(kept.contains(&followed), "followed: kept for whoever waits on it");
        assert!(!kept.contains(&unfollowed), "gone and nobody follows it: forgotten");
        assert_eq!(rx.borrow().state, PodState::Gone);
        // A deletion of an instance nobody asked about makes no entry.
        pods.deleted(&labelled("d", Uuid::from_u128(4), "Running"));
        assert!(!pods.instances.lock().unwrap().contains_key(&Uuid::from_u128(4)));
    }

    #[test]
    fn a_replaced_pods_late_deletion_leaves_its_successor_alone() {
        let pods = Pods::default();
        let id = Uuid::from_u128(7);
        let labelled = |name: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({ "metadata": { "name": name, "labels": { LABEL_INSTANCE: id.to_string() } }, "status": { "phase": phase } })).unwrap()
        };
        let rx = pods.subscribe(id);
        pods.saw(&labelled("web-a", "Running"));
        pods.saw(&labelled("web-b", "Pending"));
        pods.deleted(&labelled("web-a", "Running"));
        assert_eq!(rx.borrow().pod.as_deref(), Some("web-b"));
        assert_eq!(rx.borrow().state, PodState::Pending);
        pods.deleted(&labelled("web-b", "Pending"));
        assert_eq!(rx.borrow().state, PodState::Gone);
    }
}
