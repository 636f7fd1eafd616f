//! One malformed file per lint error kind; each message must point at the right line.

mod common;

use harness::diag::ErrorKind;

const HEAD: &str = "schema: 1
identities: [alice]
canisters:
  notes:
    crate: toy
    init: {admins: []}
";

/// Lint `text`; expect exactly one error of `kind` on `line`, whose message contains `needle`.
fn expect_error(text: &str, kind: ErrorKind, line: usize, needle: &str) {
    let (project, dir) = common::project();
    let file = common::write(&dir, "bad.yaml", text);
    let diags = match harness::plan::load(&project, &file) {
        Ok(_) => panic!("expected a {kind:?} error, the file linted clean:\n{text}"),
        Err(d) => d,
    };
    let d = diags
        .iter()
        .find(|d| d.kind == kind && d.message.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} error in:\n{}",
                diags.iter().map(|d| d.to_string()).collect::<String>()
            )
        });
    let rendered = d.to_string();
    assert_eq!(d.line(), Some(line), "wrong line for {kind:?}:\n{rendered}");
    assert!(
        d.message.contains(needle),
        "message for {kind:?} lacks `{needle}`:\n{rendered}"
    );
    // `file:line:col`, the offending line and a caret
    assert!(
        rendered.contains(&format!("bad.yaml:{line}:")),
        "{rendered}"
    );
    let src_line = text.lines().nth(line - 1).unwrap();
    assert!(rendered.contains(src_line), "{rendered}");
    assert!(rendered.contains('^'), "{rendered}");
}

#[test]
fn yaml_syntax() {
    expect_error(
        "schema: 1\nname: a: b\nsteps: []\n",
        ErrorKind::Yaml,
        2,
        "YAML syntax error",
    );
}

#[test]
fn unknown_top_level_key_with_suggestion() {
    expect_error(
        &format!("{HEAD}stpes: []\nsteps: []\n"),
        ErrorKind::UnknownKey,
        7,
        "did you mean `steps`",
    );
}

#[test]
fn unknown_step_key_with_suggestion() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.count\n    expcet: 1\n"),
        ErrorKind::UnknownKey,
        9,
        "did you mean `expect`",
    );
}

#[test]
fn missing_key() {
    expect_error(
        "schema: 1\ncanisters:\n  notes:\n    init: {}\nsteps: []\n",
        ErrorKind::MissingKey,
        4,
        "missing key `crate`",
    );
}

#[test]
fn duplicate_key() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.count\n    as: alice\n    as: alice\n"),
        ErrorKind::DuplicateKey,
        10,
        "duplicate key `as`",
    );
}

#[test]
fn shape() {
    expect_error(
        &format!("{HEAD}steps:\n  - tick: lots\n"),
        ErrorKind::Shape,
        8,
        "",
    );
}

#[test]
fn schema_version() {
    expect_error(
        "schema: 2\nsteps: []\n",
        ErrorKind::Schema,
        1,
        "unsupported schema version 2",
    );
    expect_error(
        "name: x\nsteps: []\n",
        ErrorKind::Schema,
        1,
        "missing `schema: 1`",
    );
}

#[test]
fn step_without_or_with_two_actions() {
    expect_error(
        &format!("{HEAD}steps:\n  - id: nothing\n    as: alice\n"),
        ErrorKind::StepAction,
        8,
        "no action",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.count\n    tick: 1\n"),
        ErrorKind::StepAction,
        8,
        "2 actions (call, tick)",
    );
}

#[test]
fn step_ids() {
    expect_error(
        &format!("{HEAD}steps:\n  - id: a\n    tick: 1\n  - id: a\n    tick: 2\n"),
        ErrorKind::StepId,
        10,
        "already used at line 8",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - await: nope\n"),
        ErrorKind::StepId,
        8,
        "no earlier `submit`",
    );
}

#[test]
fn unknown_canister() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: note.count\n"),
        ErrorKind::UnknownCanister,
        8,
        "did you mean `notes`",
    );
}

