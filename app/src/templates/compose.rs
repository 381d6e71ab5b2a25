//! Importing a docker-compose file written in Coolify's or Dokploy's conventions into the
//! template format, mechanically. What the format cannot hold (host ports, privileged
//! containers, networks, Traefik labels, builds, bind mounts…) is listed in the report, never
//! silently dropped.
//!
//! Values: `${X:-default}` becomes an input with a default, `${X:?message}` a required input,
//! `${X}` an optional input; Coolify's generated values (`SERVICE_PASSWORD_X`,
//! `SERVICE_PASSWORD_64_X`, `SERVICE_USER_X`, `SERVICE_BASE64_X`, `SERVICE_BASE64_64_X`,
//! `SERVICE_HEX_32_X`, `SERVICE_URL_X[_PORT]`, `SERVICE_FQDN_X[_PORT]`) become generators
//! shared by name (URLs: the service's public URL); Dokploy's helpers (`${password:32}`,
//! `${base64:32}`, `${hash:32}`, `${uuid}`, `${username}`, `${domain}`) become generated
//! inputs too. Every input is a shared variable, referred to as `${{shared.NAME}}`.

use super::{Condition, Dependency, Generate, Healthcheck, Input, Meta, Restart, ServiceSpec, Source, Spec, Volume, FORMAT_VERSION};
use serde_json::Value;
use std::collections::BTreeMap;

/// A converted template and what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub spec: Spec,
    pub report: Vec<String>,
}

/// Keys of a compose service that the format cannot represent, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("privileged", "privileged containers are never run"),
    ("cap_add", "extra kernel capabilities are never granted"),
    ("devices", "host devices are never passed through"),
    ("network_mode", "services share their environment's private network"),
    ("networks", "services share their environment's private network"),
    ("labels", "labels (Traefik routing and the like) do not apply: domains route traffic"),
    ("build", "images are built elsewhere: use an image, or a git source"),
    ("env_file", "variables come from the template, not from files on a host"),
    ("pid", "a service never shares the host's processes"),
    ("ipc", "a service never shares the host's IPC"),
    ("security_opt", "security options are the platform's"),
    ("sysctls", "kernel settings are the platform's"),
    ("ulimits", "limits are the service's CPU, memory and process settings"),
    ("extra_hosts", "host names come from the private network"),
    ("secrets", "compose secrets: use generated inputs"),
    ("configs", "compose configs: use files"),
    ("container_name", "names come from the service"),
    ("hostname", "names come from the service"),
    ("user", "each project runs as its own unprivileged user"),
    ("tmpfs", "a private /tmp is always there"),
    ("stop_grace_period", "the platform's grace period applies"),
];

struct Converter {
    inputs: Vec<Input>,
    report: Vec<String>,
    services: Vec<String>,
    generated: usize,
}

impl Converter {
    fn add_input(&mut self, input: Input) {
        match self.inputs.iter_mut().find(|i| i.name == input.name) {
            // The same name used twice: keep one input; a default or a requirement wins.
            Some(existing) => {
                if existing.default.is_none() && input.default.is_some() {
                    existing.default = input.default;
                }
                existing.required |= input.required;
            }
            None => self.inputs.push(input),
        }
    }

    fn generated(&mut self, name: &str, generate: Generate) -> String {
        self.add_input(Input { name: name.to_string(), description: String::new(), kind: None, default: None, required: false, generate: Some(generate), secret: true });
        format!("${{{{shared.{name}}}}}")
    }

