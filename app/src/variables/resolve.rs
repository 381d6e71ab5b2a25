//! Deploy-time resolution of variables: references are replaced by the values they name,
//! transitively. A cycle or a missing name is an error that shows the path, and the references
//! between services give the order to deploy them in.

use super::template::{self, Part, Reference, TemplateError};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The longest a resolved value may be. References can double a value at every step
/// (`A = ${{B}}${{B}}`, `B = ${{C}}${{C}}`, …), so expansion stops at this size rather than
/// after filling the platform's memory; it is also well under what an environment variable
/// can hold (128 KiB on Linux).
pub const MAX_VALUE: usize = 32 * 1024;
/// The deepest chain of references followed (`A → B → C …`); resolution is recursive, and a
/// chain of thousands would otherwise overflow the stack of the thread resolving it.
pub const MAX_DEPTH: usize = 64;
/// All of a service's resolved variables together: what one process's environment can hold
/// (the kernel refuses to start a process with much more).
pub const MAX_TOTAL: usize = 512 * 1024;

/// The variables of one environment, raw (references unresolved). Built-in variables of a
/// service (`PORT`, `ROUNDHOUSE_*`, a database's `DATABASE_URL`…) are included in its map; a
/// user variable of the same name overrides them.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub shared: BTreeMap<String, String>,
    pub services: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("Reference cycle: {}", path.join(" → "))]
    Cycle { path: Vec<String> },
    #[error("{from} refers to {reference}, which does not exist.")]
    Missing { from: String, reference: String },
    #[error("{from} refers to a service named \"{service}\", which is not in this environment.")]
    UnknownService { from: String, service: String },
    #[error("{at}: {error}")]
    Template { at: String, error: TemplateError },
    #[error("{at} resolves to more than {} KB; values are at most that long.", MAX_VALUE / 1024)]
    TooLong { at: String },
    #[error("{at}: references nest more than {MAX_DEPTH} deep.")]
    TooDeep { at: String },
    #[error("The variables of {service} add up to more than {} KB.", MAX_TOTAL / 1024)]
    TooLarge { service: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scope {
    Shared,
    Service(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Node {
    scope: Scope,
    name: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scope {
            Scope::Shared => write!(f, "shared.{}", self.name),
            Scope::Service(s) => write!(f, "{s}.{}", self.name),
        }
    }
}

struct Resolver<'a> {
    env: &'a Environment,
    done: HashMap<Node, String>,
    stack: Vec<Node>,
}

impl<'a> Resolver<'a> {
    fn raw(&self, node: &Node) -> Option<&'a String> {
        match &node.scope {
            Scope::Shared => self.env.shared.get(&node.name),
            Scope::Service(s) => self.env.services.get(s)?.get(&node.name),
        }
    }

    fn target(&self, from: &Node, r: &Reference) -> Result<Node, ResolveError> {
        Ok(match r {
            Reference::Own(name) => Node { scope: from.scope.clone(), name: name.clone() },
            Reference::Shared(name) => Node { scope: Scope::Shared, name: name.clone() },
            Reference::Service { service, name } => {
                if !self.env.services.contains_key(service) {
                    return Err(ResolveError::UnknownService { from: from.to_string(), service: service.clone() });
                }
                Node { scope: Scope::Service(service.clone()), name: name.clone() }
            }
        })
    }

    fn resolve(&mut self, node: &Node) -> Result<String, ResolveError> {
        if let Some(v) = self.done.get(node) {
            return Ok(v.clone());
        }
        if let Some(i) = self.stack.iter().position(|n| n == node) {
            let mut path: Vec<String> = self.stack[i..].iter().map(Node::to_string).collect();
            path.push(node.to_string());
            return Err(ResolveError::Cycle { path });
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(ResolveError::TooDeep { at: node.to_string() });
        }
        let raw = self.raw(node).expect("callers check existence");
        let parts = template::parse(raw).map_err(|error| ResolveError::Template { at: node.to_string(), error })?;
        self.stack.push(node.clone());
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(&t),
                // Generators are expanded when a variable is saved; one left here is kept literally.
                Part::Gen(_) => {}
                Part::Ref(r) => {
                    let target = self.target(node, &r)?;
                    if self.raw(&target).is_none() {
                        return Err(ResolveError::Missing { from: node.to_string(), reference: target.to_string() });
                    }
                    out.push_str(&self.resolve(&target)?);
                }
            }
            if out.len() > MAX_VALUE {
                return Err(ResolveError::TooLong { at: node.to_string() });
            }
        }
        self.stack.pop();
        self.done.insert(node.clone(), out.clone());
        Ok(out)
    }
}

