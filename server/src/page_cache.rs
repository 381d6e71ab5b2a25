//! The public pages — the home page, pricing, the template catalogue and each template's page,
//! the docs — are the same for every signed-out visitor. Each replica renders such a page once
//! and serves it from memory, with an `ETag` (`304` to a browser that has it), until what it
//! shows changes: a change to the templates or plans notifies every replica
//! (`rh_public_pages`, from a trigger) and empties its cache; so does a lost notification
//! connection. A minute is the longest any page is kept regardless.
//!
//! Only requests with no session cookie (valid or not) and no `Authorization` take part: those
//! are no one's whatever authentication would make of them, so the cache sits outside it and a
//! kept page skips the stack inside (authentication, headers, pages). A signed-in
//! visitor's page shows their name and is always rendered for them. A response that sets a
//! cookie, or is not a `200` HTML page, is never kept; a kept page replays the headers it was
//! made with (the security headers among them).
//!
//! Each page carries a Content-Security-Policy nonce for its hydration script: a kept page is
//! served with a fresh nonce each time (in its header and its body), so no two responses share
//! one. A `304` carries no policy, so the browser keeps the one that matches the page it has.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
};
use sqlx::{postgres::PgListener, PgPool};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock, Weak,
    },
    time::{Duration, Instant},
};

/// The notification channel of changes to what public pages show.
pub const CHANNEL: &str = "rh_public_pages";
/// The longest a page is kept, whatever happens.
const TTL: Duration = Duration::from_secs(60);
/// Pages kept at most (each path and query is one); past it the cache starts afresh.
const MAX_PAGES: usize = 512;
/// A page larger than this is not kept.
const MAX_BODY: usize = 4 << 20;
/// Longer queries are not kept (a catalogue search is short).
const MAX_QUERY: usize = 200;
/// Says whether a response came from the cache (`hit`), was kept (`miss`) or neither (`bypass`).
pub const CACHE_HEADER: &str = "x-roundhouse-cache";

struct Page {
    generation: u64,
    made: Instant,
    headers: HeaderMap,
    /// The page cut where its CSP nonce was: a response is these parts joined by a fresh one.
    parts: Vec<String>,
    /// The CSP nonce it was rendered with.
    nonce: Option<String>,
    etag: HeaderValue,
}

impl Page {
    fn new(generation: u64, headers: HeaderMap, body: String, etag: HeaderValue) -> Page {
        let nonce = nonce_of(&headers);
        let parts = match &nonce {
            Some(n) => body.split(n.as_str()).map(str::to_string).collect(),
            None => vec![body],
        };
        Page { generation, made: Instant::now(), headers, parts, nonce, etag }
    }

    /// The page with `nonce` where its own was.
    fn body_with(&self, nonce: &str) -> String {
        let len = self.parts.iter().map(String::len).sum::<usize>() + nonce.len() * self.parts.len();
        let mut body = String::with_capacity(len);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                body.push_str(nonce);
            }
            body.push_str(part);
        }
        body
    }
}

#[derive(Default)]
pub struct PageCache {
    pages: RwLock<HashMap<String, Arc<Page>>>,
    /// Bumped by every invalidation: a page rendered before it is not kept.
    generation: AtomicU64,
    /// Whether change notifications are being heard: until they are, nothing is kept (a
    /// change would go unnoticed).
    listening: std::sync::atomic::AtomicBool,
}

impl PageCache {
    /// A cache, emptied whenever `db` says the public pages changed (until the cache is dropped).
    pub fn new(db: PgPool) -> Arc<PageCache> {
        let cache = Arc::new(PageCache::default());
        tokio::spawn(listen(Arc::downgrade(&cache), db));
        cache
    }

