use anyhow::{bail, Context};
use secrecy::SecretString;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Dev,
    Production,
}

/// Configuration, read once from the environment at start. Every variable is documented in
/// README.md; anything secret is a `SecretString` so it cannot be printed by accident.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: RunMode,
    pub addr: SocketAddr,
    /// The URL users reach Roundhouse at; used in mails, for the Secure cookie flag and for
    /// the same-origin check.
    pub public_url: String,
    pub database_url: SecretString,
    pub data_dir: PathBuf,
    pub smtp_url: Option<SecretString>,
    pub mail_from: String,
    /// Take the client address from the rightmost `X-Forwarded-For` entry: the one our single
    /// trusted reverse proxy appended (only behind such a proxy).
    pub trust_proxy: TrustProxy,
    pub login_per_ip_per_minute: u32,
    pub login_per_account_per_minute: u32,
    /// Registrations, password-reset requests and submissions and verification mails per client
    /// address per hour, each (a target address gets `ratelimit::PER_TARGET_PER_HOUR`).
    pub account_actions_per_ip_per_hour: u32,
    pub dev_admin_email: String,
    pub json_logs: bool,
    /// 32 bytes, base64: the key variable values are encrypted with.
    pub secret_key: Option<SecretString>,
    /// Where deployed services run: `local` (processes on this machine) or `none` (this
    /// replica serves the UI and API only).
    pub runtime: RuntimeKind,
    /// Services answer at `<service>.<project>.<apps_domain>` on Roundhouse's own port.
    pub apps_domain: String,
    /// The loopback ports services are reachable at from each other (ROUNDHOUSE_PRIVATE_DOMAIN).
    pub private_ports: (u16, u16),
    /// A build that takes longer fails.
    pub build_timeout_secs: u64,
    /// How the local runtime isolates what tenants deploy.
    pub sandbox: SandboxMode,
    /// The host uids (and gids) given to projects, one each, never reused.
    pub sandbox_uids: (u32, u32),
    /// Whether sandboxed services and builds reach the internet.
    pub sandbox_outbound: bool,
    /// Host folders under which admins may deploy directory sources.
    pub source_roots: Vec<PathBuf>,
    /// The largest source archive a user may upload.
    pub upload_max_bytes: u64,
    /// Builds running at once across the platform (each service builds one at a time).
    pub build_concurrency: usize,
    /// Memory, CPU and disk a build may use.
    pub build_memory_mb: u32,
    pub build_cpu_millis: u32,
    pub build_disk_mb: u64,
    /// Files and folders one build may make (`ROUNDHOUSE_BUILD_MAX_FILES`).
    pub build_max_files: u64,
    /// Live streams one user may hold open at once (`ROUNDHOUSE_STREAMS_PER_USER`).
    pub streams_per_user: usize,
    /// Builds kept per service for rollbacks besides those in use (`ROUNDHOUSE_BUILDS_KEPT`).
    pub builds_kept: u32,
    /// PEM certificates git clones of builds trust besides the system's (an internal CA).
    pub git_ca_file: Option<PathBuf>,
    /// Stripe, when `STRIPE_SECRET_KEY` is set; otherwise the local ledger bills.
    pub stripe: Option<StripeConfig>,
    /// Days a failed payment may stay unpaid before the account's services stop.
    pub billing_grace_days: u32,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>`.
    pub metrics_token: Option<SecretString>,
}

/// How Roundhouse bills through Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: SecretString,
    /// Checks the signature of `POST /webhooks/stripe`.
    pub webhook_secret: SecretString,
    /// Stripe's API (tests point it at a local fake).
    pub api_base: Option<String>,
    /// The recurring price of each paid plan (`STRIPE_PLAN_PRICES=hobby=price_…,pro=price_…`).
    pub plan_prices: Vec<(String, String)>,
    /// Metered prices added to every subscription (`STRIPE_USAGE_PRICES=price_…,price_…`).
    pub usage_prices: Vec<String>,
    /// Meter event names are this and the resource: `roundhouse_cpu`, `roundhouse_memory`, …
    pub meter_prefix: String,
}

impl StripeConfig {
    pub fn price_of(&self, plan_id: &str) -> Option<&str> {
        self.plan_prices.iter().find(|(p, _)| p == plan_id).map(|(_, price)| price.as_str())
    }
    pub fn plan_of(&self, price_id: &str) -> Option<&str> {
        self.plan_prices.iter().find(|(_, p)| p == price_id).map(|(plan, _)| plan.as_str())
    }

    fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(secret_key) = var("STRIPE_SECRET_KEY") else { return Ok(None) };
        let webhook_secret = var("STRIPE_WEBHOOK_SECRET")
            .context("STRIPE_WEBHOOK_SECRET is not set: Stripe's events could not be checked (find it with the webhook endpoint in Stripe's dashboard)")?;
        let prices = var("STRIPE_PLAN_PRICES").context("STRIPE_PLAN_PRICES is not set: say which Stripe price each paid plan is, like hobby=price_123,pro=price_456")?;
        let mut plan_prices = Vec::new();
        for pair in prices.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((plan, price)) if !plan.trim().is_empty() && price.trim().starts_with("price_") => {
                    plan_prices.push((plan.trim().to_string(), price.trim().to_string()))
                }
                _ => bail!("STRIPE_PLAN_PRICES: {pair:?} is not plan=price_…"),
            }
        }
        let usage_prices = var("STRIPE_USAGE_PRICES")
            .map(|v| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect::<Vec<_>>())
            .unwrap_or_default();
        if let Some(bad) = usage_prices.iter().find(|p| !p.starts_with("price_")) {
            bail!("STRIPE_USAGE_PRICES: {bad:?} is not a Stripe price id (price_…)");
        }
        let api_base = var("STRIPE_API_BASE");
        if let Some(base) = &api_base {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                bail!("STRIPE_API_BASE must be a URL, not {base:?}");
            }
        }
        Ok(Some(StripeConfig {
            secret_key: SecretString::from(secret_key),
            webhook_secret: SecretString::from(webhook_secret),
            api_base,
            plan_prices,
            usage_prices,
            meter_prefix: var("STRIPE_METER_PREFIX").unwrap_or_else(|| "roundhouse_".into()),
        }))
    }
}

/// `ROUNDHOUSE_SANDBOX`: `on` (the default) runs every build and instance in a sandbox of its
/// own and refuses deployments when one cannot be set up; `off` is a single-user mode that runs
/// them as the platform's own user, for admins' projects only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Local,
    /// A Kubernetes cluster (`KUBECONFIG` or the service account; `ROUNDHOUSE_K8S_*`).
    Kubernetes,
    None,
}

/// How services of an environment reach each other, which depends on where they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// On the platform's machine: each service's private port on its network's loopback.
    Loopback,
    /// In a cluster: each service's name resolves to its Service, at the port it listens on.
    ServiceName,
}

impl RuntimeKind {
    pub fn addressing(self) -> Addressing {
        match self {
            RuntimeKind::Kubernetes => Addressing::ServiceName,
            RuntimeKind::Local | RuntimeKind::None => Addressing::Loopback,
        }
    }
}

fn parse_port_range(name: &str, default: (u16, u16)) -> anyhow::Result<(u16, u16)> {
    let Some(v) = var(name) else { return Ok(default) };
    let parsed = v.split_once('-').and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((a, b)) if a >= 1024 && a < b => Ok((a, b)),
        _ => bail!("{name} must look like 20000-29999 (from 1024 up, low before high), not {v:?}"),
    }
}

fn parse_uid_range(name: &str, default: (u32, u32)) -> anyhow::Result<(u32, u32)> {
    let Some(v) = var(name) else { return Ok(default) };
    let parsed = v.split_once('-').and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)));
    match parsed {
        // Below 65536 live the system's own users; the top of the range is the overflow uid.
        Some((a, b)) if a >= 65536 && a < b && b < u32::MAX - 1 => Ok((a, b)),
        _ => bail!("{name} must look like 400000-499999 (from 65536 up, low before high), not {v:?}"),
    }
}

/// Absolute folders separated by `:`; the data folder and anything holding it are refused.
fn parse_roots(name: &str, data_dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let Some(v) = var(name) else { return Ok(Vec::new()) };
    let data = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut roots = Vec::new();
    for part in v.split(':').filter(|p| !p.trim().is_empty()) {
        let root = PathBuf::from(part.trim());
        if !root.is_absolute() {
            bail!("{name}: {part:?} is not an absolute path");
        }
        let canonical = root.canonicalize().unwrap_or_else(|_| root.clone());
        if data.starts_with(&canonical) || canonical.starts_with(&data) {
            bail!("{name}: {part:?} overlaps the data folder {}: tenants' sources can never include the platform's own files", data.display());
        }
        roots.push(canonical);
    }
    Ok(roots)
}

/// Dev conveniences (the mail outbox page, the generated admin) exist only when asked for, or
/// on a loopback address no one else can reach.
fn run_mode(env: Option<&str>, addr: &SocketAddr) -> anyhow::Result<RunMode> {
    Ok(match env {
        None if addr.ip().is_loopback() => RunMode::Dev,
        None => RunMode::Production,
        Some("dev" | "development") => RunMode::Dev,
        Some("prod" | "production") => RunMode::Production,
        Some(other) => bail!("ROUNDHOUSE_ENV must be dev or production, not {other:?}"),
    })
}

/// A PEM file of CA certificates: it must exist and hold at least one certificate.
fn parse_ca_file(name: &str) -> anyhow::Result<Option<PathBuf>> {
    var(name).map(|v| ca_file(name, &v)).transpose()
}

fn ca_file(name: &str, value: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(value.trim());
    let pem = std::fs::read_to_string(&path).with_context(|| format!("{name}: cannot read {}", path.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!("{name}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(path)
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_bool(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => bail!("{name} must be true or false, not {other:?}"),
    }
}

fn parse_u32(name: &str, default: u32) -> anyhow::Result<u32> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().with_context(|| format!("{name} must be a whole number, not {v:?}")),
    }
}

/// Which reverse proxies' word on `X-Forwarded-For` counts (`ROUNDHOUSE_TRUST_PROXY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustProxy {
    /// None: the client is the connection's peer, the header is ignored.
    None,
    /// This many proxies of the operator's, one behind the other, each appending the address it
    /// received from: the client is that many entries from the right (`true` is 1).
    Hops(usize),
    /// Proxies at these networks: the header counts only when the peer is one of them, and the
    /// client is the rightmost entry not in them.
    Networks(Vec<ipnet::IpNet>),
}

