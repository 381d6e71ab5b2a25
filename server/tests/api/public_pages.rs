//! Public pages served from the page cache: the same page for every signed-out visitor,
//! revalidated with an ETag, a fresh CSP nonce each time, emptied when what it shows changes —
//! and never a signed-in visitor's page, nor another's.

use super::helpers::*;
use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};

fn cache_state(r: &Reply) -> &str {
    r.headers.get("x-roundhouse-cache").and_then(|v| v.to_str().ok()).unwrap_or("none")
}

/// Requests `path` until the cache keeps it (it keeps nothing until it hears changes); answers
/// the first hit.
async fn kept(app: &TestApp, path: &str) -> Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.page(path, None).await;
        if cache_state(&r) == "hit" {
            return r;
        }
        assert_eq!(cache_state(&r), "miss", "{path}");
        assert!(std::time::Instant::now() < deadline, "{path} was never kept");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn nonce(r: &Reply) -> String {
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    let rest = &csp[csp.find("'nonce-").unwrap() + 7..];
    rest[..rest.find('\'').unwrap()].to_string()
}

#[tokio::test]
async fn a_signed_out_visitor_gets_the_kept_page_with_a_fresh_nonce_and_a_304_when_unchanged() {
    let app = TestApp::new().await;
    let first = app.page("/pricing", None).await;
    assert_eq!((first.status, cache_state(&first)), (StatusCode::OK, "miss"));
    kept(&app, "/pricing").await;
    let second = app.page("/pricing", None).await;
    assert_eq!((second.status, cache_state(&second)), (StatusCode::OK, "hit"));
    let (n1, n2) = (nonce(&first), nonce(&second));
    assert_ne!(n1, n2, "no two responses share a nonce");
    assert!(second.text.contains(&format!("nonce=\"{n2}\"")) && !second.text.contains(&n1));
    assert_eq!(first.text.replace(&n1, "N"), second.text.replace(&n2, "N"), "the same page");
    let etag = second.headers[header::ETAG].clone();
    assert_eq!(second.headers[header::VARY], "cookie, accept-encoding");

    // A browser that has it: 304, with no policy (it keeps the one matching its copy).
    let req = Request::builder().uri("/pricing").header(header::HOST, "127.0.0.1:3000").header(header::IF_NONE_MATCH, etag).body(Body::empty()).unwrap();
    let revalidated = app.send(req).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert!(revalidated.text.is_empty() && !revalidated.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn a_change_to_what_a_page_shows_empties_the_cache_of_every_replica() {
    let database = std::sync::Arc::new(TestDb::new().await);
    let one = TestApp::on(database.clone(), |_| {}, std::sync::Arc::new(app::infra::mail::OutboxOnly));
    let two = TestApp::on(database, |_| {}, std::sync::Arc::new(app::infra::mail::OutboxOnly));
    for app in [&one, &two] {
        kept(app, "/pricing").await;
    }
    // The change is made in the database (as the admin panel would): both replicas hear of it.
    sqlx::query("UPDATE plans SET tagline = 'Now with more gigabytes' WHERE id = 'free'").execute(&one.db).await.unwrap();
    for app in [&one, &two] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let page = app.page("/pricing", None).await;
            if page.text.contains("Now with more gigabytes") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the kept page outlived the change");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_signed_in_visitor_never_gets_a_kept_page_nor_anyone_elses() {
    let app = TestApp::new().await;
    app.verified_user("Ada Lovelace", "ada@example.com").await;
    app.verified_user("Grace Hopper", "grace@example.com").await;
    let ada = app.browser_login("ada@example.com").await;
    let grace = app.browser_login("grace@example.com").await;
    // A signed-out visit is kept first.
    kept(&app, "/templates").await;
    for path in ["/", "/pricing", "/templates", "/docs"] {
        let a = app.page(path, Some(&ada)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(cache_state(&a), "none", "{path}: rendered for her");
        assert!(a.text.contains("Ada Lovelace") && !a.text.contains("Grace Hopper"), "{path}");
        let g = app.page(path, Some(&grace)).await;
        assert!(g.text.contains("Grace Hopper") && !g.text.contains("Ada Lovelace"), "{path}");
        let anonymous = app.page(path, None).await;
        assert!(!anonymous.text.contains("Ada Lovelace") && !anonymous.text.contains("Grace Hopper"), "{path}");
    }
    // A stale session cookie is someone's too: rendered (and the cookie cleared), not kept.
    let stale = app.page("/pricing", Some("rh_session=not-a-session")).await;
    assert_eq!(cache_state(&stale), "none");
}
