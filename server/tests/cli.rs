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