    /// Coolify's magic names; `None` when `var` is not one.
    fn coolify(&mut self, var: &str) -> Option<String> {
        let rest = var.strip_prefix("SERVICE_")?;
        let (kind, tail) = rest.split_once('_')?;
        let (length, _) = match tail.split_once('_') {
            Some((n, name)) if n.chars().all(|c| c.is_ascii_digit()) => (n.parse::<u32>().ok(), name),
            _ => (None, tail),
        };
        Some(match kind {
            "PASSWORD" => self.generated(var, Generate::Password { length: length.unwrap_or(32).clamp(8, 256) }),
            "USER" => self.generated(var, Generate::Username { length: 12 }),
            "BASE64" | "REALBASE64" => self.generated(var, Generate::Base64 { length: length.unwrap_or(32).clamp(8, 256) }),
            "HEX" => self.generated(var, Generate::Hex { length: length.unwrap_or(32).clamp(8, 256) }),
            "URL" | "FQDN" => {
                // SERVICE_URL_APP or SERVICE_URL_APP_8080: the public URL of the service named so.
                let target = tail.rsplit_once('_').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(tail, |(n, _)| n);
                match self.services.iter().find(|s| s.to_ascii_uppercase().replace('-', "_") == target) {
                    Some(s) => format!("${{{{{s}.ROUNDHOUSE_PUBLIC_URL}}}}"),
                    None => {
                        self.report.push(format!("{var}: names no service of this file; left as an input"));
                        return None;
                    }
                }
            }
            _ => return None,
        })
    }

    /// Dokploy's helpers: `password:32`, `base64:32`, `hash:32`, `uuid`, `username`, `domain`.
    fn dokploy(&mut self, inner: &str) -> Option<String> {
        let (kind, arg) = inner.split_once(':').map_or((inner, None), |(k, a)| (k, a.parse::<u32>().ok()));
        let generate = match kind {
            "password" => Generate::Password { length: arg.unwrap_or(32).clamp(8, 256) },
            "base64" => Generate::Base64 { length: arg.unwrap_or(32).clamp(8, 256) },
            "hash" => Generate::Hex { length: arg.unwrap_or(32).clamp(8, 256) },
            "uuid" => Generate::Uuid,
            "username" => Generate::Username { length: 12 },
            "domain" => return Some("${{ROUNDHOUSE_PUBLIC_URL}}".into()),
            _ => return None,
        };
        self.generated += 1;
        let name = format!("GENERATED_{}_{}", kind.to_ascii_uppercase(), self.generated);
        Some(self.generated(&name, generate))
    }

    /// One compose value (`postgres://${DB_USER:-app}:${SERVICE_PASSWORD_DB}@db/app`) in the
    /// template's language.
    fn value(&mut self, raw: &str) -> String {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    out.push_str(&rest[i..]);
                    rest = "";
                    break;
                };
                out.push_str(&self.expression(&body[..end]));
                rest = &body[end + 1..];
            } else {
                let n = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                if n == 0 {
                    out.push('$');
                } else {
                    out.push_str(&self.expression(&after[..n]));
                }
                rest = &after[n..];
            }
        }
        out.push_str(rest);
        out
    }

    fn expression(&mut self, expr: &str) -> String {
        const HELPERS: &[&str] = &["password", "base64", "hash", "uuid", "username", "domain"];
        if HELPERS.contains(&expr.split(':').next().unwrap_or("")) {
            if let Some(v) = self.dokploy(expr) {
                return v;
            }
        }
        let split = expr.find([':', '-', '?']).unwrap_or(expr.len());
        let (var, op) = expr.split_at(split);
        if !crate::variables::template::is_variable_name(var) {
            return self.dokploy(expr).unwrap_or_else(|| {
                self.report.push(format!("${{{expr}}}: not a variable this importer understands; kept as text"));
                format!("${{{expr}}}")
            });
        }
        if op.is_empty() {
            if let Some(v) = self.coolify(var) {
                return v;
            }
        }
        let op = op.strip_prefix(':').unwrap_or(op);
        let input = match op.chars().next() {
            Some('-') => Input { name: var.into(), description: String::new(), kind: None, default: Some(op[1..].to_string()).filter(|d| !d.is_empty()), required: false, generate: None, secret: false },
            Some('?') => {
                let message = op[1..].trim();
                Input { name: var.into(), description: message.to_string(), kind: None, default: None, required: true, generate: None, secret: false }
            }
            _ => Input { name: var.into(), description: String::new(), kind: None, default: None, required: false, generate: None, secret: false },
        };
        self.add_input(input);
        format!("${{{{shared.{var}}}}}")
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A command as one shell line (a list is quoted word by word).
fn command(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(text)
                .map(|p| if p.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) && !p.is_empty() { p } else { format!("'{}'", p.replace('\'', "'\\''")) })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// `10s`, `1m30s`, `500ms` → whole seconds (at least 1).
fn seconds(v: &Value) -> Option<u32> {
    let s = text(v)?;
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'h' => n * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n / 1000.0
            }
            'm' => n * 60.0,
            's' => n,
            _ => return None,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    Some((total.ceil() as u32).max(1))
}

