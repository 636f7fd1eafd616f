//! `harness` — lint, list, run and benchmark scenarios.
//!
//! ```text
//! harness lint [FILE|DIR]...                 check scenarios (exit 2 on errors)
//! harness schema                             print the JSON Schema of the format
//! harness list [FILE|DIR]...                 list trial names
//! harness run [FILE|DIR]... [--backend B] [--variant V] [--update] [--no-snapshot] [--junit PATH]
//! harness bench [FILE|DIR]... [--backend B]  run trials, print suite wall time and the median per trial
//! ```
//! Exit codes: 0 pass, 1 usage, 2 lint errors, 3 infrastructure errors, 4 assertion failures,
//! 5 everything skipped.

use harness::model::BackendKind;
use harness::plan::Project;
use harness::runner::{RunOptions, Status};
use harness::suite::{self, exit, Finished};
use std::time::Instant;

const USAGE: &str = "usage: harness <lint|schema|list|run|bench> [FILE|DIR]... [--backend embedded|pocketic] [--variant NAME] [--update] [--no-snapshot] [--junit PATH]";

struct Args {
    cmd: String,
    paths: Vec<String>,
    backend: Option<BackendKind>,
    variant: Option<String>,
    update: bool,
    snapshot: bool,
    junit: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or(USAGE)?;
    let mut a = Args {
        cmd,
        paths: vec![],
        backend: None,
        variant: None,
        update: false,
        snapshot: true,
        junit: None,
    };
    while let Some(x) = it.next() {
        match x.as_str() {
            "--backend" => {
                let b = it.next().ok_or("--backend needs a value")?;
                a.backend = Some(
                    BackendKind::parse(&b)
                        .ok_or(format!("unknown backend `{b}` (embedded, pocketic)"))?,
                );
            }
            "--variant" => a.variant = Some(it.next().ok_or("--variant needs a value")?),
            "--update" => a.update = true,
            "--no-snapshot" => a.snapshot = false,
            "--junit" => a.junit = Some(it.next().ok_or("--junit needs a path")?),
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => a.paths.push(x),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(exit::USAGE);
        }
    };
    if std::env::var("INSTA_WORKSPACE_ROOT").is_err() {
        std::env::set_var("INSTA_WORKSPACE_ROOT", harness::paths::root());
    }
    if args.update {
        std::env::set_var("INSTA_UPDATE", "always");
    }
    if args.cmd == "schema" {
        println!("{}", harness::model::json_schema());
        return;
    }
    let project = match Project::load() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("harness: {e}");
            std::process::exit(exit::INFRA);
        }
    };
    let files = suite::files(&args.paths);
    if files.is_empty() {
        eprintln!("harness: no scenario files found");
        std::process::exit(exit::USAGE);
    }
    let (loaded, bad) = suite::load_all(&project, &files);
    match args.cmd.as_str() {
        "lint" => {
            if suite::print_lint(&bad) {
                let n: usize = bad.iter().map(|(_, d)| d.len()).sum();
                eprintln!(
                    "harness lint: {n} error(s) in {} of {} file(s)",
                    bad.len(),
                    files.len()
                );
                std::process::exit(exit::LINT);
            }
            println!("harness lint: {} file(s) ok", files.len());
        }
        "list" => {
            suite::print_lint(&bad);
            for t in suite::trials(&loaded) {
                println!("{}", t.name);
            }
            if !bad.is_empty() {
                std::process::exit(exit::LINT);
            }
        }
        "run" | "bench" => {
            if suite::print_lint(&bad) {
                std::process::exit(exit::LINT);
            }
            let mut trials = suite::trials(&loaded);
            if let Some(b) = args.backend {
                trials.retain(|t| t.backend == b);
            } else if args.cmd == "bench" {
                trials.retain(|t| t.backend == BackendKind::Embedded);
            }
            if let Some(v) = &args.variant {
                trials.retain(|t| &t.variant_name == v);
            }
            if trials.is_empty() {
                eprintln!("harness: no trial matches");
                std::process::exit(exit::USAGE);
            }
            let mut opts = RunOptions::standard(&project);
            opts.snapshot = args.snapshot && args.cmd == "run";
            let wall = Instant::now();
            let mut results = vec![];
            let mut coverage = harness::runner::Coverage::default();
            for t in &trials {
                let (r, _) = suite::run_one(&project, t, &opts);
                let mark = match r.status {
                    Status::Pass => "ok",
                    Status::Fail => "FAILED",
                    Status::Infra => "ERROR",
                    Status::Skip => "skipped",
                };
                println!(
                    "trial {} ... {mark} ({:.1} ms)",
                    t.name,
                    r.elapsed.as_secs_f64() * 1e3
                );
                match r.status {
                    Status::Skip => println!("  reason: {}", r.message),
                    Status::Fail | Status::Infra => println!("{}", r.message),
                    Status::Pass => {
                        if args.cmd == "run" {
                            println!(
                                "  transcript: {}",
                                harness::paths::display(&t.artifact_dir().join("transcript.json"))
                            );
                            println!(
                                "  snapshot:   {}",
                                harness::paths::display(
                                    &harness::paths::snapshots_dir()
                                        .join(format!("{}.snap", t.snapshot_name()))
                                )
                            );
                        }
                    }
                }
                coverage.merge(&r.coverage);
                results.push(Finished {
                    name: t.name.clone(),
                    status: r.status,
                    message: r.message,
                    elapsed: r.elapsed,
                });
            }
            let wall = wall.elapsed();
            if args.cmd == "run" {
                print!("{}", coverage.summary());
            }
            println!("{}", suite::timing(&results, wall));
            if let Some(j) = &args.junit {
                if let Err(e) = std::fs::write(j, suite::junit(&results)) {
                    eprintln!("harness: cannot write {j}: {e}");
                } else {
                    println!("junit: {j}");
                }
            }
            println!(
                "artifacts: {}",
                harness::paths::display(&harness::paths::artifacts_dir())
            );
            std::process::exit(suite::exit_code(&results));
        }
        other => {
            eprintln!("unknown command `{other}`\n{USAGE}");
            std::process::exit(exit::USAGE);
        }
    }
}