    /// Forgets every page.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.pages.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn get(&self, key: &str) -> Option<Arc<Page>> {
        let page = self.pages.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()?;
        (page.generation == self.generation.load(Ordering::SeqCst) && page.made.elapsed() < TTL).then_some(page)
    }

    fn put(&self, key: String, page: Page) {
        let mut pages = self.pages.write().unwrap_or_else(|e| e.into_inner());
        // Rendered before an invalidation (stale already), or while changes go unheard.
        if page.generation != self.generation.load(Ordering::SeqCst) || !self.listening.load(Ordering::SeqCst) {
            return;
        }
        if pages.len() >= MAX_PAGES {
            pages.clear();
        }
        pages.insert(key, Arc::new(page));
    }
}

/// Empties the cache on every notification; a lost connection empties it too (notifications
/// may have been missed), and the listener connects again.
async fn listen(cache: Weak<PageCache>, db: PgPool) {
    loop {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(l) => l,
            Err(_) => {
                if cache.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if listener.listen(CHANNEL).await.is_err() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        match cache.upgrade() {
            Some(c) => {
                c.invalidate();
                c.listening.store(true, Ordering::SeqCst);
            }
            None => return,
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await {
                Ok(Ok(Some(_))) => match cache.upgrade() {
                    Some(c) => c.invalidate(),
                    None => return,
                },
                // Lost: keep nothing until connected again (and start afresh).
                Ok(Ok(None)) | Ok(Err(_)) => {
                    if let Some(c) = cache.upgrade() {
                        c.listening.store(false, Ordering::SeqCst);
                        c.invalidate();
                    }
                    break;
                }
                Err(_) if cache.strong_count() == 0 => return,
                Err(_) => {}
            }
        }
    }
}

/// Whether `path` is a public page that is the same for every signed-out visitor.
pub fn public_page(path: &str) -> bool {
    let slug = |s: &str| !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    match path {
        "/" | "/pricing" | "/templates" | "/docs" => true,
        _ => path.strip_prefix("/templates/").is_some_and(slug),
    }
}

/// Whether the request is someone's: a user, a session cookie (valid or not), a bearer.
fn someones(req: &Request, session_cookie: &str) -> bool {
    if req.extensions().get::<app::auth::service::Authenticated>().is_some() || req.headers().contains_key(header::AUTHORIZATION) {
        return true;
    }
    req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|cookies| {
        cookies.split(';').any(|c| c.trim_start().split_once('=').is_some_and(|(name, _)| name == session_cookie || name == "rh_session" || name == "__Host-rh_session"))
    })
}

/// The nonce of a Content-Security-Policy (`'nonce-…'`).
fn nonce_of(headers: &HeaderMap) -> Option<String> {
    let csp = headers.get(header::CONTENT_SECURITY_POLICY)?.to_str().ok()?;
    let rest = &csp[csp.find("'nonce-")? + 7..];
    Some(rest[..rest.find('\'')?].to_string())
}

fn etag_of(generation: u64, body: &str) -> HeaderValue {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.as_bytes());
    HeaderValue::from_str(&format!("W/\"{generation}-{}\"", hex::encode(&digest[..12]))).expect("an ETag is ASCII")
}

fn matches(req_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    req_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || tag.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default().trim_start_matches("W/"))
}

fn common(headers: &mut HeaderMap, etag: &HeaderValue, state: &'static str) {
    headers.insert(header::ETAG, etag.clone());
    // Revalidated at each use; a page differs with the visitor's cookie (signed in or not).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("cookie, accept-encoding"));
    headers.insert(CACHE_HEADER, HeaderValue::from_static(state));
}

fn not_modified(etag: &HeaderValue, state: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    common(response.headers_mut(), etag, state);
    response
}

/// Serves a kept page with a fresh nonce.
fn from_page(page: &Page, head: bool) -> Response {
    let (body, csp) = match &page.nonce {
        Some(old) => {
            let fresh = uuid::Uuid::new_v4().simple().to_string();
            let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).map(|v| v.replace(old.as_str(), &fresh));
            (page.body_with(&fresh), csp)
        }
        None => (page.body_with(""), None),
    };
    let mut response = Response::new(if head { Body::empty() } else { Body::from(body) });
    *response.headers_mut() = page.headers.clone();
    if let Some(csp) = csp.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    common(response.headers_mut(), &page.etag, "hit");
    response
}

