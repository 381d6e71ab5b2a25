//! Commands of the `roundhouse` binary other than serving.

use std::process::ExitCode;

/// `roundhouse template validate FILE…`: reads each template file and prints every problem.
/// Exit status 0 when all are valid, 1 when any is not, 2 on bad usage.
pub fn template(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("validate") if args.len() > 1 => {
            let samples = app::templates::bundled::samples();
            let mut ok = true;
            for file in &args[1..] {
                let text = match std::fs::read_to_string(file) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("{file}: cannot read: {e}");
                        ok = false;
                        continue;
                    }
                };
                match app::templates::parse::read(&text, &samples) {
                    Ok(spec) => println!(
                        "{file}: ok — {} ({} service{}; runs on {})",
                        spec.template.slug,
                        spec.services.len(),
                        if spec.services.len() == 1 { "" } else { "s" },
                        spec.runtimes().iter().map(|r| r.label()).collect::<Vec<_>>().join(", ")
                    ),
                    Err(e) => {
                        ok = false;
                        eprintln!("{file}: not valid\n{}", indent(&e.to_string()));
                    }
                }
            }
            if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Some("import") if args.len() >= 2 => import(&args[1..]),
        _ => {
            eprintln!("usage: roundhouse template validate FILE…\n       roundhouse template import COMPOSE_FILE [--slug SLUG] [--name NAME]");
            ExitCode::from(2)
        }
    }
}

/// `roundhouse template import COMPOSE_FILE [--slug S] [--name N]`: prints the template (TOML)
/// on stdout; what was not carried over, and any rule the result breaks, on stderr. Exit 0 when
/// the result is a valid template, 1 when not, 2 on bad usage.
fn import(args: &[String]) -> ExitCode {
    let file = &args[0];
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let stem = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("imported").to_ascii_lowercase();
    let slug = flag("--slug").unwrap_or_else(|| stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect());
    let name = flag("--name").unwrap_or_else(|| slug.clone());
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{file}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    let imported = match app::templates::compose::import(&text, &slug, &name) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match toml::to_string(&imported.spec) {
        Ok(t) => print!("{t}"),
        Err(e) => {
            eprintln!("{file}: the result cannot be written as TOML: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !imported.report.is_empty() {
        eprintln!("Not carried over:\n{}", indent(&imported.report.join("\n")));
    }
    let problems = app::templates::validate::validate(&imported.spec, &app::templates::bundled::samples());
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("The result is not a valid template yet:\n{}", indent(&problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")));
        ExitCode::FAILURE
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