/// `512M`, `1g`, `268435456` → MB.
fn megabytes(v: &Value) -> Option<u32> {
    let s = text(v)?.to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().ok()?;
    let mb = match unit {
        "g" => n * 1024.0,
        "m" => n,
        "k" => n / 1024.0,
        "" => n / (1024.0 * 1024.0),
        _ => return None,
    };
    Some(mb.ceil() as u32)
}

fn image_source(image: &str) -> Source {
    match image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
        Some((name, tag)) => Source::Image { image: name.to_string(), tag: tag.to_string() },
        None => Source::Image { image: image.to_string(), tag: "latest".into() },
    }
}

/// Converts a compose file into a template with the given slug and name.
pub fn import(yaml: &str, slug: &str, name: &str) -> Result<Imported, String> {
    let doc: Value = serde_saphyr::from_str(yaml).map_err(|e| format!("not a YAML document: {e}"))?;
    let services = doc.get("services").and_then(Value::as_object).ok_or("the file has no services")?;
    let named_volumes: Vec<String> = doc.get("volumes").and_then(Value::as_object).map(|v| v.keys().cloned().collect()).unwrap_or_default();
    let mut c = Converter { inputs: vec![], report: vec![], services: services.keys().cloned().collect(), generated: 0 };
    let mut out = Vec::new();
    for (service_name, svc) in services {
        let Some(svc) = svc.as_object() else { continue };
        let report = |c: &mut Converter, what: String| c.report.push(format!("{service_name}: {what}"));
        for (key, why) in UNSUPPORTED {
            if svc.contains_key(*key) {
                report(&mut c, format!("{key}: not carried over ({why})"));
            }
        }
        let source = match svc.get("image").and_then(text) {
            Some(image) => image_source(&c.value(&image)),
            None => {
                report(&mut c, "has no image: left out (give it an image, or add it as a git service)".into());
                continue;
            }
        };
        let start = match (svc.get("entrypoint").and_then(command), svc.get("command").and_then(command)) {
            (Some(e), Some(cmd)) => Some(format!("{e} {cmd}")),
            (e, cmd) => e.or(cmd),
        }
        .map(|s| c.value(&s));
        let mut env = BTreeMap::new();
        match svc.get("environment") {
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let v = text(v).unwrap_or_default();
                    env.insert(k.clone(), c.value(&v));
                }
            }
            Some(Value::Array(list)) => {
                for item in list.iter().filter_map(text) {
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_string(), c.value(v));
                }
            }
            _ => {}
        }
        // Coolify lists a magic name alone (`- SERVICE_FQDN_APP_3000`) to give the service a URL.
        env.retain(|k, v| {
            let magic = k.starts_with("SERVICE_") && v.is_empty();
            !magic
        });
        let mut port = None;
        if let Some(ports) = svc.get("ports").and_then(Value::as_array) {
            for p in ports.iter().filter_map(text) {
                let container = p.rsplit(':').next().unwrap_or(&p).split('/').next().unwrap_or("").to_string();
                if p.contains(':') {
                    report(&mut c, format!("ports: {p}: a host port is not carried over (the service gets a domain and a private port)"));
                }
                if port.is_none() {
                    port = container.parse::<u16>().ok();
                }
            }
        }
        if port.is_none() {
            port = svc.get("expose").and_then(Value::as_array).and_then(|e| e.first()).and_then(text).and_then(|p| p.parse().ok());
        }
        let mut volumes = Vec::new();
        for v in svc.get("volumes").and_then(Value::as_array).into_iter().flatten() {
            let (src, target) = match v {
                Value::String(s) => {
                    let mut parts = s.splitn(3, ':');
                    (parts.next().unwrap_or("").to_string(), parts.next().map(str::to_string))
                }
                Value::Object(o) => (o.get("source").and_then(text).unwrap_or_default(), o.get("target").and_then(text)),
                _ => continue,
            };
            match target {
                Some(t) if named_volumes.contains(&src) || (!src.contains('/') && !src.starts_with('.') && !src.is_empty()) => {
                    volumes.push(Volume { mount: t, size_gb: 1 })
                }
                Some(t) => report(&mut c, format!("volumes: {src}:{t}: a folder of the host is never mounted (use a volume, or files)")),
                None => volumes.push(Volume { mount: src, size_gb: 1 }),
            }
        }
        let mut depends_on = Vec::new();
        match svc.get("depends_on") {
            Some(Value::Array(list)) => depends_on.extend(list.iter().filter_map(text).map(|s| Dependency { service: s, condition: Condition::Started })),
            Some(Value::Object(map)) => {
                for (dep, how) in map {
                    let condition = match how.get("condition").and_then(text).as_deref() {
                        Some("service_healthy") => Condition::Healthy,
                        Some("service_completed_successfully") => {
                            report(&mut c, format!("depends_on: {dep}: waiting for it to complete becomes waiting for it to start"));
                            Condition::Started
                        }
                        _ => Condition::Started,
                    };
                    depends_on.push(Dependency { service: dep.clone(), condition });
                }
            }
            _ => {}
        }
        let healthcheck = svc.get("healthcheck").and_then(Value::as_object).filter(|h| h.get("disable") != Some(&Value::Bool(true))).and_then(|h| {
            let exec = match h.get("test")? {
                Value::Array(parts) => {
                    let parts: Vec<String> = parts.iter().filter_map(text).collect();
                    match parts.first().map(String::as_str) {
                        Some("CMD") => parts[1..].to_vec(),
                        Some("CMD-SHELL") => vec!["sh".into(), "-c".into(), parts[1..].join(" ")],
                        Some("NONE") => return None,
                        _ => parts,
                    }
                }
                Value::String(s) => vec!["sh".into(), "-c".into(), s.clone()],
                _ => return None,
            };
            Some(Healthcheck {
                http: None,
                exec: Some(exec.into_iter().map(|a| c.value(&a)).collect()),
                interval_secs: h.get("interval").and_then(seconds).unwrap_or(10).min(3600),
                timeout_secs: h.get("timeout").and_then(seconds).unwrap_or(30).min(3600),
                retries: h.get("retries").and_then(text).and_then(|r| r.parse().ok()).unwrap_or(3).clamp(1, 100),
            })
        });
        let restart = match svc.get("restart").and_then(text).as_deref() {
            Some("always" | "unless-stopped") => Some(Restart::Always),
            Some(p) if p.starts_with("on-failure") => Some(Restart::OnFailure),
            Some("no") => Some(Restart::Never),
            _ => None,
        };
        let deploy = svc.get("deploy");
        let replicas = deploy.and_then(|d| d.get("replicas")).and_then(text).and_then(|r| r.parse().ok()).unwrap_or(1u32).clamp(1, 10);
        let limits = deploy.and_then(|d| d.pointer("/resources/limits"));
        let memory_mb = limits.and_then(|l| l.get("memory")).and_then(megabytes).map(|m| m.clamp(64, 65536));
        let cpu_millis = limits.and_then(|l| l.get("cpus")).and_then(text).and_then(|c| c.parse::<f64>().ok()).map(|c| ((c * 1000.0) as u32).clamp(50, 16000));
        let mut name_ok = service_name.clone();
        if !crate::variables::template::is_service_name(&name_ok) {
            name_ok = service_name.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' { ch } else { '-' }).collect();
            report(&mut c, format!("renamed to {name_ok} (service names are letters, digits, - and _)"));
        }
        out.push(ServiceSpec {
            name: name_ok,
            source,
            build: None,
            start,
            pre_deploy: None,
            domains: if port.is_some() && svc.get("ports").is_some() { vec![super::Domain { port: None, path: "/".into() }] } else { vec![] },
            port,
            env,
            volumes,
            files: vec![],
            healthcheck,
            depends_on,
            replicas,
            cron: None,
            restart,
            cpu_millis,
            memory_mb,
        });
    }
    let spec = Spec {
        version: FORMAT_VERSION,
        template: Meta {
            slug: slug.to_string(),
            name: name.to_string(),
            summary: format!("{name}, imported from a compose file."),
            category: "imported".into(),
            tags: vec![],
            logo: None,
            readme: String::new(),
            links: vec![],
            version: None,
        },
        inputs: c.inputs,
        services: out,
    };
    Ok(Imported { spec, report: c.report })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLIFY: &str = r#"
