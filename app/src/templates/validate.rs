//! Checks a template against the rules of the format. Every problem names the template, the
//! service (if any), the field and the reason, and all of them are reported at once.

use super::{Generate, Source, Spec, DATABASE_ENGINES, FORMAT_VERSION};
use crate::variables::template::{is_service_name, is_variable_name, references, Reference};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub template: String,
    pub service: Option<String>,
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.service {
            Some(s) => write!(f, "{}: service {s}: {}: {}", self.template, self.field, self.reason),
            None => write!(f, "{}: {}: {}", self.template, self.field, self.reason),
        }
    }
}

/// The most services, inputs and variables one template may have, and the longest values.
pub const MAX_SERVICES: usize = 20;
pub const MAX_INPUTS: usize = 50;
pub const MAX_ENV: usize = 100;
pub const MAX_FILE_BYTES: usize = 64 * 1024;
pub const MAX_README_BYTES: usize = 64 * 1024;
pub const MAX_LOGO_BYTES: usize = 16 * 1024;

/// Variables the platform gives every service, and those a database service adds: references
/// to them are valid without the template defining them.
pub fn builtin_variables(source: &Source) -> &'static [&'static str] {
    const COMMON: &[&str] = &[
        "PORT", "ROUNDHOUSE_SERVICE_NAME", "ROUNDHOUSE_PROJECT_NAME", "ROUNDHOUSE_ENVIRONMENT_NAME",
        "ROUNDHOUSE_PUBLIC_URL", "ROUNDHOUSE_PRIVATE_DOMAIN", "ROUNDHOUSE_PRIVATE_HOST",
    ];
    const POSTGRES: &[&str] = &[
        "PORT", "ROUNDHOUSE_SERVICE_NAME", "ROUNDHOUSE_PROJECT_NAME", "ROUNDHOUSE_ENVIRONMENT_NAME",
        "ROUNDHOUSE_PUBLIC_URL", "ROUNDHOUSE_PRIVATE_DOMAIN", "ROUNDHOUSE_PRIVATE_HOST", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
        "DATABASE_URL",
    ];
    const REDIS: &[&str] = &[
        "PORT", "ROUNDHOUSE_SERVICE_NAME", "ROUNDHOUSE_PROJECT_NAME", "ROUNDHOUSE_ENVIRONMENT_NAME",
        "ROUNDHOUSE_PUBLIC_URL", "ROUNDHOUSE_PRIVATE_DOMAIN", "ROUNDHOUSE_PRIVATE_HOST", "REDISHOST", "REDISPORT", "REDISUSER", "REDISPASSWORD",
        "REDIS_URL",
    ];
    match source {
        Source::Database { engine } if engine == "postgres" => POSTGRES,
        Source::Database { engine } if engine == "redis" => REDIS,
        _ => COMMON,
    }
}

struct Report<'a> {
    template: &'a str,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, service: Option<&str>, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            template: self.template.to_string(),
            service: service.map(str::to_string),
            field: field.into(),
            reason: reason.into(),
        });
    }
}

pub fn is_slug(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_https_url(s: &str) -> bool {
    s.strip_prefix("https://").is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
}

fn is_absolute_clean_path(p: &str) -> bool {
    p.starts_with('/') && p.len() <= 1000 && !p.contains('\0') && p.split('/').skip(1).all(|c| !c.is_empty() && c != "." && c != "..")
}

fn is_git_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("ssh://") || (s.starts_with("git@") && s.contains(':')))
        && !s.contains(char::is_whitespace)
}

/// `${{shared.NAME}}` alone: a value the user gives at deploy.
pub fn shared_input(value: &str) -> Option<&str> {
    let name = value.strip_prefix("${{shared.")?.strip_suffix("}}")?.trim();
    is_variable_name(name).then_some(name)
}

fn is_image_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c))
        && !s.ends_with(':')
}

