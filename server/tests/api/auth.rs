use crate::helpers::*;
use axum::http::{header, Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_answers_201_with_the_user_and_mails_a_verification_link() {
    let app = TestApp::new().await;
    let r = app
        .api(Method::POST, "/auth/register", None, Some(json!({ "name": "Ada", "email": " Ada@Example.com ", "password": PASSWORD })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["user"]["email"], "ada@example.com");
    assert_eq!(r.body["user"]["name"], "Ada");
    assert_eq!(r.body["user"]["role"], "user");
    assert_eq!(r.body["user"]["email_verified"], false);
    assert!(r.body["user"].get("password_hash").is_none());
    let subject: String = sqlx::query_scalar("SELECT subject FROM mail_outbox WHERE to_address = 'ada@example.com'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(subject, "Confirm your email address");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&app.db).await.unwrap();
    assert!(hash.starts_with("$argon2id$"), "stored as argon2id, not {hash}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_an_email_twice_in_any_case_is_a_409_on_the_email_field() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let r = app
        .api(Method::POST, "/auth/register", None, Some(json!({ "name": "Other", "email": "ADA@example.com", "password": PASSWORD })))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_code(), "conflict");
    assert_eq!(r.error_field(), "email");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registration_input_is_a_422_naming_the_field_and_creates_nothing() {
    let app = TestApp::new().await;
    for (body, field) in [
        (json!({ "name": "", "email": "a@example.com", "password": PASSWORD }), "name"),
        (json!({ "name": "A", "email": "not-an-email", "password": PASSWORD }), "email"),
        (json!({ "name": "A", "email": "a@example.com", "password": "short" }), "password"),
    ] {
        let r = app.api(Method::POST, "/auth/register", None, Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.error_code(), "validation_failed");
        assert_eq!(r.error_field(), field);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_422_in_the_error_shape_not_a_500() {
    let app = TestApp::new().await;
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from("{\"name\": 42"))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_code(), "validation_failed");
    assert!(r.error_message().starts_with("The request body is not valid"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_token_authenticates_until_logout() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let token = app.login("ADA@example.com").await;
    assert!(token.starts_with("rhs_"));
    let me = app.get("/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "ada@example.com");
    let out = app.post("/auth/logout", &token, json!({})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = app.get("/me", &token).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.error_code(), "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let wrong = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "ada@example.com", "password": "not the password" }))).await;
    let unknown = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "bob@example.com", "password": "not the password" }))).await;
    assert_eq!((wrong.status, wrong.error_code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "{}", wrong.text);
    assert_eq!(wrong.error_field(), "", "which of the two is wrong is not said");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_per_account_with_retry_after() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    for _ in 0..5 {
        let r = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "ada@example.com", "password": "wrong password" }))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while the account is over its limit.
    let r = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "ada@example.com", "password": PASSWORD }))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_per_client_address_across_accounts() {
    let app = TestApp::with_config(|c| c.login_per_ip_per_minute = 3).await;
    for i in 0..3 {
        let r = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": format!("u{i}@example.com"), "password": "whatever123" }))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "u9@example.com", "password": "whatever123" }))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}

/// How many mails went to `email`.
async fn mails_to(app: &TestApp, email: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM mail_outbox WHERE to_address = $1").bind(email).fetch_one(&app.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mails_to_one_address_are_limited_whoever_asks_and_nothing_more_is_sent() {
    let app = TestApp::with_config(|c| c.trust_proxy = app::infra::TrustProxy::Hops(1)).await;
    app.register("Ada", "ada@example.com").await;
    let forgot = |from: &'static str| {
        let req = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/api/v1/auth/password/forgot")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", from)
            .body(axum::body::Body::from(json!({ "email": "ada@example.com" }).to_string()))
            .unwrap();
        app.send(req)
    };
    let resets = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM mail_outbox WHERE to_address = 'ada@example.com' AND subject = 'Reset your password'")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    for from in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(forgot(from).await.status, StatusCode::ACCEPTED);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while resets().await < 3 {
        assert!(std::time::Instant::now() < deadline, "three reset mails expected");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A fourth, from yet another address: the same answer (a stranger cannot lock Ada out of
    // her own resets by asking often), and no mail — it is refused before anything is queued.
    let r = forgot("203.0.113.4").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(resets().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_reset_and_resend_are_limited_per_client_address() {
    let app = TestApp::with_config(|c| c.account_actions_per_ip_per_hour = 2).await;
    for i in 0..2 {
        let r = app.api(Method::POST, "/auth/register", None, Some(json!({ "name": "U", "email": format!("u{i}@example.com"), "password": PASSWORD }))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = app.api(Method::POST, "/auth/register", None, Some(json!({ "name": "U", "email": "u9@example.com", "password": PASSWORD }))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'u9@example.com'").fetch_one(&app.db).await.unwrap();
    assert_eq!(none, 0, "a refused registration creates nothing");

    // Made-up reset links: refused without a hash, then limited like the rest.
    for _ in 0..2 {
        let r = app.api(Method::POST, "/auth/password/reset", None, Some(json!({ "token": "made-up", "password": "a brand new password" }))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    }
    let r = app.api(Method::POST, "/auth/password/reset", None, Some(json!({ "token": "made-up", "password": "a brand new password" }))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);

    // Verification mails asked again by a signed-in user.
    let login = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "u0@example.com", "password": PASSWORD }))).await;
    let token = login.body["token"].as_str().unwrap().to_string();
    let before = mails_to(&app, "u0@example.com").await;
    for _ in 0..2 {
        assert_eq!(app.api(Method::POST, "/auth/verify/resend", Some(&token), None).await.status, StatusCode::ACCEPTED);
    }
    assert_eq!(app.api(Method::POST, "/auth/verify/resend", Some(&token), None).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(mails_to(&app, "u0@example.com").await, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_link_verifies_once() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let token = app.mailed_token("ada@example.com", "verify").await;
    let r = app.api(Method::POST, "/auth/verify", None, Some(json!({ "token": token }))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["user"]["email_verified"], true);
    let again = app.api(Method::POST, "/auth/verify", None, Some(json!({ "token": token }))).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.error_message(), "This link has already been used.");
    let bogus = app.api(Method::POST, "/auth/verify", None, Some(json!({ "token": "nope" }))).await;
    assert_eq!(bogus.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bogus.error_field(), "token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_verification_link_is_refused() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let token = app.mailed_token("ada@example.com", "verify").await;
    sqlx::query("UPDATE email_tokens SET expires_at = now() - interval '1 minute'").execute(&app.db).await.unwrap();
    let r = app.api(Method::POST, "/auth/verify", None, Some(json!({ "token": token }))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error_message().contains("expired"), "{}", r.text);
    let verified: bool = sqlx::query_scalar("SELECT email_verified_at IS NOT NULL FROM users").fetch_one(&app.db).await.unwrap();
    assert!(!verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_sets_the_new_password_and_ends_every_session_and_token() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let old_session = app.login("ada@example.com").await;
    let api_token = app.post("/tokens", &old_session, json!({ "name": "laptop" })).await.body["secret"].as_str().unwrap().to_string();
    assert_eq!(app.get("/me", &api_token).await.status, StatusCode::OK);
    // A made-up link is refused and changes nothing (checked before the password is hashed).
    let r = app.api(Method::POST, "/auth/password/reset", None, Some(json!({ "token": "not-a-token", "password": "a brand new password" }))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(app.get("/me", &api_token).await.status, StatusCode::OK);
    let r = app.api(Method::POST, "/auth/password/forgot", None, Some(json!({ "email": "ada@example.com" }))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let link = app.mailed_token("ada@example.com", "reset").await;
    // Sent from a browser signed in as someone else: the link's account is the one reset, all
    // of it (row-level security would hide Ada's tokens from a request acting as Bob).
    app.register("Bob", "bob@example.com").await;
    let bob = app.login("bob@example.com").await;
    let r = app
        .api(Method::POST, "/auth/password/reset", Some(&bob), Some(json!({ "token": link, "password": "a brand new password" })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(app.get("/me", &old_session).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/me", &api_token).await.status, StatusCode::UNAUTHORIZED, "API tokens end with the password");
    assert_eq!(app.get("/me", &bob).await.status, StatusCode::OK, "the caller's own session is not the one reset");
    let old = app.api(Method::POST, "/auth/login", None, Some(json!({ "email": "ada@example.com", "password": PASSWORD }))).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = app
        .api(Method::POST, "/auth/login", None, Some(json!({ "email": "ada@example.com", "password": "a brand new password" })))
        .await;
    assert_eq!(new.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_for_an_unknown_address_answers_the_same_and_sends_nothing() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let unknown = app.api(Method::POST, "/auth/password/forgot", None, Some(json!({ "email": "nobody@example.com" }))).await;
    let known = app.api(Method::POST, "/auth/password/forgot", None, Some(json!({ "email": "ada@example.com" }))).await;
    assert_eq!((unknown.status, unknown.text.as_str()), (known.status, known.text.as_str()));
    assert_eq!(known.status, StatusCode::ACCEPTED);
    // Once the known address's mail is out, the unknown one still has none.
    app.mailed_token("ada@example.com", "reset").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM mail_outbox WHERE to_address = 'nobody@example.com'").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_tokens_are_shown_once_stored_hashed_and_revocable() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let session = app.login("ada@example.com").await;
    let created = app.post("/tokens", &session, json!({ "name": "laptop CLI" })).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("rhp_"));
    assert_eq!(created.body["prefix"], secret[..10]);

    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_one(&app.db).await.unwrap();
    use sha2::Digest;
    assert_eq!(stored, sha2::Sha256::digest(secret.as_bytes()).to_vec(), "only the SHA-256 of the secret is stored");

    let me = app.get("/me", &secret).await;
    assert_eq!(me.status, StatusCode::OK);
    let list = app.get("/tokens", &secret).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(list.body[0].get("secret").is_none(), "secrets are never listed");
    assert!(list.body[0]["last_used_at"].is_string(), "use is recorded");

    let id = created.body["id"].as_str().unwrap();
    let revoked = app.api(Method::DELETE, &format!("/tokens/{id}"), Some(&session), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/me", &secret).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_name_is_required() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let session = app.login("ada@example.com").await;
    let r = app.post("/tokens", &session, json!({ "name": "  " })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_field(), "name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_list_or_revoke_another_users_token() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    app.register("Bob", "bob@example.com").await;
    let ada = app.login("ada@example.com").await;
    let bob = app.login("bob@example.com").await;
    let created = app.post("/tokens", &ada, json!({ "name": "ci" })).await;
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(app.get("/tokens", &bob).await.body, json!([]));
    let r = app.api(Method::DELETE, &format!("/tokens/{id}"), Some(&bob), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_bearer_token_is_a_401() {
    let app = TestApp::new().await;
    let r = app.get("/projects", "rhp_not-a-real-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_sign_in_sets_an_http_only_lax_session_cookie() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let r = app
        .server_fn("login", None, &[("email", "ada@example.com"), ("password", PASSWORD), ("next", "/projects/x")])
        .await;
    let set_cookie = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert_eq!(r.headers.get(header::LOCATION).unwrap(), "/projects/x");
    let cookie = r.session_cookie().unwrap();
    let me = app.server_fn("get_me", Some(&cookie), &[]).await;
    assert_eq!(me.body["email"], "ada@example.com", "{}", me.text);

    // Sign-out ends the session server-side: the old cookie no longer works.
    app.server_fn("logout", Some(&cookie), &[]).await;
    let me = app.server_fn("get_me", Some(&cookie), &[]).await;
    assert_eq!((me.status, me.text.as_str()), (StatusCode::OK, "null"), "signed out: no user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_parameter_cannot_send_a_user_to_another_site() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let r = app
        .server_fn("login", None, &[("email", "ada@example.com"), ("password", PASSWORD), ("next", "//evil.example/x")])
        .await;
    assert_eq!(r.headers.get(header::LOCATION).unwrap(), "/dashboard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_form_post_with_a_session_cookie_is_refused() {
    let app = TestApp::new().await;
    app.verified_user("Ada", "ada@example.com").await;
    let cookie = app.browser_login("ada@example.com").await;
    let r = app
        .server_fn_from("create_project", Some(&cookie), &[("name", "evil")], Some("https://evil.example"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "forbidden");
    // Without Origin, a foreign Referer is refused too.
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/create_project")
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::COOKIE, &cookie)
        .header(header::REFERER, "https://evil.example/page")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("name=evil2"))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::FORBIDDEN);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0);
    // The same request from our own origin goes through.
    let ok = app.server_fn("create_project", Some(&cookie), &[("name", "mine")]).await;
    assert!(ok.status.is_success() || ok.status.is_redirection(), "{} {}", ok.status, ok.text);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_name_can_be_changed_but_not_emptied() {
    let app = TestApp::new().await;
    app.register("Ada", "ada@example.com").await;
    let cookie = app.browser_login("ada@example.com").await;
    let r = app.server_fn("update_profile", Some(&cookie), &[("name", "Ada Lovelace")]).await;
    assert_eq!(r.body["name"], "Ada Lovelace", "{}", r.text);
    let r = app.server_fn("update_profile", Some(&cookie), &[("name", "   ")]).await;
    assert_eq!(r.body["code"], "validation", "{}", r.text);
    let name: String = sqlx::query_scalar("SELECT name FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(name, "Ada Lovelace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_other_sessions_and_every_api_token() {
    let app = TestApp::new().await;
    app.verified_user("Ada", "ada@example.com").await;
    let elsewhere = app.login("ada@example.com").await;
    let token = app.post("/tokens", &elsewhere, json!({ "name": "ci" })).await.body["secret"].as_str().unwrap().to_string();
    let cookie = app.browser_login("ada@example.com").await;
    let wrong = app.server_fn("change_password", Some(&cookie), &[("current_password", "not it at all"), ("new_password", "another long password")]).await;
    assert_eq!(wrong.fn_error_field(), "current_password", "{}", wrong.text);
    assert_eq!(app.get("/me", &token).await.status, StatusCode::OK, "a refused change ends nothing");
    let r = app.server_fn("change_password", Some(&cookie), &[("current_password", PASSWORD), ("new_password", "another long password")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.get("/me", &elsewhere).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/me", &token).await.status, StatusCode::UNAUTHORIZED, "API tokens end with the password");
    assert_eq!(app.page("/account", Some(&cookie)).await.status, StatusCode::OK, "the session that changed it stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_session_cookie_is_host_only_and_a_plain_one_is_not_a_session() {
    let app = TestApp::with_config(|c| c.public_url = "https://roundhouse.example.com".into()).await;
    app.verified_user("Ada", "ada@example.com").await;
    let origin = Some("https://roundhouse.example.com");
    let r = app.server_fn_from("login", None, &[("email", "ada@example.com"), ("password", PASSWORD)], origin).await;
    let set = r.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find(|c| c.contains("rh_session=")).expect("a session cookie").to_string();
    assert!(set.starts_with("__Host-rh_session=rhs_"), "{set}");
    assert!(set.contains("; Secure") && set.contains("; Path=/") && !set.to_lowercase().contains("domain="), "{set}");
    let token = set.split(';').next().unwrap().split_once('=').unwrap().1.to_string();

    let me = app.server_fn_from("get_me", Some(&format!("__Host-rh_session={token}")), &[], origin).await;
    assert_eq!(me.body["email"], "ada@example.com", "{}", me.text);
    // The same token under the plain name (what a cookie set for a parent domain would be) is no session.
    let tossed = app.server_fn_from("get_me", Some(&format!("rh_session={token}")), &[], origin).await;
    assert_eq!(tossed.text, "null", "{}", tossed.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_limit_what_a_token_does_and_expired_tokens_stop_working() {
    let app = TestApp::new().await;
    let session = app.verified_user("Ada", "ada@example.com").await;
    let p = app.post("/projects", &session, json!({ "name": "shop" })).await;
    let project = p.body["id"].as_str().unwrap().to_string();
    let app = &app;
    let make = move |body: serde_json::Value, caller: String| async move { app.post("/tokens", &caller, body).await };
    let read = make(json!({ "name": "dashboards", "scope": "read" }), session.clone()).await;
    assert_eq!((read.status, read.body["scope"].as_str()), (StatusCode::CREATED, Some("read")), "{}", read.text);
    let read = read.body["secret"].as_str().unwrap().to_string();
    let deploy = make(json!({ "name": "ci", "scope": "deploy", "expires_in_days": 30 }), session.clone()).await;
    assert!(deploy.body["expires_at"].is_string(), "{}", deploy.text);
    let deploy = deploy.body["secret"].as_str().unwrap().to_string();

    // Read: reads, and nothing else — not even a server function.
    assert_eq!(app.get("/projects", &read).await.status, StatusCode::OK);
    let refused = app.post("/projects", &read, json!({ "name": "other" })).await;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", refused.text);
    assert!(refused.error_message().contains("scope is read"), "{}", refused.text);
    // Deploy: may create deployments, may not change the service or its variables.
    let s = app.post(&format!("/projects/{project}/services"), &session, json!({ "name": "db", "source_kind": "database", "source": "postgres" })).await;
    let service = s.body["id"].as_str().unwrap().to_string();
    assert_eq!(app.post(&format!("/services/{service}/deployments"), &deploy, json!({})).await.status, StatusCode::CREATED);
    let put = app.api(Method::PUT, &format!("/services/{service}/variables/X"), Some(&deploy), Some(json!({ "value": "1", "secret": false }))).await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);
    assert_eq!(app.api(Method::DELETE, &format!("/services/{service}"), Some(&deploy), None).await.status, StatusCode::FORBIDDEN);
    // No token makes a token beyond itself: a deploy token cannot even reach /tokens to ask.
    assert_eq!(make(json!({ "name": "wider", "scope": "full" }), deploy.clone()).await.status, StatusCode::FORBIDDEN);
    // A full token that expires makes only tokens that expire no later.
    let full_30 = make(json!({ "name": "f30", "expires_in_days": 30 }), session.clone()).await.body["secret"].as_str().unwrap().to_string();
    let forever = make(json!({ "name": "forever" }), full_30.clone()).await;
    assert_eq!((forever.status, forever.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "expires_in_days"), "{}", forever.text);
    assert_eq!(make(json!({ "name": "week", "expires_in_days": 7 }), full_30.clone()).await.status, StatusCode::CREATED);
    // Bad input changes nothing.
    for bad in [json!({ "name": "x", "scope": "admin" }), json!({ "name": "x", "expires_in_days": 0 }), json!({ "name": "x", "expires_in_days": 366 })] {
        assert_eq!(make(bad.clone(), session.clone()).await.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // A token sent as the session cookie is no session: it gains nothing from the browser's
    // ambient authority (a read token revealing or writing through a cookie).
    let as_cookie = app.server_fn("create_project", Some(&format!("rh_session={read}")), &[("name", "sneaky")]).await;
    assert_eq!(as_cookie.status, StatusCode::UNAUTHORIZED, "{}", as_cookie.text);
    let me = app.server_fn("get_me", Some(&format!("rh_session={read}")), &[]).await;
    assert_eq!(me.text, "null");
    // An admin's limited token carries none of the admin's powers.
    sqlx::query("UPDATE users SET role = 'admin' WHERE email = 'ada@example.com'").execute(&app.db).await.unwrap();
    let req = axum::http::Request::builder().uri("/admin/audit").header(header::AUTHORIZATION, format!("Bearer {read}")).body(axum::body::Body::empty()).unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::FORBIDDEN);
    // Expired: it stops working.
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'ci'").execute(&app.db).await.unwrap();
    assert_eq!(app.get("/projects", &deploy).await.status, StatusCode::UNAUTHORIZED);
    let listed = app.get("/tokens", &session).await;
    assert!(listed.body.as_array().unwrap().iter().any(|t| t["name"] == "dashboards" && t["scope"] == "read"), "{}", listed.text);
}