/// The middleware: between authentication (it must know whether the request is someone's)
/// and the pages.
pub async fn serve(State((cache, session_cookie)): State<(Arc<PageCache>, &'static str)>, req: Request, next: Next) -> Response {
    let head = req.method() == Method::HEAD;
    let query = req.uri().query().unwrap_or_default();
    if !(req.method() == Method::GET || head) || !public_page(req.uri().path()) || query.len() > MAX_QUERY || someones(&req, session_cookie) {
        return next.run(req).await;
    }
    let key = format!("{}?{query}", req.uri().path());
    if let Some(page) = cache.get(&key) {
        ::metrics::counter!("roundhouse_page_cache_total", "result" => "hit").increment(1);
        if matches(req.headers(), &page.etag) {
            return not_modified(&page.etag, "hit");
        }
        return from_page(&page, head);
    }
    let generation = cache.generation.load(Ordering::SeqCst);
    let conditional = req.headers().clone();
    let response = next.run(req).await;
    let html = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"));
    if response.status() != StatusCode::OK || !html || response.headers().contains_key(header::SET_COOKIE) || head {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, page = %key, "a public page could not be read whole");
            let mut r = Response::new(Body::from("The page could not be rendered."));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
    };
    let Ok(body) = String::from_utf8(bytes.to_vec()) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    ::metrics::counter!("roundhouse_page_cache_total", "result" => "miss").increment(1);
    let etag = etag_of(generation, &body);
    let mut headers = parts.headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::from_parts(parts, Body::from(body.clone()));
    let page = Page::new(generation, headers, body, etag.clone());
    common(response.headers_mut(), &etag, "miss");
    cache.put(key, page);
    if matches(&conditional, &etag) {
        return not_modified(&etag, "miss");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_pages_are_kept() {
        for path in ["/", "/pricing", "/templates", "/templates/postgres", "/docs"] {
            assert!(public_page(path), "{path}");
        }
        for path in ["/projects", "/account", "/admin", "/templates/x/y", "/templates/", "/templates/Big", "/api/v1/templates", "/pkg/roundhouse.wasm"] {
            assert!(!public_page(path), "{path}");
        }
    }

    #[test]
    fn a_kept_page_gets_a_fresh_nonce_in_its_policy_and_its_body_each_time() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("script-src 'self' 'nonce-abc123XYZ_-' 'wasm-unsafe-eval'"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        let body = r#"<script nonce="abc123XYZ_-">a()</script><script nonce="abc123XYZ_-">b()</script>"#.to_string();
        let page = Page::new(0, headers, body.clone(), etag_of(0, &body));
        assert_eq!(page.nonce.as_deref(), Some("abc123XYZ_-"));
        let first = from_page(&page, false);
        let second = from_page(&page, false);
        let csp = |r: &Response| r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
        assert_ne!(csp(&first), csp(&second));
        assert!(!csp(&first).contains("abc123XYZ_-"));
        let nonce = nonce_of(first.headers()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let text = rt.block_on(async { String::from_utf8(axum::body::to_bytes(first.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap() });
        assert_eq!(text.matches(&format!("nonce=\"{nonce}\"")).count(), 2, "{text}");
    }

    #[test]
    fn an_etag_is_matched_weakly_and_in_lists() {
        let etag = etag_of(3, "<html>");
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"other\", {}", etag.to_str().unwrap())).unwrap());
        assert!(matches(&h, &etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(etag.to_str().unwrap().trim_start_matches("W/")).unwrap());
        assert!(matches(&h, &etag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"nope\""));
        assert!(!matches(&h, &etag));
    }
}