#[test]
fn unknown_identity() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.count\n    as: alcie\n"),
        ErrorKind::UnknownIdentity,
        9,
        "did you mean `alice`",
    );
}

#[test]
fn unknown_method() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.cout\n"),
        ErrorKind::UnknownMethod,
        8,
        "did you mean `count`",
    );
}

#[test]
fn argument_type_errors() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.put\n    args: [title, 0xzz]\n"),
        ErrorKind::Type,
        9,
        "hex",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.get\n    args: -1\n"),
        ErrorKind::Type,
        9,
        "out of range",
    );
    expect_error(&format!("{HEAD}steps:\n  - call: notes.failpoint_arm\n    args:\n      name: x\n      tmes: 1\n"), ErrorKind::Type, 11, "did you mean `times`");
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.put\n    args: [a]\n"),
        ErrorKind::Type,
        9,
        "takes 2 arguments",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.put\n    args_candid: '(\"a\", 5)'\n"),
        ErrorKind::Type,
        9,
        "Candid text does not fit",
    );
}

#[test]
fn pattern_type_errors() {
    expect_error(
        &format!(
            "{HEAD}steps:\n  - call: notes.put\n    args: [a, 0x00]\n    expect: {{Err: TooBig}}\n"
        ),
        ErrorKind::Type,
        10,
        "`TooBig` is not a case",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - query: notes.list\n    expect:\n      each: {{titel: x}}\n"),
        ErrorKind::Type,
        10,
        "did you mean `title`",
    );
}

#[test]
fn init_argument_type_error() {
    expect_error("schema: 1\ncanisters:\n  notes:\n    crate: toy\n    init: {admins: [nobody]}\nsteps: []\n", ErrorKind::Type, 5, "neither an identity");
}

#[test]
fn undefined_capture() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.get\n    args: ${{note}}\n  - call: notes.put\n    args: [a, 0x00]\n    capture: {{note: $.Ok.id}}\n"),
        ErrorKind::UndefinedCapture,
        9,
        "`${note}` is not defined",
    );
}

#[test]
fn capture_path() {
    expect_error(
        &format!("{HEAD}steps:\n  - call: notes.put\n    args: [a, 0x00]\n    capture: {{note: $.Ok.idd}}\n"),
        ErrorKind::CapturePath,
        10,
        "did you mean `id`",
    );
}

#[test]
fn unknown_feature() {
    expect_error(
        "schema: 1\ncanisters:\n  notes:\n    crate: toy\n    features: [failpoint]\n    init: {admins: []}\nsteps: []\n",
        ErrorKind::UnknownFeature,
        5,
        "did you mean `failpoints`",
    );
}

#[test]
fn unknown_crate_is_a_build_error() {
    expect_error(
        "schema: 1\ncanisters:\n  notes:\n    crate: tyo\n    init: {admins: []}\nsteps: []\n",
        ErrorKind::Build,
        4,
        "did you mean `toy`",
    );
}

#[test]
fn include_errors() {
    let text = format!(
        "{HEAD}includes:\n  put_one:\n    params: [who]\n    steps:\n      - call: notes.put\n        as: ${{who}}\n        args: [a, 0x00]\nsteps:\n  - include: put_once\n    with: {{who: alice}}\n"
    );
    expect_error(&text, ErrorKind::Include, 15, "did you mean `put_one`");
    let text = format!(
        "{HEAD}includes:\n  put_one:\n    params: [who]\n    steps:\n      - call: notes.put\n        as: ${{who}}\n        args: [a, 0x00]\nsteps:\n  - include: put_one\n    with: {{whom: alice}}\n"
    );
    expect_error(&text, ErrorKind::Include, 16, "no parameter `whom`");
}

