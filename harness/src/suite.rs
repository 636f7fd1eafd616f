//! Collecting trials from scenario files, and what the test target and the CLI share: JUnit XML,
//! timing summaries, exit codes.

use crate::diag::Diagnostic;
use crate::plan::{self, Loaded, Project};
use crate::runner::{self, Coverage, Status, Trial, TrialResult};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// CLI exit codes.
pub mod exit {
    pub const PASS: i32 = 0;
    /// Bad usage.
    pub const USAGE: i32 = 1;
    /// Lint or parse errors.
    pub const LINT: i32 = 2;
    /// Build, backend or harness errors.
    pub const INFRA: i32 = 3;
    /// Assertion or snapshot mismatch.
    pub const ASSERTION: i32 = 4;
    /// Everything selected was skipped (unmet `requires`).
    pub const SKIPPED: i32 = 5;
}

/// Scenario files from arguments (files or directories); default: `scenarios/`.
pub fn files(args: &[String]) -> Vec<PathBuf> {
    if args.is_empty() {
        return crate::paths::discover(&crate::paths::scenarios_dir());
    }
    let mut out = vec![];
    for a in args {
        let p = PathBuf::from(a);
        let p = if p.is_absolute() || p.exists() {
            p
        } else {
            crate::paths::root().join(a)
        };
        if p.is_dir() {
            out.extend(crate::paths::discover(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A file that failed lint, with its errors.
pub type LintFailure = (PathBuf, Vec<Diagnostic>);

/// Load every file: the loaded scenarios and the lint errors.
pub fn load_all(project: &Project, files: &[PathBuf]) -> (Vec<Rc<Loaded>>, Vec<LintFailure>) {
    let mut ok = vec![];
    let mut bad = vec![];
    for f in files {
        let f = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        match plan::load(project, &f) {
            Ok(l) => ok.push(Rc::new(l)),
            Err(d) => bad.push((f.clone(), d)),
        }
    }
    (ok, bad)
}

/// Trials of the loaded scenarios, filtered by `SCENARIO_TAGS`.
pub fn trials(loaded: &[Rc<Loaded>]) -> Vec<Trial> {
    let tags = std::env::var("SCENARIO_TAGS").unwrap_or_default();
    loaded
        .iter()
        .filter(|l| runner::tags_selected(l, &tags))
        .flat_map(runner::expand)
        .collect()
}

/// One finished trial, for reports.
#[derive(Clone, Debug)]
pub struct Finished {
    pub name: String,
    pub status: Status,
    pub message: String,
    pub elapsed: Duration,
}

/// Run one trial including its skip check and snapshot.
pub fn run_one(
    project: &Project,
    t: &Trial,
    opts: &runner::RunOptions,
) -> (TrialResult, Option<String>) {
    if let Some(why) = runner::skip_reason(project, t) {
        return (
            TrialResult {
                status: Status::Skip,
                message: why,
                transcript: serde_json::Value::Null,
                coverage: Coverage::default(),
                elapsed: Duration::ZERO,
            },
            None,
        );
    }
    let mut r = runner::run_trial(project, t, opts);
    let mut snap = None;
    if r.status == Status::Pass && opts.snapshot && t.known_bug().is_none() {
        if let Err(e) = runner::snapshot(t, &r.transcript) {
            r.status = Status::Fail;
            r.message = e.clone();
            // a cell passes only with its snapshot
            for v in r.coverage.cells.values_mut() {
                *v = false;
            }
            for c in r.coverage.matrix.values_mut() {
                for (_, ok) in &mut c.trials {
                    *ok = false;
                }
            }
            snap = Some(e);
        }
    }
    (r, snap)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML for CI.
pub fn junit(results: &[Finished]) -> String {
    let failures = results.iter().filter(|r| r.status == Status::Fail).count();
    let errors = results.iter().filter(|r| r.status == Status::Infra).count();
    let skipped = results.iter().filter(|r| r.status == Status::Skip).count();
    let total: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<testsuites><testsuite name=\"scenarios\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        results.len()
    ));
    for r in results {
        let (class, name) = r.name.split_once("::").unwrap_or(("scenarios", &r.name));
        s.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml(class),
            xml(name),
            r.elapsed.as_secs_f64()
        ));
        match r.status {
            Status::Pass => {}
            Status::Skip => s.push_str(&format!("<skipped message=\"{}\"/>", xml(&r.message))),
            Status::Fail => s.push_str(&format!(
                "<failure message=\"assertion failed\">{}</failure>",
                xml(&r.message)
            )),
            Status::Infra => s.push_str(&format!(
                "<error message=\"infrastructure error\">{}</error>",
                xml(&r.message)
            )),
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("</testsuite></testsuites>\n");
    s
}

/// `suite: N trials (p passed, f failed, s skipped) in X s; median per trial Y ms`
pub fn timing(results: &[Finished], wall: Duration) -> String {
    let mut ran: Vec<Duration> = results
        .iter()
        .filter(|r| r.status != Status::Skip)
        .map(|r| r.elapsed)
        .collect();
    ran.sort();
    let median = if ran.is_empty() {
        Duration::ZERO
    } else {
        ran[ran.len() / 2]
    };
    let max = ran.last().copied().unwrap_or_default();
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    format!(
        "suite: {} trials ({} passed, {} failed, {} infra errors, {} skipped) in {:.2} s wall; per trial median {:.1} ms, max {:.1} ms",
        results.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Infra),
        count(Status::Skip),
        wall.as_secs_f64(),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    )
}

/// Exit code for a set of results.
pub fn exit_code(results: &[Finished]) -> i32 {
    if results.iter().any(|r| r.status == Status::Infra) {
        exit::INFRA
    } else if results.iter().any(|r| r.status == Status::Fail) {
        exit::ASSERTION
    } else if !results.is_empty() && results.iter().all(|r| r.status == Status::Skip) {
        exit::SKIPPED
    } else {
        exit::PASS
    }
}

/// Print lint errors; true if there were any.
pub fn print_lint(bad: &[(PathBuf, Vec<Diagnostic>)]) -> bool {
    for (_, ds) in bad {
        for d in ds {
            eprint!("{d}");
        }
    }
    !bad.is_empty()
}

pub fn relative(p: &Path) -> String {
    crate::paths::display(p)
}

/// A trial named by its file and full name: `Send`, unlike [`Trial`] (Candid types are `Rc`-based),
/// so test threads re-load the scenario themselves (cached per thread).
#[derive(Clone, Debug)]
pub struct TrialRef {
    pub file: PathBuf,
    pub name: String,
}

impl TrialRef {
    pub fn of(t: &Trial) -> TrialRef {
        TrialRef {
            file: t.scenario.file.clone(),
            name: t.name.clone(),
        }
    }

    /// The trial, loaded in this thread.
    pub fn resolve(&self, project: &Project) -> Result<Trial, String> {
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<PathBuf, Rc<Loaded>>> = Default::default();
        }
        let loaded = CACHE.with(|c| c.borrow().get(&self.file).cloned());
        let loaded = match loaded {
            Some(l) => l,
            None => {
                let l = Rc::new(
                    plan::load(project, &self.file)
                        .map_err(|ds| ds.iter().map(|d| d.to_string()).collect::<String>())?,
                );
                CACHE.with(|c| c.borrow_mut().insert(self.file.clone(), l.clone()));
                l
            }
        };
        runner::expand(&loaded)
            .into_iter()
            .find(|t| t.name == self.name)
            .ok_or_else(|| format!("trial {} disappeared", self.name))
    }
}
