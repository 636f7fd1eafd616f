//! The personal canister's capsule service is a Candid subtype of the backend's capsule service: a frontend
//! written against the backend's capsule API works unchanged against a personal canister.
//!
//! Both services are read from the checked-in `.did` files (the `candid` tests of each crate prove they
//! equal what the code exports), restricted to the capsule methods, and compared with Candid's own
//! subtype check. Deliberately broken copies prove the check is not vacuous.

use candid::types::subtype::{equal, subtype_with_config, OptReport};
use candid::types::{Type, TypeInner};
use candid::TypeEnv;
use candid_parser::utils::CandidSource;
use std::collections::{BTreeSet, HashSet};

/// The capsule API: every method a frontend of the capsule uses, on either canister.
const CAPSULE_METHODS: [&str; 18] = [
    "blob_read_chunk",
    "capsule_create",
    "capsule_get",
    "capsule_manifest",
    "capsule_update",
    "connection_add",
    "connection_remove",
    "connection_respond",
    "connections_list",
    "memories_list",
    "memory_create",
    "memory_delete",
    "memory_get",
    "memory_update",
    "upload_abort",
    "upload_begin",
    "upload_finish",
    "upload_put_chunk",
];

fn is_capsule_method(name: &str) -> bool {
    [
        "capsule_",
        "memory_",
        "memories_",
        "blob_",
        "upload_",
        "connection_",
        "connections_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn did(krate: &str) -> String {
    let path = format!("{}/../{krate}/{krate}.did", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A parsed service: its type environment and its methods (init arguments dropped).
struct Service {
    env: TypeEnv,
    methods: Vec<(String, Type)>,
}

fn parse(text: &str) -> Service {
    let (env, actor) = CandidSource::Text(text)
        .load()
        .expect("a valid Candid file");
    let actor = actor.expect("a main service");
    let methods = env.as_service(&actor).expect("a service type").to_vec();
    Service { env, methods }
}

impl Service {
    fn capsule_method_names(&self) -> BTreeSet<String> {
        self.methods
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| is_capsule_method(n))
            .collect()
    }

    fn restricted(&self) -> Type {
        TypeInner::Service(
            self.methods
                .iter()
                .filter(|(n, _)| is_capsule_method(n))
                .cloned()
                .collect(),
        )
        .into()
    }
}

/// Whether `new` (what a frontend talks to) can stand in for `old` (what it was written against), both
/// restricted to the capsule methods. The special `opt` rule is an error here: no silent coercions.
fn capsule_subtype(new: &str, old: &str) -> Result<(), String> {
    let new = parse(new);
    let old = parse(old);
    let mut env = new.env.clone();
    let old_t = env.merge_type(old.env.clone(), old.restricted());
    let new_t = new.restricted();
    let mut gamma = HashSet::new();
    subtype_with_config(OptReport::Error, &mut gamma, &env, &new_t, &old_t)
        .map_err(|e| e.to_string())
}

fn capsule_equal(a: &str, b: &str) -> Result<(), String> {
    let a = parse(a);
    let b = parse(b);
    let mut env = a.env.clone();
    let b_t = env.merge_type(b.env.clone(), b.restricted());
    let mut gamma = HashSet::new();
    equal(&mut gamma, &env, &a.restricted(), &b_t).map_err(|e| e.to_string())
}

#[test]
fn both_canisters_serve_exactly_the_capsule_methods() {
    let expected: BTreeSet<String> = CAPSULE_METHODS.iter().map(|s| s.to_string()).collect();
    assert_eq!(parse(&did("backend")).capsule_method_names(), expected);
    assert_eq!(parse(&did("personal")).capsule_method_names(), expected);
}

#[test]
fn personal_capsule_service_is_a_subtype_of_the_backends() {
    capsule_subtype(&did("personal"), &did("backend"))
        .unwrap_or_else(|e| panic!("personal is not a subtype of backend: {e}"));
}

#[test]
fn the_two_capsule_services_are_in_fact_equal() {
    // Stronger than needed, and true today: both canisters expand the same endpoint macro.
    capsule_subtype(&did("backend"), &did("personal")).unwrap();
    capsule_equal(&did("personal"), &did("backend")).unwrap();
}

#[test]
fn the_whole_personal_service_can_stand_in_for_the_backends_capsule_service() {
    // What a frontend sees: the personal canister's full service (with its import API) used where the
    // backend's capsule service is expected.
    let personal = parse(&did("personal"));
    let backend = parse(&did("backend"));
    let mut env = personal.env.clone();
    let old = env.merge_type(backend.env.clone(), backend.restricted());
    let new: Type = TypeInner::Service(personal.methods.clone()).into();
    subtype_with_config(OptReport::Error, &mut HashSet::new(), &env, &new, &old).unwrap();
    // The other way round fails: the backend has no import API.
    let personal_all: Type = TypeInner::Service(personal.methods.clone()).into();
    let mut env = backend.env.clone();
    let personal_all = env.merge_type(personal.env.clone(), personal_all);
    let backend_all: Type = TypeInner::Service(backend.methods.clone()).into();
    assert!(subtype_with_config(
        OptReport::Error,
        &mut HashSet::new(),
        &env,
        &backend_all,
        &personal_all
    )
    .is_err());
}

/// `text` with the one line that starts with `prefix` rewritten by `f` (`None` drops the line).
fn mutate_line(text: &str, prefix: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let hits = text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(hits, 1, "one line must start with {prefix:?}");
    text.lines()
        .filter_map(|l| {
            if l.starts_with(prefix) {
                f(l)
            } else {
                Some(l.to_string())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with exactly one occurrence of `from` replaced by `to`.
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur exactly once"
    );
    text.replacen(from, to, 1)
}

#[test]
fn the_check_is_not_vacuous() {
    let backend = did("backend");
    let personal = did("personal");
    let broken = [
        // An argument of another type.
        (
            "memory_get takes text",
            "Method memory_get",
            mutate(&personal, "memory_get : (nat64)", "memory_get : (text)"),
        ),
        // An extra required argument.
        (
            "connection_add takes one more argument",
            "Method connection_add",
            mutate(
                &personal,
                "connection_add : (principal, text)",
                "connection_add : (principal, text, nat8)",
            ),
        ),
        // A method missing.
        (
            "upload_abort is gone",
            "Method upload_abort",
            mutate_line(&personal, "  upload_abort :", |_| None),
        ),
        // A query turned into an update changes how a frontend must call it.
        (
            "capsule_get is an update",
            "Method capsule_get",
            mutate_line(&personal, "  capsule_get :", |l| {
                Some(l.replace(" query;", ";"))
            }),
        ),
        // A result record field the frontend reads, gone.
        (
            "Capsule has no bio",
            "Method capsule_",
            mutate(
                &personal,
                "type Capsule = record {\n  bio : text;\n",
                "type Capsule = record {\n",
            ),
        ),
        // A variant case the frontend may send, unknown.
        (
            "MemoryKind has no Video",
            "Method memory_",
            mutate(
                &personal,
                "type MemoryKind = variant { Note; Image; Document; Audio; Other; Video };",
                "type MemoryKind = variant { Note; Image; Document; Audio; Other };",
            ),
        ),
        // A new required input field the frontend does not send.
        (
            "CapsuleInput requires a field",
            "Method capsule_create",
            mutate(
                &personal,
                "type CapsuleInput = record { bio : text; name : text };",
                "type CapsuleInput = record { bio : text; name : text; avatar : blob };",
            ),
        ),
    ];
    for (what, method, text) in &broken {
        // The text still parses: the failure is the subtype check's, not the parser's.
        parse(text);
        let err = capsule_subtype(text, &backend).err().unwrap_or_else(|| {
            panic!("a personal canister where {what} still passed the subtype check")
        });
        assert!(
            err.contains(method),
            "{what}: the failure is not about {method:?}: {err}"
        );
    }
    // Compatible changes pass: a new optional input field, a new method outside the capsule API.
    let compatible = mutate(
        &personal,
        "type CapsuleInput = record { bio : text; name : text };",
        "type CapsuleInput = record { bio : text; name : text; avatar : opt blob };",
    );
    capsule_subtype(&compatible, &backend).unwrap();
    let extra = mutate_line(&personal, "  api_version :", |l| {
        Some(format!("{l}\n  extra : () -> ();"))
    });
    capsule_subtype(&extra, &backend).unwrap();
}