#[test]
fn matcher_errors() {
    expect_error(
        &format!("{HEAD}steps:\n  - query: notes.list\n    expect: {{len: 1, regex: \"x\"}}\n"),
        ErrorKind::Matcher,
        9,
        "`regex` matches text",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - query: notes.count\n    expect: {{regex: \"x\"}}\n"),
        ErrorKind::Matcher,
        9,
        "matches text",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - query: notes.version\n    expect: {{regex: \"(\"}}\n"),
        ErrorKind::Matcher,
        9,
        "bad regex",
    );
}

#[test]
fn duration() {
    expect_error(
        &format!("{HEAD}steps:\n  - advance_time: 5 fortnights\n"),
        ErrorKind::Duration,
        8,
        "cannot read the duration",
    );
}

#[test]
fn variant_without_stages() {
    let text = format!(
        "{HEAD}variants:\n  upgrade_at_each_stage:\n    - canister: notes\nsteps:\n  - tick: 1\n"
    );
    expect_error(&text, ErrorKind::Variant, 9, "stage: true");
}

#[test]
fn failpoint_needs_the_feature() {
    expect_error(
        &format!("{HEAD}steps:\n  - failpoint: notes\n    args: {{name: put}}\n"),
        ErrorKind::Failpoint,
        8,
        "`failpoints` feature",
    );
}

#[test]
fn a_good_file_lints_clean_and_schema_prints() {
    let (project, dir) = common::project();
    let file = common::write(
        &dir,
        "good.yaml",
        &format!("{HEAD}steps:\n  - call: notes.put\n    as: alice\n    args: [a, 0x00]\n    capture: {{id: $.Ok.id}}\n  - query: notes.get\n    as: alice\n    args: ${{id}}\n    expect: {{Ok: 0x00}}\n"),
    );
    harness::plan::load(&project, &file)
        .unwrap_or_else(|d| panic!("{}", d.iter().map(|d| d.to_string()).collect::<String>()));
    let schema = harness::model::json_schema();
    assert!(schema.contains("\"steps\""));
    assert!(schema.contains("tick_until"));
    let v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(v["title"], "Scenario");
}

#[test]
fn repeat_needs_steps_and_a_sane_count() {
    expect_error(
        &format!("{HEAD}steps:\n  - id: r\n    repeat: 3\n"),
        ErrorKind::StepAction,
        9,
        "needs `steps:`",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - id: r\n    repeat: 0\n    steps: [{{tick: 1}}]\n"),
        ErrorKind::StepAction,
        9,
        "1 to 100000",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - tick: 1\n    var: k\n"),
        ErrorKind::StepAction,
        9,
        "belong to a `repeat`",
    );
    // an error inside the repeated steps is reported once, at its line
    let text =
        format!("{HEAD}steps:\n  - id: r\n    repeat: 5\n    steps:\n      - call: notes.nope\n");
    let (project, dir) = common::project();
    let file = common::write(&dir, "bad.yaml", &text);
    let diags = harness::plan::load(&project, &file).expect_err("lint error");
    assert_eq!(
        diags
            .iter()
            .filter(|d| d.kind == ErrorKind::UnknownMethod)
            .count(),
        1,
        "{diags:?}"
    );
    assert_eq!(diags[0].line(), Some(11));
}

#[test]
fn canisters_cycles_and_at_are_checked() {
    expect_error(
        &format!("{HEAD}steps:\n  - canisters: {{expect: {{count: x}}}}\n"),
        ErrorKind::Type,
        8,
        "",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - canisters: {{}}\n    capture: {{p: $.nope}}\n"),
        ErrorKind::CapturePath,
        9,
        "nope",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - cycles: {{canister: nobody, set: 0}}\n"),
        ErrorKind::UnknownCanister,
        8,
        "neither a canister",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - cycles: {{canister: notes}}\n"),
        ErrorKind::Type,
        8,
        "exactly one of `set` or `add`",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - tick: 1\n    at: notes\n"),
        ErrorKind::Type,
        9,
        "`at` applies to",
    );
    expect_error(
        &format!("{HEAD}steps:\n  - check: notes.count\n    at: \"${{pid}}\"\n"),
        ErrorKind::UndefinedCapture,
        9,
        "pid",
    );
}