services:
  app:
    image: ghcr.io/example/app:2.1
    command: ["serve", "--port", "3000"]
    environment:
      - SERVICE_FQDN_APP_3000
      - DATABASE_URL=postgres://${SERVICE_USER_POSTGRES}:${SERVICE_PASSWORD_POSTGRES}@postgres:5432/${POSTGRES_DB:-app}
      - SECRET_KEY=${SERVICE_BASE64_64_APP}
      - ADMIN_EMAIL=${ADMIN_EMAIL:?The first admin's email}
      - PUBLIC_URL=${SERVICE_URL_APP}
      - LITERAL=cost is $$5
    ports:
      - "8080:3000"
    volumes:
      - app-data:/data
      - ./config:/etc/app
    depends_on:
      postgres:
        condition: service_healthy
    labels:
      - traefik.enable=true
    privileged: true
    restart: unless-stopped
    deploy:
      replicas: 2
      resources:
        limits:
          memory: 512M
          cpus: "0.5"
  postgres:
    image: postgres:16-alpine
    environment:
      POSTGRES_USER: ${SERVICE_USER_POSTGRES}
      POSTGRES_PASSWORD: ${SERVICE_PASSWORD_POSTGRES}
      POSTGRES_DB: ${POSTGRES_DB:-app}
    volumes:
      - pg-data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $${POSTGRES_USER}"]
      interval: 5s
      timeout: 1m30s
      retries: 10
  builder:
    build: .
volumes:
  app-data:
  pg-data:
"#;

    #[test]
    fn a_coolify_compose_file_converts_with_a_report_of_what_did_not() {
        let Imported { spec, report } = import(COOLIFY, "demo", "Demo").unwrap();
        let app = &spec.services[0];
        assert_eq!(app.name, "app");
        assert_eq!(app.source, Source::Image { image: "ghcr.io/example/app".into(), tag: "2.1".into() });
        assert_eq!(app.start.as_deref(), Some("serve --port 3000"));
        assert_eq!(
            app.env["DATABASE_URL"],
            "postgres://${{shared.SERVICE_USER_POSTGRES}}:${{shared.SERVICE_PASSWORD_POSTGRES}}@postgres:5432/${{shared.POSTGRES_DB}}"
        );
        assert_eq!(app.env["SECRET_KEY"], "${{shared.SERVICE_BASE64_64_APP}}");
        assert_eq!(app.env["PUBLIC_URL"], "${{app.ROUNDHOUSE_PUBLIC_URL}}");
        assert_eq!(app.env["LITERAL"], "cost is $5");
        assert!(!app.env.contains_key("SERVICE_FQDN_APP_3000"));
        assert_eq!(app.port, Some(3000));
        assert_eq!(app.volumes, [Volume { mount: "/data".into(), size_gb: 1 }]);
        assert_eq!(app.depends_on, [Dependency { service: "postgres".into(), condition: Condition::Healthy }]);
        assert_eq!((app.restart, app.replicas, app.memory_mb, app.cpu_millis), (Some(Restart::Always), 2, Some(512), Some(500)));

        assert_eq!(spec.services.len(), 2, "builder has no image and is left out");
        let pg = spec.services.iter().find(|s| s.name == "postgres").unwrap();
        assert_eq!(pg.name, "postgres");
        let h = pg.healthcheck.as_ref().unwrap();
        assert_eq!(h.exec.as_deref(), Some(&["sh".to_string(), "-c".into(), "pg_isready -U ${POSTGRES_USER}".into()][..]));
        assert_eq!((h.interval_secs, h.timeout_secs, h.retries), (5, 90, 10));

        let input = |n: &str| spec.inputs.iter().find(|i| i.name == n).unwrap_or_else(|| panic!("no input {n}"));
        assert_eq!(input("SERVICE_PASSWORD_POSTGRES").generate, Some(Generate::Password { length: 32 }));
        assert_eq!(input("SERVICE_USER_POSTGRES").generate, Some(Generate::Username { length: 12 }));
        assert_eq!(input("SERVICE_BASE64_64_APP").generate, Some(Generate::Base64 { length: 64 }));
        assert_eq!((input("POSTGRES_DB").default.as_deref(), input("POSTGRES_DB").required), (Some("app"), false));
        assert!(input("ADMIN_EMAIL").required);
        assert_eq!(input("ADMIN_EMAIL").description, "The first admin's email");
        assert_eq!(spec.inputs.iter().filter(|i| i.name == "POSTGRES_DB").count(), 1, "shared by name");

        for expected in [
            "app: privileged: not carried over",
            "app: labels: not carried over",
            "app: ports: 8080:3000: a host port is not carried over",
            "app: volumes: ./config:/etc/app: a folder of the host is never mounted",
            "builder: build: not carried over",
            "builder: has no image: left out",
        ] {
            assert!(report.iter().any(|r| r.starts_with(expected)), "{expected:?} not in {report:#?}");
        }
        // The result is a valid template.
        assert_eq!(super::super::validate::validate(&spec, &[]), vec![]);
    }

    #[test]
    fn dokploy_helpers_and_plain_variables_become_inputs() {
        let yaml = r#"
services:
  web:
    image: nginx
    environment:
      TOKEN: ${password:48}
      ID: ${uuid}
      HOST: ${domain}
      PLAIN: $PLAIN_VAR
    expose: ["80"]
"#;
        let Imported { spec, report } = import(yaml, "d", "D").unwrap();
        let web = &spec.services[0];
        assert_eq!(web.source, Source::Image { image: "nginx".into(), tag: "latest".into() });
        assert_eq!(web.port, Some(80));
        assert!(web.domains.is_empty(), "exposed privately only");
        assert_eq!(web.env["HOST"], "${{ROUNDHOUSE_PUBLIC_URL}}");
        assert_eq!(web.env["PLAIN"], "${{shared.PLAIN_VAR}}");
        let token = web.env["TOKEN"].trim_start_matches("${{shared.").trim_end_matches("}}");
        let g = spec.inputs.iter().find(|i| i.name == token).unwrap();
        assert_eq!(g.generate, Some(Generate::Password { length: 48 }));
        assert!(spec.inputs.iter().any(|i| i.generate == Some(Generate::Uuid)));
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(super::super::validate::validate(&spec, &[]), vec![]);
    }

    #[test]
    fn a_file_without_services_or_not_yaml_is_refused() {
        assert!(import("just: [text", "x", "X").is_err());
        assert_eq!(import("version: '3'\n", "x", "X").unwrap_err(), "the file has no services");
    }
}
