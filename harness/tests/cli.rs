//! The `harness` CLI: exit codes for lint errors, skips and usage; `schema` prints JSON.

use std::process::Command;

fn harness(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn lint_errors_exit_2_with_file_line_col() {
    let dir = std::env::temp_dir().join(format!("harness-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.yaml");
    std::fs::write(&f, "schema: 1\ncanisters:\n  b:\n    crate: backend\n    init: {admins: []}\nsteps:\n  - call: b.capsule_craete\n").unwrap();
    let (code, text) = harness(&["lint", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bad.yaml:7:"), "{text}");
    assert!(text.contains("did you mean `capsule_create`"), "{text}");
    let (code, text) = harness(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
}

#[test]
fn starter_scenarios_lint_clean() {
    let (code, text) = harness(&["lint"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn unmet_backend_exits_5_with_reason() {
    if std::env::var("POCKET_IC_BIN").is_ok() {
        return;
    }
    let (code, text) = harness(&[
        "run",
        "scenarios/capsule/access.yaml",
        "--backend",
        "pocketic",
    ]);
    assert_eq!(code, 5, "{text}");
    let reason = if cfg!(feature = "pocketic") {
        "POCKET_IC_BIN"
    } else {
        "cargo feature `pocketic`"
    };
    assert!(text.contains(reason), "{text}");
}

#[test]
fn schema_and_usage() {
    let (code, text) = harness(&["schema"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["properties"]["steps"].is_object());
    let (code, _) = harness(&["frobnicate"]);
    assert_eq!(code, 1);
}

#[test]
fn ci_rejects_new_snapshots_and_update_accepts_them() {
    if harness::backend::availability(harness::model::BackendKind::Embedded).is_err() {
        eprintln!("skipped: the embedded backend is not compiled in");
        return;
    }
    let dir = std::env::temp_dir().join(format!("harness-snaps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |update: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args([
            "run",
            "scenarios/capsule/connections.yaml",
            "--backend",
            "embedded",
            "--variant",
            "base",
        ])
        .env("CI", "true")
        .env("SCENARIO_SNAPSHOT_DIR", &dir)
        .env("SCENARIO_ARTIFACTS", dir.join("artifacts"))
        .env_remove("INSTA_UPDATE")
        .env_remove("INSTA_FORCE_PASS");
        if update {
            cmd.arg("--update");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let snaps = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().to_string_lossy().contains(".snap"))
            .count()
    };
    let (code, text) = run(false);
    if code == 3 {
        eprintln!("skipped: infrastructure error (canister build?):\n{text}");
        return;
    }
    assert_eq!(code, 4, "a new snapshot must fail under CI=true:\n{text}");
    assert_eq!(snaps(), 0, "nothing may be written under CI=true");
    let (code, text) = run(true);
    assert_eq!(code, 0, "{text}");
    assert_eq!(snaps(), 1);
    // a second process produces the same transcript: the snapshot matches
    let (code, text) = run(false);
    assert_eq!(code, 0, "{text}");
}