impl TrustProxy {
    fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        let value = value.map(str::trim).unwrap_or("");
        Ok(match value.to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "off" => TrustProxy::None,
            "true" | "yes" | "on" => TrustProxy::Hops(1),
            v if v.chars().all(|c| c.is_ascii_digit()) => match v.parse::<usize>() {
                Ok(n @ 1..=10) => TrustProxy::Hops(n),
                _ => bail!("ROUNDHOUSE_TRUST_PROXY: a hop count is 1 to 10, not {v}"),
            },
            _ => TrustProxy::Networks(
                value
                    .split(',')
                    .map(|n| {
                        let n = n.trim();
                        n.parse::<ipnet::IpNet>()
                            .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| anyhow::anyhow!("ROUNDHOUSE_TRUST_PROXY: {n:?} is not a hop count, true/false, or a network like 10.0.0.0/8"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
        })
    }

    /// The client's address given the connection's `peer` and the `X-Forwarded-For` entries
    /// (all headers' entries, left to right). A forged entry the client wrote left of what the
    /// trusted proxies appended never decides it.
    pub fn client(&self, peer: Option<std::net::IpAddr>, forwarded: &[&str]) -> Option<std::net::IpAddr> {
        let parse = |e: &str| {
            let e = e.trim();
            e.parse::<std::net::IpAddr>().ok().or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        };
        match self {
            TrustProxy::None => peer,
            TrustProxy::Hops(n) => forwarded.len().checked_sub(*n).and_then(|i| parse(forwarded[i])).or(peer),
            TrustProxy::Networks(nets) => {
                let trusted = |ip: &std::net::IpAddr| nets.iter().any(|n| n.contains(ip));
                let Some(p) = peer.filter(trusted) else { return peer };
                let mut client = p;
                for entry in forwarded.iter().rev() {
                    match parse(entry) {
                        Some(ip) if trusted(&ip) => client = ip,
                        Some(ip) => return Some(ip),
                        // Garbage where a proxy's entry should be: stop at the last trusted hop.
                        None => return Some(client),
                    }
                }
                Some(client)
            }
        }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let addr: SocketAddr = var("ROUNDHOUSE_ADDR")
            .unwrap_or_else(|| "127.0.0.1:3000".into())
            .parse()
            .context("ROUNDHOUSE_ADDR must look like 127.0.0.1:3000")?;
        let mode = run_mode(var("ROUNDHOUSE_ENV").as_deref(), &addr)?;
        let public_url = var("ROUNDHOUSE_PUBLIC_URL")
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("ROUNDHOUSE_PUBLIC_URL must start with http:// or https://");
        }
        let database_url = var("DATABASE_URL").context(
            "DATABASE_URL is not set: `make run` starts a project-local PostgreSQL and sets it for you",
        )?;
        let data_dir = PathBuf::from(var("ROUNDHOUSE_DATA_DIR").unwrap_or_else(|| ".data".into()));
        let json_logs = match var("ROUNDHOUSE_LOG_FORMAT").as_deref() {
            Some("json") => true,
            Some("pretty") => false,
            None => mode == RunMode::Production,
            Some(other) => bail!("ROUNDHOUSE_LOG_FORMAT must be json or pretty, not {other:?}"),
        };
        Config {
            mode,
            addr,
            public_url,
            database_url: SecretString::from(database_url),
            data_dir: data_dir.clone(),
            smtp_url: var("SMTP_URL").map(SecretString::from),
            mail_from: var("MAIL_FROM").unwrap_or_else(|| "Roundhouse <no-reply@roundhouse.localhost>".into()),
            trust_proxy: TrustProxy::parse(var("ROUNDHOUSE_TRUST_PROXY").as_deref())?,
            login_per_ip_per_minute: parse_u32("ROUNDHOUSE_LOGIN_PER_IP_PER_MINUTE", 20)?,
            login_per_account_per_minute: parse_u32("ROUNDHOUSE_LOGIN_PER_ACCOUNT_PER_MINUTE", 5)?,
            account_actions_per_ip_per_hour: parse_u32("ROUNDHOUSE_ACCOUNT_ACTIONS_PER_IP_PER_HOUR", 10)?,
            dev_admin_email: var("ROUNDHOUSE_DEV_ADMIN_EMAIL").unwrap_or_else(|| "admin@roundhouse.localhost".into()),
            json_logs,
            secret_key: var("ROUNDHOUSE_SECRET_KEY").map(SecretString::from),
            runtime: match var("ROUNDHOUSE_RUNTIME").as_deref() {
                None | Some("local") => RuntimeKind::Local,
                Some("kubernetes") => RuntimeKind::Kubernetes,
                Some("none") => RuntimeKind::None,
                Some(other) => bail!("ROUNDHOUSE_RUNTIME must be local, kubernetes or none, not {other:?}"),
            },
            apps_domain: var("ROUNDHOUSE_APPS_DOMAIN").unwrap_or_else(|| "localhost".into()).trim_matches('.').to_string(),
            private_ports: parse_port_range("ROUNDHOUSE_PRIVATE_PORTS", (20000, 29999))?,
            build_timeout_secs: parse_u32("ROUNDHOUSE_BUILD_TIMEOUT_SECS", 900)? as u64,
            sandbox: match var("ROUNDHOUSE_SANDBOX").as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("on" | "true" | "1") => SandboxMode::On,
                Some("off" | "false" | "0") => SandboxMode::Off,
                Some(other) => bail!("ROUNDHOUSE_SANDBOX must be on or off, not {other:?}"),
            },
            sandbox_uids: parse_uid_range("ROUNDHOUSE_SANDBOX_UIDS", (400_000, 499_999))?,
            sandbox_outbound: parse_bool("ROUNDHOUSE_SANDBOX_OUTBOUND", true)?,
            source_roots: parse_roots("ROUNDHOUSE_SOURCE_ROOTS", &data_dir)?,
            upload_max_bytes: u64::from(parse_u32("ROUNDHOUSE_UPLOAD_MAX_MB", 50)?) * 1024 * 1024,
            build_concurrency: parse_u32("ROUNDHOUSE_BUILD_CONCURRENCY", 2)?.max(1) as usize,
            build_memory_mb: parse_u32("ROUNDHOUSE_BUILD_MEMORY_MB", 2048)?.max(64),
            build_cpu_millis: parse_u32("ROUNDHOUSE_BUILD_CPU_MILLIS", 1000)?.max(100),
            build_disk_mb: u64::from(parse_u32("ROUNDHOUSE_BUILD_DISK_MB", 4096)?.max(16)),
            build_max_files: u64::from(parse_u32("ROUNDHOUSE_BUILD_MAX_FILES", 500_000)?.max(1000)),
            builds_kept: parse_u32("ROUNDHOUSE_BUILDS_KEPT", 5)?.max(1),
            streams_per_user: parse_u32("ROUNDHOUSE_STREAMS_PER_USER", 32)?.max(1) as usize,
            git_ca_file: parse_ca_file("ROUNDHOUSE_GIT_CA_FILE")?,
            stripe: StripeConfig::from_env()?,
            billing_grace_days: parse_u32("ROUNDHOUSE_BILLING_GRACE_DAYS", 7)?,
            metrics_token: var("ROUNDHOUSE_METRICS_TOKEN").map(SecretString::from),
        }
        .checked()
    }

