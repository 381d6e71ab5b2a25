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
        _ => {
            eprintln!("usage: roundhouse template validate FILE…");
            ExitCode::from(2)
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