/// The resolved variables of one service: its own variables (built-ins included) with every
/// reference replaced. A service never receives another service's variables unless it refers
/// to them, and then only the referenced values inside its own variables.
pub fn resolve_service(env: &Environment, service: &str) -> Result<BTreeMap<String, String>, ResolveError> {
    let vars = env.services.get(service).ok_or_else(|| ResolveError::UnknownService {
        from: "deploy".into(),
        service: service.to_string(),
    })?;
    let mut r = Resolver { env, done: HashMap::new(), stack: Vec::new() };
    let mut out = BTreeMap::new();
    let mut total = 0;
    for name in vars.keys() {
        let node = Node { scope: Scope::Service(service.to_string()), name: name.clone() };
        let value = r.resolve(&node)?;
        total += name.len() + value.len() + 2;
        if total > MAX_TOTAL {
            return Err(ResolveError::TooLarge { service: service.to_string() });
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Checks that every variable of the environment resolves (used before a deploy of any of them).
pub fn check(env: &Environment) -> Result<(), ResolveError> {
    for service in env.services.keys() {
        resolve_service(env, service)?;
    }
    Ok(())
}

/// The services each service refers to, directly or through shared variables.
pub fn service_dependencies(env: &Environment) -> Result<BTreeMap<String, BTreeSet<String>>, ResolveError> {
    fn walk(env: &Environment, value: &str, at: &str, own: &str, seen_shared: &mut BTreeSet<String>, deps: &mut BTreeSet<String>) -> Result<(), ResolveError> {
        let refs = template::references(value).map_err(|error| ResolveError::Template { at: at.to_string(), error })?;
        for r in refs {
            match r {
                Reference::Service { service, .. } if service != own => {
                    deps.insert(service);
                }
                Reference::Shared(name) => {
                    if seen_shared.insert(name.clone()) {
                        if let Some(v) = env.shared.get(&name) {
                            walk(env, v, &format!("shared.{name}"), own, seen_shared, deps)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    let mut all = BTreeMap::new();
    for (service, vars) in &env.services {
        let mut deps = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for (name, value) in vars {
            walk(env, value, &format!("{service}.{name}"), service, &mut seen, &mut deps)?;
        }
        all.insert(service.clone(), deps);
    }
    Ok(all)
}

/// Services in the order to deploy them: a service after the services it refers to. Services
/// that refer to each other (without a variable cycle) keep their name order.
pub fn deploy_order(env: &Environment) -> Result<Vec<String>, ResolveError> {
    let deps = service_dependencies(env)?;
    let mut remaining: BTreeMap<String, BTreeSet<String>> = deps;
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .iter()
            .filter(|(_, d)| d.iter().all(|s| !remaining.contains_key(s)))
            .map(|(s, _)| s.clone())
            .collect();
        let batch = if ready.is_empty() {
            // Mutual references: break the tie by name.
            vec![remaining.keys().next().cloned().expect("not empty")]
        } else {
            ready
        };
        for s in batch {
            remaining.remove(&s);
            order.push(s);
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(shared: &[(&str, &str)], services: &[(&str, &[(&str, &str)])]) -> Environment {
        Environment {
            shared: shared.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            services: services
                .iter()
                .map(|(s, vars)| (s.to_string(), vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
                .collect(),
        }
    }

    #[test]
    fn references_resolve_across_services_shared_and_own() {
        let e = env(
            &[("API_KEY", "k-${{shared.SUFFIX}}"), ("SUFFIX", "42")],
            &[
                ("Postgres", &[("PGUSER", "app"), ("PGPORT", "5432"), ("DATABASE_URL", "postgres://${{PGUSER}}@db:${{PGPORT}}/app")]),
                ("web", &[("DATABASE_URL", "${{Postgres.DATABASE_URL}}"), ("KEY", "${{shared.API_KEY}}"), ("PORT", "8080"), ("SELF", "http://web:${{PORT}}")]),
            ],
        );
        let web = resolve_service(&e, "web").unwrap();
        assert_eq!(web["DATABASE_URL"], "postgres://app@db:5432/app");
        assert_eq!(web["KEY"], "k-42");
        assert_eq!(web["SELF"], "http://web:8080");
        assert_eq!(web.len(), 4, "only the service's own variables, never PGUSER & co.");
    }

    #[test]
    fn a_cycle_is_refused_with_its_path() {
        let e = env(
            &[],
            &[
                ("web", &[("API_URL", "${{api.URL}}"), ("HOST", "${{API_URL}}")]),
                ("api", &[("URL", "${{web.HOST}}")]),
            ],
        );
        let err = resolve_service(&e, "web").unwrap_err();
        assert_eq!(err.to_string(), "Reference cycle: web.API_URL → api.URL → web.HOST → web.API_URL");
    }

    #[test]
    fn doubling_references_stop_at_the_value_limit() {
        // 40 levels of doubling would be 2^40 bytes; resolution stops at MAX_VALUE.
        let names: Vec<String> = (0..40).map(|i| format!("V{i}")).collect();
        let mut vars: Vec<(String, String)> = names.windows(2).map(|w| (w[0].clone(), format!("${{{{{0}}}}}${{{{{0}}}}}", w[1]))).collect();
        vars.push(("V39".into(), "xy".into()));
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let e = env(&[], &[("web", &refs)]);
        match resolve_service(&e, "web") {
            Err(ResolveError::TooLong { at }) => assert!(at.starts_with("web.V"), "{at}"),
            other => panic!("expected TooLong, got {other:?}"),
        }
        let small = env(&[], &[("web", &[("A", "${{B}}${{B}}"), ("B", "xy")])]);
        assert_eq!(resolve_service(&small, "web").unwrap()["A"], "xyxy");
    }

    #[test]
    fn a_chain_of_references_stops_at_the_depth_limit() {
        let vars: Vec<(String, String)> = (0..5000).map(|i| (format!("V{i}"), format!("${{{{V{}}}}}", i + 1))).chain([("V5000".to_string(), "end".to_string())]).collect();
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let e = env(&[], &[("web", &refs)]);
        // On a thread with a small stack: a recursion of thousands would overflow it.
        let r = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || resolve_service(&e, "web")).unwrap().join().unwrap();
        assert!(matches!(r, Err(ResolveError::TooDeep { .. })), "{r:?}");
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let e = env(&[], &[("web", &[("A", "x${{A}}")])]);
        assert_eq!(resolve_service(&e, "web").unwrap_err(), ResolveError::Cycle { path: vec!["web.A".into(), "web.A".into()] });
    }

    #[test]
    fn missing_names_and_services_are_named() {
        let e = env(&[], &[("web", &[("A", "${{shared.NOPE}}")]), ("api", &[("B", "${{Redis.URL}}")]), ("w2", &[("C", "${{api.NOPE}}")])]);
        assert_eq!(resolve_service(&e, "web").unwrap_err().to_string(), "web.A refers to shared.NOPE, which does not exist.");
        assert_eq!(
            resolve_service(&e, "api").unwrap_err().to_string(),
            "api.B refers to a service named \"Redis\", which is not in this environment."
        );
        assert_eq!(resolve_service(&e, "w2").unwrap_err().to_string(), "w2.C refers to api.NOPE, which does not exist.");
    }

    #[test]
    fn references_give_the_deploy_order() {
        let e = env(
            &[("DB", "${{Postgres.DATABASE_URL}}")],
            &[
                ("web", &[("API", "${{api.URL}}")]),
                ("api", &[("DB", "${{shared.DB}}"), ("URL", "http://api")]),
                ("Postgres", &[("DATABASE_URL", "postgres://db")]),
                ("worker", &[]),
            ],
        );
        assert_eq!(deploy_order(&e).unwrap(), ["Postgres", "worker", "api", "web"]);
    }

    #[test]
    fn services_referring_to_each_other_still_get_an_order() {
        let e = env(&[], &[("a", &[("X", "${{b.Y}}")]), ("b", &[("Y", "1"), ("Z", "${{a.X}}")])]);
        assert_eq!(deploy_order(&e).unwrap(), ["a", "b"]);
        assert_eq!(resolve_service(&e, "b").unwrap()["Z"], "1");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Variables v0..vn spread over three services; vi may refer only to vj with j < i,
        /// so the graph is acyclic and the expected value is computable bottom-up.
        fn dag() -> impl Strategy<Value = Vec<(usize, String, Vec<usize>)>> {
            (1usize..24).prop_flat_map(|n| {
                let vars: Vec<_> = (0..n)
                    .map(|i| (0usize..3, "[a-z]{0,3}", proptest::collection::vec(0..i.max(1), 0..3)))
                    .collect();
                vars
            })
            .prop_map(|vars| {
                vars.into_iter()
                    .enumerate()
                    .map(|(i, (svc, text, refs))| (svc, text, if i == 0 { vec![] } else { refs }))
                    .collect()
            })
        }

        fn build(vars: &[(usize, String, Vec<usize>)], back_edge: Option<(usize, usize)>) -> Environment {
            let mut e = Environment::default();
            for s in 0..3 {
                e.services.insert(format!("s{s}"), BTreeMap::new());
            }
            for (i, (svc, text, refs)) in vars.iter().enumerate() {
                let mut value = text.clone();
                let mut all: Vec<usize> = refs.clone();
                if let Some((from, to)) = back_edge {
                    if from == i {
                        all.push(to);
                    }
                }
                for j in all {
                    value.push_str(&format!("${{{{s{}.V{j}}}}}", vars[j].0));
                }
                e.services.get_mut(&format!("s{svc}")).unwrap().insert(format!("V{i}"), value);
            }
            e
        }

        proptest! {
            #[test]
            fn acyclic_graphs_resolve_to_the_bottom_up_value(vars in dag()) {
                let e = build(&vars, None);
                let mut expected: Vec<String> = Vec::new();
                for (_, text, refs) in &vars {
                    let mut v = text.clone();
                    for &j in refs { v.push_str(&expected[j]); }
                    expected.push(v);
                }
                for s in 0..3 {
                    let got = resolve_service(&e, &format!("s{s}")).unwrap();
                    for (name, value) in got {
                        let i: usize = name[1..].parse().unwrap();
                        prop_assert_eq!(&value, &expected[i]);
                    }
                }
                prop_assert!(check(&e).is_ok());
                prop_assert_eq!(deploy_order(&e).unwrap().len(), 3);
            }

            #[test]
            fn a_back_edge_onto_a_path_makes_a_cycle_reported_with_a_closed_path(vars in dag(), pick in any::<prop::sample::Index>()) {
                // Choose i with a reference i -> j; add j -> i: a cycle through i and j.
                let with_refs: Vec<(usize, usize)> = vars.iter().enumerate()
                    .flat_map(|(i, (_, _, refs))| refs.iter().map(move |&j| (i, j))).collect();
                prop_assume!(!with_refs.is_empty());
                let (i, j) = with_refs[pick.index(with_refs.len())];
                let e = build(&vars, Some((j, i)));
                match check(&e) {
                    Err(ResolveError::Cycle { path }) => {
                        prop_assert!(path.len() >= 2);
                        prop_assert_eq!(path.first(), path.last());
                    }
                    other => prop_assert!(false, "expected a cycle, got {:?}", other),
                }
            }
        }
    }
}
