//! One libtest-mimic trial per scenario × backend × variant, named `dir/file::backend::variant`.
//!
//! `cargo test -p harness --test scenarios -- capsule/basic` filters by name as usual;
//! `SCENARIO_TAGS=smoke,!slow` filters by tags; `SCENARIO_BACKEND=embedded` by backend;
//! `SCENARIO_JUNIT=path.xml` writes JUnit XML; a file that fails lint becomes a failing `<file>::lint`
//! trial. After the run: a coverage summary and the suite's timing.

use harness::plan::Project;
use harness::runner::{Coverage, RunOptions, Status};
use harness::suite::{self, Finished};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn main() {
    let args = Arguments::from_args();
    let project = match Project::load() {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("harness: {e}");
            std::process::exit(3);
        }
    };
    let files = suite::files(&[]);
    let (loaded, bad) = suite::load_all(&project, &files);
    let results: Arc<Mutex<Vec<Finished>>> = Arc::default();
    let coverage: Arc<Mutex<Coverage>> = Arc::default();
    let mut trials = vec![];
    for (file, diags) in bad {
        let id = harness::paths::scenario_id(&file);
        let text: String = diags.iter().map(|d| d.to_string()).collect();
        trials.push(Trial::test(format!("{id}::lint"), move || {
            Err(Failed::from(format!("lint errors:\n{text}")))
        }));
    }
    let opts = {
        let mut o = RunOptions::standard(&project);
        o.snapshot = std::env::var("SCENARIO_SNAPSHOTS")
            .map(|v| v != "0")
            .unwrap_or(true);
        o
    };
    for t in suite::trials(&loaded) {
        let project = project.clone();
        let opts = opts.clone();
        let results = results.clone();
        let coverage = coverage.clone();
        let name = t.name.clone();
        let tref = suite::TrialRef::of(&t);
        trials.push(Trial::ignorable_test(name, move || {
            let t = tref.resolve(&project).map_err(Failed::from)?;
            let (r, _) = suite::run_one(&project, &t, &opts);
            coverage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .merge(&r.coverage);
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Finished {
                    name: t.name.clone(),
                    status: r.status,
                    message: r.message.clone(),
                    elapsed: r.elapsed,
                });
            match r.status {
                Status::Pass => Ok(Completion::Completed),
                Status::Skip => Ok(Completion::ignored_with(r.message)),
                Status::Fail | Status::Infra => Err(Failed::from(r.message)),
            }
        }));
    }
    let listing = args.list;
    let wall = Instant::now();
    let conclusion = libtest_mimic::run(&args, trials);
    if !listing {
        let results = results.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !results.is_empty() {
            println!();
            print!(
                "{}",
                coverage.lock().unwrap_or_else(|e| e.into_inner()).summary()
            );
            println!("{}", suite::timing(&results, wall.elapsed()));
            if let Ok(path) = std::env::var("SCENARIO_JUNIT") {
                match std::fs::write(&path, suite::junit(&results)) {
                    Ok(()) => println!("junit: {path}"),
                    Err(e) => eprintln!("cannot write {path}: {e}"),
                }
            }
        }
    }
    conclusion.exit();
}