/// Every problem of `spec`; `samples` are the bundled sample apps a `sample` source may name.
pub fn validate(spec: &Spec, samples: &[&str]) -> Vec<Problem> {
    let slug = if spec.template.slug.is_empty() { "(no slug)" } else { spec.template.slug.as_str() };
    let mut r = Report { template: slug, problems: vec![] };
    let m = &spec.template;
    if spec.version != FORMAT_VERSION {
        r.add(None, "version", format!("this platform reads version {FORMAT_VERSION} templates, not version {}", spec.version));
    }
    if !is_slug(&m.slug) {
        r.add(None, "template.slug", "use 1–63 lower-case letters, digits and -, starting with a letter or digit");
    }
    if m.name.trim().is_empty() || m.name.chars().count() > 60 {
        r.add(None, "template.name", "give a name of 1–60 characters");
    }
    if m.summary.trim().is_empty() || m.summary.chars().count() > 200 {
        r.add(None, "template.summary", "give a summary of 1–200 characters");
    }
    if !is_slug(&m.category) {
        r.add(None, "template.category", "a category is one lower-case word such as database, starter or analytics");
    }
    if m.tags.len() > 10 || m.tags.iter().any(|t| !is_slug(t)) {
        r.add(None, "template.tags", "at most 10 tags, each lower-case letters, digits and -");
    }
    if let Some(logo) = &m.logo {
        let svg = logo.trim_start().starts_with("<svg");
        if !(svg || is_https_url(logo)) {
            r.add(None, "template.logo", "a logo is an inline <svg> document or an https URL");
        } else if svg && (logo.len() > MAX_LOGO_BYTES || logo.to_ascii_lowercase().contains("<script")) {
            r.add(None, "template.logo", format!("an inline logo is at most {} KB and has no scripts", MAX_LOGO_BYTES / 1024));
        }
    }
    if m.readme.len() > MAX_README_BYTES {
        r.add(None, "template.readme", format!("the README is at most {} KB", MAX_README_BYTES / 1024));
    }
    for (i, l) in m.links.iter().enumerate() {
        if l.label.trim().is_empty() || !is_https_url(&l.url) {
            r.add(None, format!("template.links[{i}]"), "a link has a label and an https URL");
        }
    }

    // Inputs.
    if spec.inputs.len() > MAX_INPUTS {
        r.add(None, "inputs", format!("at most {MAX_INPUTS} inputs"));
    }
    let mut inputs = BTreeSet::new();
    for input in &spec.inputs {
        let field = format!("inputs.{}", input.name);
        if !is_variable_name(&input.name) {
            r.add(None, &field, "an input's name is a variable name: letters, digits and _, not starting with a digit");
        }
        if !inputs.insert(input.name.as_str()) {
            r.add(None, &field, "this input is defined twice");
        }
        match &input.generate {
            Some(g) => {
                if input.kind.is_some() || input.default.is_some() || input.required {
                    r.add(None, &field, "a generated value has no type, default or required: it is never asked for");
                }
                match g {
                    Generate::Password { length } | Generate::Hex { length } | Generate::Alnum { length } | Generate::Base64 { length } => {
                        if !(8..=256).contains(length) {
                            r.add(None, format!("{field}.length"), "a generated length is 8–256");
                        }
                    }
                    Generate::Username { length } => {
                        if !(4..=32).contains(length) {
                            r.add(None, format!("{field}.length"), "a user name is 4–32 characters");
                        }
                    }
                    Generate::Int { min, max } => {
                        if min >= max {
                            r.add(None, &field, "min must be less than max");
                        }
                    }
                    Generate::Jwt { secret, valid_days, .. } => {
                        let signer = spec.inputs.iter().find(|i| &i.name == secret);
                        match signer {
                            None => r.add(None, format!("{field}.secret"), format!("signs with {secret}, which is not an input of this template")),
                            Some(s) if matches!(s.generate, Some(Generate::Jwt { .. })) || s.name == input.name => {
                                r.add(None, format!("{field}.secret"), "a token is signed with a secret, not with another token")
                            }
                            Some(_) => {}
                        }
                        if *valid_days == 0 || *valid_days > 36500 {
                            r.add(None, format!("{field}.valid_days"), "a token is valid for 1–36500 days");
                        }
                    }
                    Generate::Uuid | Generate::Port => {}
                }
            }
            None => {
                if input.required && input.default.is_some() {
                    r.add(None, &field, "a required input has no default (the default would always be used)");
                }
            }
        }
    }

    // Services.
    if spec.services.is_empty() {
        r.add(None, "services", "a template creates at least one service");
    }
    if spec.services.len() > MAX_SERVICES {
        r.add(None, "services", format!("at most {MAX_SERVICES} services"));
    }
    let names: BTreeSet<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for s in &spec.services {
        let svc = Some(s.name.as_str());
        if !is_service_name(&s.name) {
            r.add(svc, "name", "a service name is letters, digits, - and _, starting with a letter (at most 63)");
        }
        if !seen.insert(s.name.to_ascii_lowercase()) {
            r.add(svc, "name", "two services have this name");
        }
        match &s.source {
            Source::Image { image, tag } => {
                if !is_image_name(image) {
                    r.add(svc, "source.image", format!("{image:?} is not an image name (e.g. ghost or ghcr.io/org/app)"));
                }
                if tag.is_empty() || tag.len() > 128 || !tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                    r.add(svc, "source.tag", format!("{tag:?} is not an image tag"));
                }
            }
            Source::Git { repo, dir, branch } => {
                match shared_input(repo) {
                    Some(name) if !inputs.contains(name) => {
                        r.add(svc, "source.repo", format!("refers to shared.{name}, which is not an input of this template"))
                    }
                    Some(_) => {}
                    None if !is_git_url(repo) => {
                        r.add(svc, "source.repo", "a repository is an https or ssh git URL, or ${{shared.INPUT}} to ask for one")
                    }
                    None => {}
                }
                if dir.as_deref().is_some_and(|d| d.is_empty() || d.starts_with('/') || d.split('/').any(|c| c.is_empty() || c == "." || c == "..")) {
                    r.add(svc, "source.dir", "a folder of the repository is a relative path without . or ..");
                }
                if branch.as_deref().is_some_and(|b| b.is_empty() || b.starts_with('-') || b.contains(char::is_whitespace)) {
                    r.add(svc, "source.branch", "not a branch name");
                }
            }
            Source::Database { engine } => {
                if !DATABASE_ENGINES.contains(&engine.as_str()) {
                    r.add(svc, "source.engine", format!("the platform runs {} databases; run {engine} from an image", DATABASE_ENGINES.join(" and ")));
                }
                if s.start.is_some() || s.build.is_some() {
                    r.add(svc, "start", "a database the platform runs has no build or start command");
                }
            }
            Source::Sample { name } => {
                if !samples.contains(&name.as_str()) {
                    r.add(svc, "source.name", format!("there is no bundled sample named {name:?} (there are: {})", samples.join(", ")));
                }
            }
        }
        for (field, cmd) in [("build", &s.build), ("start", &s.start), ("pre_deploy", &s.pre_deploy)] {
            if cmd.as_deref().is_some_and(|c| c.trim().is_empty() || c.len() > 4000 || c.contains('\0')) {
                r.add(svc, field, "a command is 1–4000 characters");
            }
        }
        if s.port == Some(0) {
            r.add(svc, "port", "a port is 1–65535");
        }
        if s.env.len() > MAX_ENV {
            r.add(svc, "env", format!("at most {MAX_ENV} variables"));
        }
        for (k, v) in &s.env {
            let field = format!("env.{k}");
            if !is_variable_name(k) {
                r.add(svc, &field, "a variable name is letters, digits and _, not starting with a digit");
            }
            match references(v) {
                Err(e) => r.add(svc, &field, e.to_string()),
                Ok(refs) => {
                    for reference in refs {
                        match reference {
                            Reference::Shared(n) if !inputs.contains(n.as_str()) => {
                                r.add(svc, &field, format!("refers to shared.{n}, which is not an input of this template"))
                            }
                            Reference::Service { service, name } => match spec.services.iter().find(|o| o.name == service) {
                                None => r.add(svc, &field, format!("refers to a service named {service}, which this template does not create")),
                                Some(o) if !o.env.contains_key(&name) && !builtin_variables(&o.source).contains(&name.as_str()) => {
                                    r.add(svc, &field, format!("refers to {service}.{name}, which {service} does not define"))
                                }
                                Some(_) => {}
                            },
                            Reference::Own(n) if !s.env.contains_key(&n) && !builtin_variables(&s.source).contains(&n.as_str()) => {
                                r.add(svc, &field, format!("refers to {n}, which this service does not define"))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        for (i, d) in s.domains.iter().enumerate() {
            if d.port.or(s.port).is_none() {
                r.add(svc, format!("domains[{i}].port"), "say which port the domain goes to (or give the service a port)");
            }
            if d.port == Some(0) || !d.path.starts_with('/') || d.path.contains(char::is_whitespace) {
                r.add(svc, format!("domains[{i}]"), "a domain has a port 1–65535 and a path starting with /");
            }
        }
        let mut mounts = BTreeSet::new();
        for (i, v) in s.volumes.iter().enumerate() {
            if !is_absolute_clean_path(&v.mount) {
                r.add(svc, format!("volumes[{i}].mount"), "a mount path is absolute, without . or .. parts");
            }
            if !mounts.insert(v.mount.as_str()) {
                r.add(svc, format!("volumes[{i}].mount"), "two volumes are mounted here");
            }
            if !(1..=1000).contains(&v.size_gb) {
                r.add(svc, format!("volumes[{i}].size_gb"), "a volume is 1–1000 GB");
            }
        }
        for (i, f) in s.files.iter().enumerate() {
            if !is_absolute_clean_path(&f.path) {
                r.add(svc, format!("files[{i}].path"), "a file path is absolute, without . or .. parts");
            }
            if f.content.len() > MAX_FILE_BYTES {
                r.add(svc, format!("files[{i}].content"), format!("a file is at most {} KB", MAX_FILE_BYTES / 1024));
            }
        }
        if let Some(h) = &s.healthcheck {
            match (&h.http, &h.exec) {
                (Some(p), None) if !p.starts_with('/') || p.contains(char::is_whitespace) => {
                    r.add(svc, "healthcheck.http", "an HTTP health check is a path starting with /")
                }
                (None, Some(cmd)) if cmd.is_empty() || cmd.iter().any(|a| a.contains('\0')) => {
                    r.add(svc, "healthcheck.exec", "a command health check is a non-empty list of arguments")
                }
                (Some(_), Some(_)) | (None, None) => r.add(svc, "healthcheck", "a health check has either http or exec"),
                _ => {}
            }
            if !(1..=3600).contains(&h.interval_secs) || !(1..=3600).contains(&h.timeout_secs) || !(1..=100).contains(&h.retries) {
                r.add(svc, "healthcheck", "interval and timeout are 1–3600 seconds, retries 1–100");
            }
        }
        for d in &s.depends_on {
            if !names.contains(d.service.as_str()) {
                r.add(svc, "depends_on", format!("depends on {}, which this template does not create", d.service));
            } else if d.service == s.name {
                r.add(svc, "depends_on", "a service does not depend on itself");
            }
        }
        if !(1..=10).contains(&s.replicas) {
            r.add(svc, "replicas", "1–10 replicas");
        }
        if s.cron.as_deref().is_some_and(|c| !crate::services::valid_cron(c)) {
            r.add(svc, "cron", "use five cron fields, e.g. \"*/15 * * * *\"");
        }
        if s.cron.is_some() && (s.port.is_some() || !s.domains.is_empty()) {
            r.add(svc, "cron", "a cron job runs on schedule and takes no traffic: it has no port or domains");
        }
        if s.cpu_millis.is_some_and(|c| !(50..=16000).contains(&c)) {
            r.add(svc, "cpu_millis", "CPU is 50–16000 millicores");
        }
        if s.memory_mb.is_some_and(|m| !(64..=65536).contains(&m)) {
            r.add(svc, "memory_mb", "memory is 64–65536 MB");
        }
    }
    if r.problems.is_empty() && spec.deploy_order().is_none() {
        r.add(None, "services", "the services need each other in a cycle (through depends_on or references): nothing could start first");
    }
    r.problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml_text: &str) -> Vec<String> {
        let spec: Spec = toml::from_str(toml_text).expect("parses");
        validate(&spec, &["stack"]).iter().map(ToString::to_string).collect()
    }

    const HEAD: &str = r#"version = 1
        [template]
        slug = "demo"
        name = "Demo"
        summary = "A demo."
        category = "starter"
    "#;

    #[test]
    fn a_sound_template_has_no_problems() {
        let p = problems(&format!(r#"{HEAD}
            [[inputs]]
            name = "SECRET"
            generate = {{ kind = "hex", length = 64 }}
            [[inputs]]
            name = "TOKEN"
            generate = {{ kind = "jwt", secret = "SECRET" }}
            [[services]]
            name = "db"
            source = {{ kind = "database", engine = "postgres" }}
            [[services]]
            name = "api"
            source = {{ kind = "sample", name = "stack" }}
            port = 8080
            env = {{ DB = "${{{{db.DATABASE_URL}}}}", T = "${{{{shared.TOKEN}}}}", P = "${{{{PORT}}}}" }}
            depends_on = [{{ service = "db", condition = "healthy" }}]
        "#));
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn each_problem_names_the_template_service_field_and_reason() {
        let p = problems(&format!(r#"{HEAD}
            [[inputs]]
            name = "TOKEN"
            generate = {{ kind = "jwt", secret = "NOPE" }}
            [[services]]
            name = "api"
            source = {{ kind = "database", engine = "mysql" }}
            env = {{ A = "${{{{cache.URL}}}}", B = "${{{{shared.MISSING}}}}", C = "${{{{db.NOPE}}}}" }}
            depends_on = [{{ service = "ghost" }}]
            cron = "every minute"
            [[services]]
            name = "db"
            source = {{ kind = "sample", name = "nope" }}
            volumes = [{{ mount = "data" }}]
        "#));
        let expect = [
            "demo: inputs.TOKEN.secret: signs with NOPE, which is not an input of this template",
            "demo: service api: source.engine: the platform runs postgres and redis databases; run mysql from an image",
            "demo: service api: env.A: refers to a service named cache, which this template does not create",
            "demo: service api: env.B: refers to shared.MISSING, which is not an input of this template",
            "demo: service api: env.C: refers to db.NOPE, which db does not define",
            "demo: service api: depends_on: depends on ghost, which this template does not create",
            "demo: service api: cron: use five cron fields, e.g. \"*/15 * * * *\"",
            "demo: service db: source.name: there is no bundled sample named \"nope\" (there are: stack)",
            "demo: service db: volumes[0].mount: a mount path is absolute, without . or .. parts",
        ];
        assert_eq!(p, expect);
    }

    #[test]
    fn services_that_need_each_other_in_a_cycle_are_refused() {
        let p = problems(&format!(r#"{HEAD}
            [[services]]
            name = "a"
            source = {{ kind = "sample", name = "stack" }}
            env = {{ X = "${{{{b.PORT}}}}" }}
            [[services]]
            name = "b"
            source = {{ kind = "sample", name = "stack" }}
            depends_on = [{{ service = "a" }}]
        "#));
        assert_eq!(p, ["demo: services: the services need each other in a cycle (through depends_on or references): nothing could start first"]);
    }

    #[test]
    fn unknown_fields_and_newer_versions_are_errors() {
        let err = toml::from_str::<Spec>(&format!("favourite_colour = \"red\"\nservices = []\n{HEAD}")).unwrap_err().to_string();
        assert!(err.contains("favourite_colour"), "{err}");
        let p = problems(&format!("services = []\n{HEAD}").replace("version = 1", "version = 2"));
        assert!(p.contains(&"demo: version: this platform reads version 1 templates, not version 2".to_string()), "{p:?}");
        assert!(p.contains(&"demo: services: a template creates at least one service".to_string()), "{p:?}");
    }

    #[test]
    fn a_git_repository_may_be_asked_for() {
        let ok = problems(&format!(r#"{HEAD}
            [[inputs]]
            name = "REPO"
            required = true
            [[services]]
            name = "web"
            source = {{ kind = "git", repo = "${{{{shared.REPO}}}}" }}
        "#));
        assert_eq!(ok, Vec::<String>::new());
        let bad = problems(&format!(r#"{HEAD}
            [[services]]
            name = "web"
            source = {{ kind = "git", repo = "file:///etc" }}
        "#));
        assert_eq!(bad, ["demo: service web: source.repo: a repository is an https or ssh git URL, or ${{shared.INPUT}} to ask for one"]);
    }
}