    /// Refuses a configuration whose own host a tenant could be given: a service answers at
    /// `<service>.<project>.<apps domain>`, so a platform at such a name would share its
    /// origin (and cookies) with someone's app.
    fn checked(self) -> anyhow::Result<Self> {
        let host = self.public_host().rsplit_once(':').map_or(self.public_host(), |(h, _)| h).to_ascii_lowercase();
        if let Some(prefix) = host.strip_suffix(&format!(".{}", self.apps_domain.to_ascii_lowercase())) {
            if prefix.contains('.') {
                bail!(
                    "ROUNDHOUSE_PUBLIC_URL's host {host} has the shape of a tenant's service host under ROUNDHOUSE_APPS_DOMAIN ({}): \
                     a deployed service could be given it. Serve the platform outside the apps domain, or at most one label under it.",
                    self.apps_domain
                );
            }
        }
        Ok(self)
    }

    /// A configuration for tests: dev mode, outbox mail, generous limits.
    pub fn for_tests(database_url: &str) -> Self {
        Config {
            mode: RunMode::Dev,
            addr: "127.0.0.1:3000".parse().expect("static address"),
            public_url: "http://127.0.0.1:3000".into(),
            database_url: SecretString::from(database_url.to_string()),
            data_dir: std::env::temp_dir().join("roundhouse-tests"),
            smtp_url: None,
            mail_from: "Roundhouse <no-reply@roundhouse.localhost>".into(),
            trust_proxy: TrustProxy::None,
            login_per_ip_per_minute: 20,
            login_per_account_per_minute: 5,
            account_actions_per_ip_per_hour: 1000,
            dev_admin_email: "admin@roundhouse.localhost".into(),
            json_logs: false,
            secret_key: None,
            runtime: RuntimeKind::None,
            apps_domain: "localhost".into(),
            private_ports: (20000, 29999),
            build_timeout_secs: 120,
            sandbox: SandboxMode::On,
            sandbox_uids: (400_000, 499_999),
            sandbox_outbound: false,
            source_roots: Vec::new(),
            upload_max_bytes: 8 * 1024 * 1024,
            build_concurrency: 2,
            build_memory_mb: 1024,
            build_cpu_millis: 1000,
            build_disk_mb: 512,
            build_max_files: 500_000,
            builds_kept: 5,
            streams_per_user: 32,
            git_ca_file: None,
            stripe: None,
            billing_grace_days: 7,
            metrics_token: None,
        }
    }

