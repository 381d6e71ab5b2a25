//! Where a service's code may come from: a user uploads an archive or names a remote git
//! repository; only admins use folders of the machine, and only under the configured roots,
//! never the platform's own data. Every refusal changes nothing.

use crate::{deploys::*, helpers::*};
use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use serde_json::json;

async fn project(app: &TestApp, token: &str) -> String {
    let p = app.post("/projects", token, json!({ "name": "shop" })).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
    p.body["id"].as_str().unwrap().to_string()
}

async fn services(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM services").fetch_one(&app.db).await.unwrap()
}

async fn uploads(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM source_uploads").fetch_one(&app.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_sources_are_for_admins_under_the_source_roots_and_never_the_data_folder() {
    let roots = test_data_dir().0;
    let allowed = roots.join("apps/web");
    std::fs::create_dir_all(&allowed).unwrap();
    let data = test_data_dir().0;
    let (r, d) = (roots.clone(), data.clone());
    let app = TestApp::with_config(move |c| {
        c.source_roots = vec![r.canonicalize().unwrap()];
        c.data_dir = d;
    })
    .await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token).await;
    let body = |source: &str| json!({ "name": "web", "source_kind": "directory", "source": source });

    let r = app.post(&format!("/projects/{p}/services"), &token, body(allowed.to_str().unwrap())).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "source"));
    assert!(r.error_message().starts_with("Directory sources are for the platform's admins"), "{}", r.text);

    app.make_admin("ada@example.com").await;
    for (source, why) in [
        (data.to_str().unwrap().to_string(), "holds the platform's own data"),
        (data.join("runtime").to_str().unwrap().to_string(), "does not exist"),
        ("/etc".to_string(), "must be under"),
        (format!("{}/../..", allowed.display()), "without . or .. parts"),
    ] {
        let r = app.post(&format!("/projects/{p}/services"), &token, body(&source)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{source}: {}", r.text);
        assert!(r.error_message().contains(why), "{source}: {}", r.text);
    }
    std::fs::create_dir_all(data.join("runtime")).unwrap();
    let r = app.post(&format!("/projects/{p}/services"), &token, body(data.join("runtime").to_str().unwrap())).await;
    assert!(r.error_message().contains("holds the platform's own data"), "{}", r.text);
    assert_eq!(services(&app).await, 0, "nothing was created");

    let r = app.post(&format!("/projects/{p}/services"), &token, body(allowed.to_str().unwrap())).await;
    assert_eq!(r.status, StatusCode::CREATED, "an admin's folder under a source root: {}", r.text);
    // Repointing it later is held to the same rules.
    let id = r.body["id"].as_str().unwrap();
    let r = app.api(Method::PATCH, &format!("/services/{id}"), Some(&token), Some(json!({ "source": data.to_str().unwrap() }))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(app.get(&format!("/services/{id}"), &token).await.body["source"], allowed.to_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_sources_are_remote_repositories_only() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token).await;
    for source in ["file:///srv/repo.git", "/srv/repo.git", "ext::sh -c touch% /tmp/pwned", "--upload-pack=id", "http://example.com/x.git"] {
        let r = app.post(&format!("/projects/{p}/services"), &token, json!({ "name": "web", "source_kind": "git", "source": source })).await;
        assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "source"), "{source}: {}", r.text);
    }
    assert_eq!(services(&app).await, 0);
    let r = app.post(&format!("/projects/{p}/services"), &token, json!({ "name": "web", "source_kind": "git", "source": "git@github.com:acme/web.git" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// An archive made entry by entry, so it can hold what `tar` itself would not write.
fn hostile_archive(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        let body: &[u8] = if kind == tar::EntryType::Regular { b"x" } else { b"" };
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, body).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_archives_are_checked_and_a_bad_one_changes_nothing() {
    let app = TestApp::new().await;
    let token = app.verified_user("Ada", "ada@example.com").await;
    let p = project(&app, &token).await;
    let s = app.post(&format!("/projects/{p}/services"), &token, json!({ "name": "web", "source_kind": "upload" })).await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.text);
    assert_eq!(s.body["source"], "", "no archive yet");
    let id = s.body["id"].as_str().unwrap().to_string();

    // Nothing to deploy before an archive arrives.
    let r = app.post(&format!("/services/{id}/deployments"), &token, json!({})).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "source"));

    for (archive, field, says) in [
        (hostile_archive("../evil", tar::EntryType::Regular, None), "archive", "../evil: paths in the archive must be relative"),
        (hostile_archive("/etc/cron.d/x", tar::EntryType::Regular, None), "archive", "paths in the archive must be relative"),
        (hostile_archive("key", tar::EntryType::Symlink, Some("/root/.data/secret.key")), "archive", "key: links must point inside the archive"),
        (hostile_archive("up", tar::EntryType::Symlink, Some("../../etc")), "archive", "up: links must point inside the archive"),
        (hostile_archive("dev", tar::EntryType::Block, None), "archive", "not a block device"),
        (b"plain text, not gzip".to_vec(), "archive", "not a gzip-compressed tar file"),
    ] {
        let r = upload(&app, &token, &id, archive).await;
        assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, field), "{says}: {}", r.text);
        assert!(r.error_message().contains(says), "{}", r.text);
    }
    // Over the platform's limit (8 MB in tests): refused before it is read whole.
    let r = upload(&app, &token, &id, vec![0u8; 9 * 1024 * 1024]).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"), "{}", r.text);
    // Not sent as an archive.
    let req = Request::builder()
        .method("POST")
        .uri(format!("/api/v1/services/{id}/source"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "content_type"));
    assert_eq!(uploads(&app).await, 0, "nothing bad was stored");
    assert_eq!(app.get(&format!("/services/{id}"), &token).await.body["source"], "");

    // Another user can neither upload to it nor learn that it exists.
    let eve = app.verified_user("Eve", "eve@example.com").await;
    let r = upload(&app, &eve, &id, targz(&fixture())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(uploads(&app).await, 0);

    // The owner's real archive is taken and becomes the source.
    let r = upload(&app, &token, &id, targz(&fixture())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["files"], 3, "./, app.py and Procfile");
    assert_eq!(app.get(&format!("/services/{id}"), &token).await.body["source"], r.body["id"]);
    // An upload to a service whose source is not an upload is refused.
    let g = app.post(&format!("/projects/{p}/services"), &token, json!({ "name": "api", "source_kind": "git", "source": "https://github.com/a/b.git" })).await;
    let r = upload(&app, &token, g.body["id"].as_str().unwrap(), targz(&fixture())).await;
    assert_eq!((r.status, r.error_field()), (StatusCode::UNPROCESSABLE_ENTITY, "source_kind"));
    assert_eq!(uploads(&app).await, 1);
}
