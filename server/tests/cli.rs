//! `roundhouse template validate FILE…`: every bundled template passes; a broken file fails
//! with every problem named.

use std::process::Command;

fn validate(files: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_roundhouse")).arg("template").arg("validate").args(files).output().unwrap()
}

#[test]
fn bundled_templates_validate_and_a_broken_one_names_its_problems() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/");
    let ok = validate(&[&format!("{root}production-app.toml"), &format!("{root}ghost.toml")]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("ok — production-app (6 services"), "{out}");

    let dir = std::env::temp_dir().join(format!("rh-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "version = 1\nservices = []\n[template]\nslug = \"Bad Slug\"\nname = \"x\"\nsummary = \"y\"\ncategory = \"c\"\n").unwrap();
    let r = validate(&[bad.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("Bad Slug: template.slug: use 1–63 lower-case letters"), "{err}");
    assert!(err.contains("Bad Slug: services: a template creates at least one service"), "{err}");
    let usage = Command::new(env!("CARGO_BIN_EXE_roundhouse")).args(["template"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_compose_file_imports_into_a_template_that_reads_back_with_a_report() {
    let dir = std::env::temp_dir().join(format!("rh-cli-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let compose = dir.join("umami.yaml");
    std::fs::write(
        &compose,
        r#"services:
  umami:
    image: ghcr.io/umami-software/umami:postgresql-latest
    environment:
      - SERVICE_FQDN_UMAMI_3000
      - DATABASE_URL=postgres://${SERVICE_USER_POSTGRES}:${SERVICE_PASSWORD_POSTGRES}@postgresql:5432/${POSTGRES_DB:-umami}
      - APP_SECRET=${SERVICE_PASSWORD_64_UMAMI}
    ports: ["3000:3000"]
    depends_on:
      postgresql:
        condition: service_healthy
  postgresql:
    image: postgres:15-alpine
    environment:
      - POSTGRES_USER=${SERVICE_USER_POSTGRES}
      - POSTGRES_PASSWORD=${SERVICE_PASSWORD_POSTGRES}
      - POSTGRES_DB=${POSTGRES_DB:-umami}
    volumes: [postgresql-data:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $${POSTGRES_USER} -d $${POSTGRES_DB}"]
      interval: 5s
volumes:
  postgresql-data:
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_roundhouse"))
        .args(["template", "import", compose.to_str().unwrap(), "--name", "Umami"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("umami: ports: 3000:3000: a host port is not carried over"), "{stderr}");
    let toml_text = String::from_utf8(out.stdout).unwrap();
    let spec = app::templates::parse::read(&toml_text, &[]).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    assert_eq!((spec.template.slug.as_str(), spec.template.name.as_str()), ("umami", "Umami"));
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["postgresql", "umami"]);
    assert_eq!(spec.deploy_order().unwrap().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["postgresql", "umami"]);
    assert!(spec.inputs.iter().any(|i| i.name == "SERVICE_PASSWORD_64_UMAMI" && i.is_generated()));
    std::fs::remove_dir_all(&dir).unwrap();
}