    pub fn is_dev(&self) -> bool {
        self.mode == RunMode::Dev
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The session cookie's name: over https `__Host-` prefixed, so the browser keeps it
    /// Secure, host-only and on `/`, and a cookie a tenant's subdomain sets for a parent domain
    /// can never stand in for it.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure_cookies() {
            "__Host-rh_session"
        } else {
            "rh_session"
        }
    }

    /// The URL a service answers at through the proxy.
    pub fn service_url(&self, service: &str, environment: &str, project_slug: &str) -> String {
        let (scheme, rest) = self.public_url.split_once("://").unwrap_or(("http", &self.public_url));
        let port = rest.split('/').next().unwrap_or(rest).rsplit_once(':').map(|(_, p)| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://{}{port}", self.service_host(service, environment, project_slug))
    }

    /// `web.shop.localhost` for production, `web-staging.shop.localhost` for other environments.
    pub fn service_host(&self, service: &str, environment: &str, project_slug: &str) -> String {
        let service = service.to_ascii_lowercase().replace('_', "-");
        let label = if environment == "production" { service } else { format!("{service}-{}", environment.to_ascii_lowercase()) };
        format!("{label}.{project_slug}.{}", self.apps_domain)
    }

    /// `host[:port]` of the public URL, for the same-origin check.
    pub fn public_host(&self) -> &str {
        let rest = self.public_url.split_once("://").map(|(_, r)| r).unwrap_or(&self.public_url);
        rest.split('/').next().unwrap_or(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_conveniences_exist_only_on_loopback_or_when_asked_for() {
        let loopback: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert_eq!(run_mode(None, &loopback).unwrap(), RunMode::Dev);
        assert_eq!(run_mode(None, &public).unwrap(), RunMode::Production);
        assert_eq!(run_mode(Some("dev"), &public).unwrap(), RunMode::Dev);
        assert_eq!(run_mode(Some("production"), &loopback).unwrap(), RunMode::Production);
        assert!(run_mode(Some("staging"), &loopback).is_err());
    }

    #[test]
    fn the_platform_cannot_live_where_a_tenant_service_could_and_its_cookie_is_host_only_over_https() {
        let mut c = Config::for_tests("postgres://x/y");
        c.apps_domain = "apps.example.com".into();
        for (url, ok) in [
            ("https://roundhouse.example.com", true),
            ("https://apps.example.com", true),
            ("https://console.apps.example.com", true),
            ("https://web.shop.apps.example.com", false),
            ("https://WEB.shop.apps.example.com:8443", false),
        ] {
            c.public_url = url.into();
            assert_eq!(c.clone().checked().is_ok(), ok, "{url}");
        }
        c.public_url = "https://roundhouse.example.com".into();
        assert_eq!(c.session_cookie_name(), "__Host-rh_session");
        c.public_url = "http://127.0.0.1:3000".into();
        assert_eq!(c.session_cookie_name(), "rh_session");
    }

    #[test]
    fn the_client_is_found_behind_trusted_hops_or_networks_and_forged_entries_never_decide() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        let peer = ip("10.0.0.2");
        assert_eq!(TrustProxy::parse(None).unwrap(), TrustProxy::None);
        assert_eq!(TrustProxy::parse(Some("true")).unwrap(), TrustProxy::Hops(1));
        assert!(TrustProxy::parse(Some("0.5")).is_err() && TrustProxy::parse(Some("99")).is_err());
        let forged = ["6.6.6.6", "203.0.113.7", "10.0.0.9"];
        assert_eq!(TrustProxy::None.client(peer, &forged), peer);
        assert_eq!(TrustProxy::Hops(1).client(peer, &forged), ip("10.0.0.9"));
        assert_eq!(TrustProxy::Hops(2).client(peer, &forged), ip("203.0.113.7"), "two proxies: the second from the right");
        assert_eq!(TrustProxy::Hops(5).client(peer, &forged), peer, "fewer entries than hops: the peer");
        let nets = TrustProxy::parse(Some("10.0.0.0/8, 192.168.1.1")).unwrap();
        assert_eq!(nets.client(peer, &forged), ip("203.0.113.7"), "the rightmost entry outside the proxies' networks");
        assert_eq!(nets.client(ip("198.51.100.1"), &forged), ip("198.51.100.1"), "a peer that is no proxy of ours: its header is ignored");
        assert_eq!(nets.client(peer, &["10.0.0.5"]), ip("10.0.0.5"));
        assert_eq!(nets.client(peer, &["garbage", "10.0.0.5"]), ip("10.0.0.5"));
        assert!(TrustProxy::parse(Some("10.0.0.0/33")).is_err());
    }

    #[test]
    fn a_git_ca_file_must_exist_and_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("rh-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pem, empty) = (dir.join("ca.pem"), dir.join("empty.pem"));
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(ca_file("X", pem.to_str().unwrap()).unwrap(), pem);
        let missing = ca_file("ROUNDHOUSE_GIT_CA_FILE", dir.join("missing.pem").to_str().unwrap()).unwrap_err();
        assert!(format!("{missing:#}").starts_with("ROUNDHOUSE_GIT_CA_FILE: cannot read"), "{missing:#}");
        let not_pem = ca_file("ROUNDHOUSE_GIT_CA_FILE", empty.to_str().unwrap()).unwrap_err();
        assert!(not_pem.to_string().contains("holds no PEM certificate"), "{not_pem}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
