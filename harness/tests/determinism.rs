//! The same scenario run twice on the embedded engine gives the same transcript, byte for byte.

use harness::plan::Project;
use harness::runner::{self, Ordered, RunOptions, Status};
use std::rc::Rc;

#[test]
fn same_scenario_twice_same_transcript_on_the_engine() {
    if harness::backend::availability(harness::model::BackendKind::Embedded).is_err() {
        eprintln!("skipped: the embedded backend is not compiled in");
        return;
    }
    let project = Project::load().unwrap();
    let mut opts = RunOptions::standard(&project);
    opts.snapshot = false;
    opts.write_artifacts = false;
    for file in [
        "scenarios/capsule/access.yaml",
        "scenarios/capsule/connections.yaml",
    ] {
        let path = harness::paths::root().join(file);
        let loaded =
            Rc::new(harness::plan::load(&project, &path).unwrap_or_else(|d| {
                panic!("{}", d.iter().map(|d| d.to_string()).collect::<String>())
            }));
        let trials: Vec<_> = runner::expand(&loaded)
            .into_iter()
            .filter(|t| t.backend.name() == "embedded")
            .take(2)
            .collect();
        for t in trials {
            let a = runner::run_trial(&project, &t, &opts);
            if a.status == Status::Infra {
                eprintln!(
                    "skipped {}: infrastructure error (canister build?):\n{}",
                    t.name, a.message
                );
                return;
            }
            assert_eq!(a.status, Status::Pass, "{}", a.message);
            let b = runner::run_trial(&project, &t, &opts);
            let ya = serde_json::to_string_pretty(&Ordered(a.transcript)).unwrap();
            let yb = serde_json::to_string_pretty(&Ordered(b.transcript)).unwrap();
            assert!(ya.len() > 1000);
            assert_eq!(ya, yb, "{} is not deterministic", t.name);
        }
    }
}
