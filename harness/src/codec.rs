//! Values: YAML ⇄ Candid, typed by the canister's `.did` (`candid_parser`), and expectation patterns.
//!
//! YAML conventions: records are maps, variants are single-key maps (or a bare name when the case has
//! no payload), `opt` is `null` or the value, big numbers are strings (`"1_000_000"`, `"100T"`), blobs are
//! hex (`0x…`) or generators (`{repeat: "ab", len: 1048576}`, `{bytes_of_len: N, seed: k}`,
//! `{utf8: "text"}`), principals are identity or canister names. `{candid: "<text>"}` anywhere is the
//! Candid-text escape hatch.

use crate::yaml::{Kind, Node, Span};
use candid::types::value::{IDLField, IDLValue, VariantValue};
use candid::types::{Field, Function, Label, Type, TypeInner};
use candid::{IDLArgs, Int, Nat, Principal, TypeEnv};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// A canister's Candid interface.
#[derive(Clone)]
pub struct Interface {
    pub env: TypeEnv,
    pub service: Type,
    pub init_args: Vec<Type>,
}

impl std::fmt::Debug for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interface({} methods)", self.methods().len())
    }
}

impl Interface {
    pub fn load_file(path: &Path) -> Result<Interface, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_text(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_text(text: &str) -> Result<Interface, String> {
        let (env, actor) = candid_parser::utils::CandidSource::Text(text)
            .load()
            .map_err(|e| e.to_string())?;
        let actor = actor.ok_or("the .did file has no service")?;
        let (init_args, service) = match actor.as_ref() {
            TypeInner::Class(args, s) => (args.clone(), s.clone()),
            _ => (vec![], actor.clone()),
        };
        Ok(Interface {
            env,
            service,
            init_args,
        })
    }

    pub fn method<'a>(&'a self, name: &'a str) -> Option<&'a Function> {
        self.env.get_method(&self.service, name).ok()
    }

    pub fn methods(&self) -> Vec<String> {
        self.env
            .as_service(&self.service)
            .map(|s| s.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }

    pub fn is_query(&self, name: &str) -> bool {
        self.method(name).map(|f| f.is_query()).unwrap_or(false)
    }

    /// The type patterns and captures of `method`'s reply are checked against: the single return type,
    /// or a tuple of them.
    pub fn ret_type(&self, method: &str) -> Option<Type> {
        self.method(method).map(|f| tuple_type(&f.rets))
    }

    /// Every variant case name reachable from the method's return type (for coverage).
    pub fn trace(&self, t: &Type) -> Type {
        trace(&self.env, t)
    }
}

pub fn tuple_type(ts: &[Type]) -> Type {
    match ts.len() {
        1 => ts[0].clone(),
        0 => TypeInner::Null.into(),
        _ => TypeInner::Record(
            ts.iter()
                .enumerate()
                .map(|(i, t)| Field {
                    id: Label::Unnamed(i as u32).into(),
                    ty: t.clone(),
                })
                .collect(),
        )
        .into(),
    }
}

fn trace(env: &TypeEnv, t: &Type) -> Type {
    match t.as_ref() {
        TypeInner::Var(_) | TypeInner::Knot(_) => env.trace_type(t).unwrap_or_else(|_| t.clone()),
        _ => t.clone(),
    }
}

/// How names and `${vars}` are resolved while converting.
pub trait Resolve {
    /// An identity or canister logical name (or `None` if unknown).
    fn principal(&self, name: &str) -> Option<Principal>;
    /// The value of a `${name}`; `None` when undefined.
    fn var(&self, name: &str) -> Option<Node>;
    /// Lint mode: `${…}` stands for any value of the right type.
    fn lenient(&self) -> bool {
        false
    }
    /// Known names, for suggestions.
    fn names(&self) -> Vec<String> {
        vec![]
    }
    /// The built wasm of a canister of the scenario (`{wasm: name}` blobs).
    fn wasm(&self, _canister: &str) -> Option<Vec<u8>> {
        None
    }
    /// Whether `${name}` is written in the scenario (a var, a case var or an include parameter), so
    /// that `${…}` inside its value is interpolated too; captured values are taken as they are.
    fn template(&self, _name: &str) -> bool {
        false
    }
}

/// An error at a YAML position.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueError {
    pub span: Span,
    pub message: String,
    /// "type", "undefined-capture", "matcher"
    pub kind: &'static str,
}

fn err(span: Span, message: impl Into<String>) -> ValueError {
    ValueError {
        span,
        message: message.into(),
        kind: "type",
    }
}

pub fn var_ref(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    if !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
        Some(inner)
    } else {
        None
    }
}

/// Every `${name}` mentioned in a string.
pub fn var_refs(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Replace `${name}` inside a node: a whole-string reference takes the variable's value (any shape), an
/// embedded one is replaced by the variable's text.
pub fn interpolate(node: &Node, r: &dyn Resolve) -> Result<Node, ValueError> {
    interpolate_at(node, r, 0)
}

fn interpolate_at(node: &Node, r: &dyn Resolve, depth: usize) -> Result<Node, ValueError> {
    Ok(match &node.kind {
        Kind::Str(s) if s.contains("${") => {
            if let Some(name) = var_ref(s) {
                match r.var(name) {
                    Some(mut v) => {
                        relocate(&mut v, node.span);
                        if r.template(name) {
                            if depth > 16 {
                                return Err(err(
                                    node.span,
                                    format!("`${{{name}}}` refers to itself (through other vars)"),
                                ));
                            }
                            v = interpolate_at(&v, r, depth + 1)?;
                        }
                        v
                    }
                    None if r.lenient() => node.clone(),
                    None => return Err(undefined(node.span, name, r)),
                }
            } else {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let after = &rest[i + 2..];
                    let j = after
                        .find('}')
                        .ok_or_else(|| err(node.span, "unterminated `${`"))?;
                    let name = &after[..j];
                    match r.var(name) {
                        Some(v) => out.push_str(&scalar_text(&v).ok_or_else(|| {
                            err(
                                node.span,
                                format!(
                                    "`${{{name}}}` is not a scalar and cannot be embedded in text"
                                ),
                            )
                        })?),
                        None if r.lenient() => out.push('x'),
                        None => return Err(undefined(node.span, name, r)),
                    }
                    rest = &after[j + 1..];
                }
                out.push_str(rest);
                Node {
                    span: node.span,
                    kind: Kind::Str(out),
                }
            }
        }
        Kind::Seq(items) => Node {
            span: node.span,
            kind: Kind::Seq(
                items
                    .iter()
                    .map(|n| interpolate_at(n, r, depth))
                    .collect::<Result<_, _>>()?,
            ),
        },
        Kind::Map(entries) => Node {
            span: node.span,
            kind: Kind::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), interpolate_at(v, r, depth)?)))
                    .collect::<Result<_, ValueError>>()?,
            ),
        },
        _ => node.clone(),
    })
}

/// Interpolate a plain string field (names, paths).
pub fn interpolate_str(s: &str, span: Span, r: &dyn Resolve) -> Result<String, ValueError> {
    let n = interpolate(
        &Node {
            span,
            kind: Kind::Str(s.to_string()),
        },
        r,
    )?;
    scalar_text(&n).ok_or_else(|| err(span, "expected a name"))
}

fn undefined(span: Span, name: &str, r: &dyn Resolve) -> ValueError {
    let names = r.names();
    ValueError {
        span,
        message: format!(
            "`${{{name}}}` is not defined (not a var, an include parameter or an earlier capture){}",
            crate::diag::did_you_mean(name, names.iter().map(String::as_str))
        ),
        kind: "undefined-capture",
    }
}

fn relocate(n: &mut Node, span: Span) {
    n.span = span;
    match &mut n.kind {
        Kind::Seq(v) => v.iter_mut().for_each(|c| relocate(c, span)),
        Kind::Map(m) => m.iter_mut().for_each(|(k, v)| {
            relocate(k, span);
            relocate(v, span)
        }),
        _ => {}
    }
}

fn scalar_text(n: &Node) -> Option<String> {
    match &n.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        Kind::Float(f) => Some(f.to_string()),
        Kind::Bool(b) => Some(b.to_string()),
        Kind::Null => Some("null".into()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// YAML → Candid
// ---------------------------------------------------------------------------------------------

/// Parse a number written as YAML int or string (`"1_000"`, `"100T"`, `"2.5B"`).
pub fn parse_big(n: &Node) -> Option<i128> {
    match &n.kind {
        Kind::Int(i) => Some(*i),
        Kind::Str(s) => parse_big_str(s),
        Kind::Float(f) if f.fract() == 0.0 => Some(*f as i128),
        _ => None,
    }
}

pub fn parse_big_str(s: &str) -> Option<i128> {
    let s: String = s.chars().filter(|c| *c != '_').collect();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1_000i128),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'B' | 'G' => (&s[..s.len() - 1], 1_000_000_000),
        'T' => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s.as_str(), 1),
    };
    if let Ok(i) = num.parse::<i128>() {
        return i.checked_mul(mult);
    }
    if mult > 1 {
        let f: f64 = num.parse().ok()?;
        let v = f * mult as f64;
        if v.fract() == 0.0 {
            return Some(v as i128);
        }
    }
    None
}

fn big_string(n: &Node) -> Option<String> {
    if let Some(i) = parse_big(n) {
        return Some(i.to_string());
    }
    match &n.kind {
        Kind::Str(s) => {
            let t: String = s.chars().filter(|c| *c != '_').collect();
            let digits = t.strip_prefix('-').unwrap_or(&t);
            (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then_some(t)
        }
        _ => None,
    }
}

/// Decode a blob written as hex (`0x…` or plain), or produced by a generator map.
pub fn blob(n: &Node) -> Result<Vec<u8>, ValueError> {
    blob_with(n, &NoResolve)
}

struct NoResolve;
impl Resolve for NoResolve {
    fn principal(&self, _: &str) -> Option<Principal> {
        None
    }
    fn var(&self, _: &str) -> Option<Node> {
        None
    }
}

/// A blob, with `{wasm: <canister>}` (the canister's built wasm) available through the resolver.
pub fn blob_with(n: &Node, r: &dyn Resolve) -> Result<Vec<u8>, ValueError> {
    match &n.kind {
        Kind::Str(s) => {
            let h = s.strip_prefix("0x").unwrap_or(s);
            let h: String = h
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '_')
                .collect();
            hex::decode(&h).map_err(|e| {
                err(
                    n.span,
                    format!("expected a blob in hex ({e}); use {{utf8: \"…\"}} for text"),
                )
            })
        }
        Kind::Null => Ok(vec![]),
        Kind::Seq(items) => items
            .iter()
            .map(|i| match i.kind {
                Kind::Int(b) if (0..=255).contains(&b) => Ok(b as u8),
                _ => Err(err(i.span, "expected a byte (0..255)")),
            })
            .collect(),
        Kind::Map(_) => {
            let len = |key: &str| -> Result<Option<usize>, ValueError> {
                match n.get(key) {
                    None => Ok(None),
                    Some(v) => parse_big(v)
                        .and_then(|i| usize::try_from(i).ok())
                        .map(Some)
                        .ok_or_else(|| {
                            err(v.span, format!("`{key}` must be a non-negative integer"))
                        }),
                }
            };
            if let Some(inner) = n.get("sha256_of") {
                return Ok(Sha256::digest(blob_with(inner, r)?).to_vec());
            }
            if let Some(inner) = n.get("slice_of") {
                let whole = blob_with(inner, r)?;
                let off = len("offset")?.unwrap_or(0);
                let l = len("len")?.unwrap_or(whole.len().saturating_sub(off));
                if off + l > whole.len() && r.lenient() {
                    // lint: the real bytes (a built wasm) are not known yet
                    return Ok(vec![]);
                }
                if off + l > whole.len() {
                    return Err(err(
                        n.span,
                        format!(
                            "slice {off}..{} is outside the {} bytes",
                            off + l,
                            whole.len()
                        ),
                    ));
                }
                return Ok(whole[off..off + l].to_vec());
            }
            if let Some(c) = n.get("wasm") {
                let name = c
                    .as_str()
                    .ok_or_else(|| err(c.span, "`wasm` takes a canister name"))?;
                return r.wasm(name).ok_or_else(|| {
                    err(
                        c.span,
                        format!("`{name}` is not a canister of this scenario"),
                    )
                });
            }
            if let Some(t) = n.get("utf8") {
                let t = t.as_str().ok_or_else(|| err(t.span, "`utf8` takes text"))?;
                return Ok(t.as_bytes().to_vec());
            }
            if let Some(p) = n.get("repeat") {
                let pattern = blob_with(p, r)?;
                let len = len("len")?.ok_or_else(|| err(n.span, "`repeat` needs `len`"))?;
                if pattern.is_empty() {
                    return Err(err(p.span, "`repeat` needs a non-empty pattern"));
                }
                return Ok(pattern.iter().copied().cycle().take(len).collect());
            }
            if let Some(l) = len("bytes_of_len")? {
                let seed = len("seed")?.unwrap_or(0) as u64;
                return Ok(det_bytes(l, seed));
            }
            Err(err(
                n.span,
                "expected a blob: hex text, {utf8: …}, {repeat: <hex>, len: N}, {bytes_of_len: N, seed: k}, {sha256_of: <blob>}, {slice_of: <blob>, offset: a, len: n} or {wasm: <canister>}",
            ))
        }
        _ => Err(err(
            n.span,
            format!("expected a blob (hex text), found {}", n.type_name()),
        )),
    }
}

type Memo = ((usize, u64), std::rc::Rc<Vec<u8>>);

/// Deterministic pseudo-random bytes (splitmix64 seeded with `seed`), memoized per thread so that a
/// scenario can slice and hash the same multi-MiB blob many times cheaply.
pub fn det_bytes(len: usize, seed: u64) -> Vec<u8> {
    thread_local! {
        static MEMO: std::cell::RefCell<Vec<Memo>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if let Some(b) = MEMO.with(|m| {
        m.borrow()
            .iter()
            .find(|(k, _)| *k == (len, seed))
            .map(|(_, v)| v.clone())
    }) {
        return (*b).clone();
    }
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 8 {
            m.remove(0);
        }
        m.push(((len, seed), std::rc::Rc::new(out.clone())));
    });
    out
}

fn label_name(l: &Label) -> String {
    match l {
        Label::Named(s) => s.clone(),
        Label::Id(i) | Label::Unnamed(i) => i.to_string(),
    }
}

fn is_blob(env: &TypeEnv, t: &Type) -> bool {
    matches!(trace(env, t).as_ref(), TypeInner::Nat8)
}

/// The Candid-text escape hatch: `{candid: "..."}`.
fn candid_text(n: &Node) -> Option<&Node> {
    match &n.kind {
        Kind::Map(m) if m.len() == 1 && m[0].0.as_str() == Some("candid") => Some(&m[0].1),
        _ => None,
    }
}

fn from_candid_text(n: &Node, env: &TypeEnv, ty: &Type) -> Result<IDLValue, ValueError> {
    let text = n
        .as_str()
        .ok_or_else(|| err(n.span, "`candid` takes Candid text"))?;
    let v = candid_parser::parse_idl_value(text)
        .map_err(|e| err(n.span, format!("bad Candid text: {e}")))?;
    v.annotate_type(true, env, ty).map_err(|e| {
        err(
            n.span,
            format!("Candid text does not fit the type {ty}: {e}"),
        )
    })
}

/// Convert a YAML node to a Candid value of type `ty`.
pub fn to_value(
    n: &Node,
    ty: &Type,
    env: &TypeEnv,
    r: &dyn Resolve,
) -> Result<IDLValue, ValueError> {
    if let Some(t) = candid_text(n) {
        return from_candid_text(t, env, ty);
    }
    let t = trace(env, ty);
    if r.lenient() {
        if let Kind::Str(s) = &n.kind {
            if s.contains("${") {
                return Ok(default_value(&t, env, 0));
            }
        }
    }
    let num_err = |what: &str| err(n.span, format!("expected {what}, found {}", n.brief()));
    macro_rules! small {
        ($ty:ty, $variant:ident, $what:expr) => {{
            let i = parse_big(n).ok_or_else(|| num_err($what))?;
            let v = <$ty>::try_from(i)
                .map_err(|_| err(n.span, format!("{i} is out of range for {}", $what)))?;
            Ok(IDLValue::$variant(v))
        }};
    }
    match t.as_ref() {
        TypeInner::Null => match n.kind {
            Kind::Null => Ok(IDLValue::Null),
            _ => Err(num_err("null")),
        },
        TypeInner::Bool => match n.kind {
            Kind::Bool(b) => Ok(IDLValue::Bool(b)),
            _ => Err(num_err("a bool")),
        },
        TypeInner::Nat => {
            let s = big_string(n).ok_or_else(|| num_err("a nat"))?;
            if s.starts_with('-') {
                return Err(err(n.span, format!("{s} is negative, expected a nat")));
            }
            Ok(IDLValue::Nat(
                s.parse::<Nat>().map_err(|_| num_err("a nat"))?,
            ))
        }
        TypeInner::Int => {
            let s = big_string(n).ok_or_else(|| num_err("an int"))?;
            Ok(IDLValue::Int(
                s.parse::<Int>().map_err(|_| num_err("an int"))?,
            ))
        }
        TypeInner::Nat8 => small!(u8, Nat8, "a nat8"),
        TypeInner::Nat16 => small!(u16, Nat16, "a nat16"),
        TypeInner::Nat32 => small!(u32, Nat32, "a nat32"),
        TypeInner::Nat64 => small!(u64, Nat64, "a nat64"),
        TypeInner::Int8 => small!(i8, Int8, "an int8"),
        TypeInner::Int16 => small!(i16, Int16, "an int16"),
        TypeInner::Int32 => small!(i32, Int32, "an int32"),
        TypeInner::Int64 => small!(i64, Int64, "an int64"),
        TypeInner::Float32 | TypeInner::Float64 => {
            let f = match &n.kind {
                Kind::Int(i) => *i as f64,
                Kind::Float(f) => *f,
                _ => return Err(num_err("a float")),
            };
            Ok(if matches!(t.as_ref(), TypeInner::Float32) {
                IDLValue::Float32(f as f32)
            } else {
                IDLValue::Float64(f)
            })
        }
        TypeInner::Text => match &n.kind {
            Kind::Str(s) => Ok(IDLValue::Text(s.clone())),
            Kind::Map(_) if n.get("repeat").is_some() && n.get("len").is_some() => {
                let p = n
                    .get("repeat")
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| err(n.span, "`repeat` takes text"))?;
                let l = n
                    .get("len")
                    .and_then(parse_big)
                    .and_then(|l| usize::try_from(l).ok())
                    .ok_or_else(|| err(n.span, "`len` takes a count"))?;
                if p.is_empty() {
                    return Err(err(n.span, "`repeat` needs non-empty text"));
                }
                Ok(IDLValue::Text(p.chars().cycle().take(l).collect()))
            }
            _ => Err(err(
                n.span,
                format!(
                    "expected text, found {} (quote it to make it text)",
                    n.brief()
                ),
            )),
        },
        TypeInner::Reserved => Ok(IDLValue::Reserved),
        TypeInner::Empty => Err(err(n.span, "no value has type empty")),
        TypeInner::Principal => principal(n, r).map(IDLValue::Principal),
        TypeInner::Opt(inner) => match n.kind {
            Kind::Null => Ok(IDLValue::None),
            _ => Ok(IDLValue::Opt(Box::new(to_value(n, inner, env, r)?))),
        },
        TypeInner::Vec(inner) if is_blob(env, inner) => Ok(IDLValue::Blob(blob_with(n, r)?)),
        TypeInner::Vec(inner) => match &n.kind {
            Kind::Seq(items) => Ok(IDLValue::Vec(
                items
                    .iter()
                    .map(|i| to_value(i, inner, env, r))
                    .collect::<Result<_, _>>()?,
            )),
            Kind::Null => Ok(IDLValue::Vec(vec![])),
            _ => Err(num_err("a list")),
        },
        TypeInner::Record(fields) => record(n, fields, env, r),
        TypeInner::Variant(fields) => {
            let (tag, payload) = match &n.kind {
                Kind::Str(s) => (s.as_str(), None),
                Kind::Map(m) if m.len() == 1 => (
                    m[0].0
                        .as_str()
                        .ok_or_else(|| err(m[0].0.span, "a variant case name must be text"))?,
                    Some(&m[0].1),
                ),
                _ => {
                    return Err(err(
                        n.span,
                        format!(
                            "expected one of the variant's cases ({}) as a name or single-key map",
                            case_list(fields)
                        ),
                    ))
                }
            };
            let (idx, f) = fields
                .iter()
                .enumerate()
                .find(|(_, f)| label_name(&f.id) == tag)
                .ok_or_else(|| {
                    err(
                        n.span,
                        format!(
                            "`{tag}` is not a case of this variant ({}){}",
                            case_list(fields),
                            crate::diag::did_you_mean(
                                tag,
                                fields.iter().filter_map(|f| f.id.as_ref().as_name())
                            )
                        ),
                    )
                })?;
            let val = match payload {
                Some(p) => to_value(p, &f.ty, env, r)?,
                None => match trace(env, &f.ty).as_ref() {
                    TypeInner::Null => IDLValue::Null,
                    TypeInner::Reserved => IDLValue::Reserved,
                    _ => {
                        return Err(err(
                            n.span,
                            format!("case `{tag}` needs a value: write {{{tag}: …}}"),
                        ))
                    }
                },
            };
            Ok(IDLValue::Variant(VariantValue(
                Box::new(IDLField {
                    id: (*f.id).clone(),
                    val,
                }),
                idx as u64,
            )))
        }
        TypeInner::Service(_) => principal(n, r).map(IDLValue::Service),
        TypeInner::Func(_) => {
            let s = n
                .as_str()
                .ok_or_else(|| num_err("a func reference `canister.method`"))?;
            let (c, m) = s
                .rsplit_once('.')
                .ok_or_else(|| num_err("a func reference `canister.method`"))?;
            let p = principal(
                &Node {
                    span: n.span,
                    kind: Kind::Str(c.into()),
                },
                r,
            )?;
            Ok(IDLValue::Func(p, m.into()))
        }
        other => Err(err(
            n.span,
            format!("values of type {other} are not supported in scenarios; use {{candid: …}}"),
        )),
    }
}

trait AsName {
    fn as_name(&self) -> Option<&str>;
}
impl AsName for Label {
    fn as_name(&self) -> Option<&str> {
        match self {
            Label::Named(s) => Some(s),
            _ => None,
        }
    }
}

fn case_list(fields: &[Field]) -> String {
    let names: Vec<String> = fields.iter().map(|f| label_name(&f.id)).collect();
    if names.len() > 8 {
        format!("{}, …", names[..8].join(", "))
    } else {
        names.join(", ")
    }
}

fn principal(n: &Node, r: &dyn Resolve) -> Result<Principal, ValueError> {
    let s = n.as_str().ok_or_else(|| {
        err(
            n.span,
            format!("expected an identity or canister name, found {}", n.brief()),
        )
    })?;
    if let Some(p) = r.principal(s) {
        return Ok(p);
    }
    if s.contains('-') {
        if let Ok(p) = Principal::from_text(s) {
            return Ok(p);
        }
    }
    if r.lenient() && s.contains("${") {
        return Ok(Principal::anonymous());
    }
    let names = r.names();
    Err(ValueError {
        span: n.span,
        message: format!(
            "`{s}` is neither an identity, a canister nor a principal{}",
            crate::diag::did_you_mean(s, names.iter().map(String::as_str))
        ),
        kind: "type",
    })
}

fn is_tuple(fields: &[Field]) -> bool {
    fields
        .iter()
        .enumerate()
        .all(|(i, f)| matches!(f.id.as_ref(), Label::Unnamed(j) if *j as usize == i))
}

fn record(
    n: &Node,
    fields: &[Field],
    env: &TypeEnv,
    r: &dyn Resolve,
) -> Result<IDLValue, ValueError> {
    if let (Kind::Seq(items), true) = (&n.kind, is_tuple(fields)) {
        if items.len() != fields.len() {
            return Err(err(
                n.span,
                format!(
                    "expected a tuple of {}, found {}",
                    fields.len(),
                    items.len()
                ),
            ));
        }
        let vals = items
            .iter()
            .zip(fields)
            .map(|(i, f)| {
                Ok(IDLField {
                    id: (*f.id).clone(),
                    val: to_value(i, &f.ty, env, r)?,
                })
            })
            .collect::<Result<Vec<_>, ValueError>>()?;
        return Ok(IDLValue::Record(vals));
    }
    let entries: &[(Node, Node)] = match &n.kind {
        Kind::Map(m) => m,
        Kind::Null if fields.is_empty() => &[],
        _ => {
            return Err(err(
                n.span,
                format!(
                    "expected a record {{{}}}, found {}",
                    fields
                        .iter()
                        .map(|f| label_name(&f.id))
                        .collect::<Vec<_>>()
                        .join(", "),
                    n.brief()
                ),
            ))
        }
    };
    for (k, _) in entries {
        let key = k.as_str().map(str::to_string).unwrap_or_else(|| k.brief());
        if !fields.iter().any(|f| label_name(&f.id) == key) {
            let names: Vec<String> = fields.iter().map(|f| label_name(&f.id)).collect();
            return Err(err(
                k.span,
                format!(
                    "`{key}` is not a field of this record (fields: {}){}",
                    names.join(", "),
                    crate::diag::did_you_mean(&key, names.iter().map(String::as_str))
                ),
            ));
        }
    }
    let mut vals = vec![];
    for f in fields {
        let name = label_name(&f.id);
        let given = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name.as_str()) || k.brief() == name);
        let val = match given {
            Some((_, v)) => to_value(v, &f.ty, env, r)?,
            None => match trace(env, &f.ty).as_ref() {
                TypeInner::Opt(_) => IDLValue::None,
                TypeInner::Null => IDLValue::Null,
                TypeInner::Reserved => IDLValue::Reserved,
                _ => {
                    return Err(err(
                        n.span,
                        format!("missing field `{name}` (type {})", f.ty),
                    ))
                }
            },
        };
        vals.push(IDLField {
            id: (*f.id).clone(),
            val,
        });
    }
    Ok(IDLValue::Record(vals))
}

/// A value of the type, used where lint meets a `${capture}` whose value is not known yet.
pub fn default_value(t: &Type, env: &TypeEnv, depth: usize) -> IDLValue {
    let t = trace(env, t);
    match t.as_ref() {
        TypeInner::Bool => IDLValue::Bool(false),
        TypeInner::Nat => IDLValue::Nat(Nat::from(0u32)),
        TypeInner::Int => IDLValue::Int(Int::from(0)),
        TypeInner::Nat8 => IDLValue::Nat8(0),
        TypeInner::Nat16 => IDLValue::Nat16(0),
        TypeInner::Nat32 => IDLValue::Nat32(0),
        TypeInner::Nat64 => IDLValue::Nat64(0),
        TypeInner::Int8 => IDLValue::Int8(0),
        TypeInner::Int16 => IDLValue::Int16(0),
        TypeInner::Int32 => IDLValue::Int32(0),
        TypeInner::Int64 => IDLValue::Int64(0),
        TypeInner::Float32 => IDLValue::Float32(0.0),
        TypeInner::Float64 => IDLValue::Float64(0.0),
        TypeInner::Text => IDLValue::Text(String::new()),
        TypeInner::Reserved => IDLValue::Reserved,
        TypeInner::Principal => IDLValue::Principal(Principal::anonymous()),
        TypeInner::Opt(_) => IDLValue::None,
        TypeInner::Vec(_) => IDLValue::Vec(vec![]),
        TypeInner::Record(fs) if depth < 16 => IDLValue::Record(
            fs.iter()
                .map(|f| IDLField {
                    id: (*f.id).clone(),
                    val: default_value(&f.ty, env, depth + 1),
                })
                .collect(),
        ),
        TypeInner::Variant(fs) if depth < 16 && !fs.is_empty() => IDLValue::Variant(VariantValue(
            Box::new(IDLField {
                id: (*fs[0].id).clone(),
                val: default_value(&fs[0].ty, env, depth + 1),
            }),
            0,
        )),
        _ => IDLValue::Null,
    }
}

/// Encode the `args` of a call (a value for one parameter, a list for several, nothing for none).
pub fn encode_args(
    n: Option<&Node>,
    types: &[Type],
    env: &TypeEnv,
    r: &dyn Resolve,
) -> Result<Vec<u8>, ValueError> {
    let span = n.map(|n| n.span).unwrap_or_default();
    let vals = args_values(n, types, env, r)?;
    IDLArgs::new(&vals)
        .to_bytes_with_types(env, types)
        .map_err(|e| err(span, format!("cannot encode arguments: {e}")))
}

pub fn args_values(
    n: Option<&Node>,
    types: &[Type],
    env: &TypeEnv,
    r: &dyn Resolve,
) -> Result<Vec<IDLValue>, ValueError> {
    let span = n.map(|n| n.span).unwrap_or_default();
    match (types.len(), n) {
        (0, None) => Ok(vec![]),
        (0, Some(n)) => match &n.kind {
            Kind::Null => Ok(vec![]),
            Kind::Seq(v) if v.is_empty() => Ok(vec![]),
            _ => Err(err(span, "this method takes no arguments")),
        },
        (1, Some(n)) => Ok(vec![to_value(n, &types[0], env, r)?]),
        (_, None) => {
            // all-optional parameters may be left out
            types
                .iter()
                .map(|t| match trace(env, t).as_ref() {
                    TypeInner::Opt(_) => Ok(IDLValue::None),
                    TypeInner::Null => Ok(IDLValue::Null),
                    _ => Err(err(
                        span,
                        format!("missing `args` (the method takes {})", types_text(types)),
                    )),
                })
                .collect()
        }
        (k, Some(n)) => match &n.kind {
            Kind::Seq(items) if items.len() == k => items
                .iter()
                .zip(types)
                .map(|(i, t)| to_value(i, t, env, r))
                .collect(),
            _ => Err(err(
                span,
                format!(
                    "this method takes {k} arguments ({}); give them as a list",
                    types_text(types)
                ),
            )),
        },
    }
}

pub fn encode_candid_args(
    text: &str,
    span: Span,
    types: &[Type],
    env: &TypeEnv,
) -> Result<Vec<u8>, ValueError> {
    let args = candid_parser::parse_idl_args(text)
        .map_err(|e| err(span, format!("bad Candid text: {e}")))?;
    let args = args.annotate_types(true, env, types).map_err(|e| {
        err(
            span,
            format!("Candid text does not fit ({}): {e}", types_text(types)),
        )
    })?;
    args.to_bytes_with_types(env, types)
        .map_err(|e| err(span, format!("cannot encode: {e}")))
}

pub fn types_text(types: &[Type]) -> String {
    format!(
        "({})",
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Decode a reply into one value (the single return value, or a tuple).
pub fn decode_reply(bytes: &[u8], rets: &[Type], env: &TypeEnv) -> Result<IDLValue, String> {
    let args = IDLArgs::from_bytes_with_types(bytes, env, rets)
        .map_err(|e| format!("cannot decode the reply: {e}"))?;
    Ok(match args.args.len() {
        1 => args.args.into_iter().next().unwrap_or(IDLValue::Null),
        0 => IDLValue::Null,
        _ => IDLValue::Record(
            args.args
                .into_iter()
                .enumerate()
                .map(|(i, val)| IDLField {
                    id: Label::Unnamed(i as u32),
                    val,
                })
                .collect(),
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Candid → YAML-ish observations (for transcripts, messages and captures)
// ---------------------------------------------------------------------------------------------

/// How values are normalized for the transcript.
pub struct Normalize<'a> {
    pub names: &'a BTreeMap<Principal, String>,
    /// Start of the run (ns): times near it are shown relative (`T+1.5s`).
    pub start_nanos: u64,
    /// The scenario's `normalize:` options (none: the defaults only).
    pub stable: Option<&'a Stable>,
}

/// Opt-in normalizations (`normalize: [wasm, balances]`).
#[derive(Clone, Debug, Default)]
pub struct Stable {
    /// Built wasms to show symbolically: (label such as `personal+next_major_api`, bytes, SHA-256).
    pub wasms: Vec<(String, std::sync::Arc<Vec<u8>>, [u8; 32])>,
    /// Bucket fields named `*balance*` like cycles.
    pub balances: bool,
    /// Bucket numbers of 10 digits or more inside text.
    pub text_numbers: bool,
}

impl Stable {
    /// Remember a built wasm (once per label and content).
    pub fn add_wasm(&mut self, label: &str, wasm: &[u8]) {
        let sha: [u8; 32] = Sha256::digest(wasm).into();
        if !self.wasms.iter().any(|(_, _, s)| *s == sha) {
            self.wasms
                .push((label.to_string(), std::sync::Arc::new(wasm.to_vec()), sha));
        }
    }

    /// A blob cut from a known wasm, shown symbolically.
    fn blob(&self, b: &[u8]) -> Option<serde_json::Value> {
        use serde_json::json;
        for (label, w, sha) in &self.wasms {
            if b.len() == 32 && b == sha.as_slice() {
                return Some(json!({ "sha256_of_wasm": label }));
            }
            if b.len() == w.len() && b == w.as_slice() {
                return Some(json!({ "wasm": label }));
            }
            if b.len() > 64 && b.len() < w.len() {
                let head = &b[..64];
                let mut from = 0;
                while let Some(pos) = w[from..].windows(64).position(|x| x == head) {
                    let off = from + pos;
                    if off + b.len() <= w.len() && &w[off..off + b.len()] == b {
                        let len = if off + b.len() == w.len() {
                            json!("to the end")
                        } else {
                            json!(b.len())
                        };
                        return Some(json!({ "wasm": label, "offset": off, "len": len }));
                    }
                    from = off + 1;
                }
            }
        }
        None
    }

    /// Text with a known wasm's SHA-256 (hex) replaced by `<sha256 of wasm LABEL>`, and (with
    /// `text_numbers`) every number of 10 digits or more bucketed like cycles (`~870B`): balances in
    /// messages move with instruction costs.
    pub fn text(&self, t: &str) -> String {
        let mut t = t.to_string();
        for (label, _, sha) in &self.wasms {
            let h = hex::encode(sha);
            if t.contains(&h) {
                t = t.replace(&h, &format!("<sha256 of wasm {label}>"));
            }
        }
        if self.text_numbers {
            t = bucket_numbers_in(&t);
        }
        t
    }

    fn number(&self, i: i128) -> Option<String> {
        self.wasms
            .iter()
            .find(|(_, w, _)| w.len() > 4096 && w.len() as i128 == i)
            .map(|(label, _, _)| format!("<len of wasm {label}>"))
    }
}

pub fn nat_i128(v: &IDLValue) -> Option<i128> {
    Some(match v {
        IDLValue::Nat(n) => n.0.to_string().parse().ok()?,
        IDLValue::Int(i) => i.0.to_string().parse().ok()?,
        IDLValue::Nat8(x) => *x as i128,
        IDLValue::Nat16(x) => *x as i128,
        IDLValue::Nat32(x) => *x as i128,
        IDLValue::Nat64(x) => *x as i128,
        IDLValue::Int8(x) => *x as i128,
        IDLValue::Int16(x) => *x as i128,
        IDLValue::Int32(x) => *x as i128,
        IDLValue::Int64(x) => *x as i128,
        _ => return None,
    })
}

fn as_f64(v: &IDLValue) -> Option<f64> {
    match v {
        IDLValue::Float32(f) => Some(*f as f64),
        IDLValue::Float64(f) => Some(*f),
        _ => nat_i128(v).map(|i| i as f64),
    }
}

/// Durations as `1h2m3.5s`.
pub fn fmt_duration(nanos: u128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || sub > 0 {
        if sub == 0 {
            out.push_str(&format!("{s}s"));
        } else if secs == 0 && sub.is_multiple_of(1_000_000) {
            out.push_str(&format!("{}ms", sub / 1_000_000));
        } else if secs == 0 && sub < 1_000_000 {
            out.push_str(&format!("{sub}ns"));
        } else {
            let frac = format!("{:09}", sub);
            out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
        }
    }
    out
}

/// Every run of 10 or more digits (not part of a hex word) bucketed like cycles.
pub fn bucket_numbers_in(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let chars: Vec<char> = t.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let word_ends = j == chars.len() || !chars[j].is_ascii_alphanumeric();
            if j - i >= 10 && word_ends {
                let n: String = chars[i..j].iter().collect();
                match n.parse::<i128>() {
                    Ok(v) => out.push_str(&bucket_cycles(v)),
                    Err(_) => out.push_str(&n),
                }
                i = j;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Cycles to two significant digits (`~1.2T`), so small fee changes do not churn snapshots.
pub fn bucket_cycles(c: i128) -> String {
    if c < 1000 {
        return format!("~{c}");
    }
    let units = [
        (1_000_000_000_000i128, "T"),
        (1_000_000_000, "B"),
        (1_000_000, "M"),
        (1_000, "K"),
    ];
    for (u, s) in units {
        if c >= u {
            let v = c as f64 / u as f64;
            let digits = if v >= 10.0 { 0 } else { 1 };
            let rounded = if v >= 100.0 {
                (v / 10.0).round() * 10.0
            } else {
                v
            };
            return format!("~{:.*}{}", digits, rounded, s);
        }
    }
    format!("~{c}")
}

const TIME_WINDOW: i128 = 100 * 365 * 86400 * 1_000_000_000;

impl Normalize<'_> {
    pub fn render(&self, v: &IDLValue) -> serde_json::Value {
        self.render_in(v, None)
    }

    fn render_in(&self, v: &IDLValue, label: Option<&str>) -> serde_json::Value {
        use serde_json::Value as J;
        let balances = self.stable.map(|s| s.balances).unwrap_or(false);
        let cyclesish = label
            .map(|l| l.contains("cycles") || (balances && l.contains("balance")))
            .unwrap_or(false);
        match v {
            IDLValue::Bool(b) => J::Bool(*b),
            IDLValue::Null | IDLValue::None | IDLValue::Reserved => J::Null,
            IDLValue::Text(s) => J::String(match self.stable {
                Some(st) => st.text(s),
                None => s.clone(),
            }),
            IDLValue::Number(s) => J::String(s.clone()),
            IDLValue::Float64(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            IDLValue::Float32(f) => serde_json::Number::from_f64(*f as f64)
                .map(J::Number)
                .unwrap_or(J::Null),
            IDLValue::Opt(inner) => self.render_in(inner, label),
            IDLValue::Vec(items) => {
                J::Array(items.iter().map(|i| self.render_in(i, None)).collect())
            }
            IDLValue::Blob(b) => self
                .stable
                .and_then(|st| st.blob(b))
                .unwrap_or_else(|| render_blob(b)),
            IDLValue::Record(fields) => {
                if !fields.is_empty()
                    && fields
                        .iter()
                        .enumerate()
                        .all(|(i, f)| matches!(f.id, Label::Unnamed(j) if j as usize == i))
                {
                    return J::Array(
                        fields
                            .iter()
                            .map(|f| self.render_in(&f.val, None))
                            .collect(),
                    );
                }
                J::Object(
                    fields
                        .iter()
                        .map(|f| {
                            let l = label_name(&f.id);
                            let v = self.render_in(&f.val, Some(&l));
                            (l, v)
                        })
                        .collect(),
                )
            }
            IDLValue::Variant(VariantValue(f, _)) => {
                let l = label_name(&f.id);
                match f.val {
                    IDLValue::Null | IDLValue::Reserved => J::String(l),
                    _ => {
                        let mut m = serde_json::Map::new();
                        let v = self.render_in(&f.val, Some(&l));
                        m.insert(l, v);
                        J::Object(m)
                    }
                }
            }
            IDLValue::Principal(p) | IDLValue::Service(p) => J::String(self.principal_name(p)),
            IDLValue::Func(p, m) => J::String(format!("{}.{m}", self.principal_name(p))),
            other => {
                let i = match nat_i128(other) {
                    Some(i) => i,
                    None => return J::String(format!("{other}")),
                };
                let start = self.start_nanos as i128;
                let timeish = matches!(
                    other,
                    IDLValue::Nat64(_) | IDLValue::Int64(_) | IDLValue::Nat(_) | IDLValue::Int(_)
                ) && start > 0
                    && i >= start - TIME_WINDOW
                    && i <= start + TIME_WINDOW
                    && i > 1_000_000_000_000_000_000;
                if timeish {
                    let d = i - start;
                    return J::String(if d >= 0 {
                        format!("T+{}", fmt_duration(d as u128))
                    } else {
                        format!("T-{}", fmt_duration((-d) as u128))
                    });
                }
                if cyclesish {
                    return J::String(bucket_cycles(i));
                }
                if let Some(n) = self.stable.and_then(|st| st.number(i)) {
                    return J::String(n);
                }
                if i.unsigned_abs() < (1u128 << 53) {
                    J::Number((i as i64).into())
                } else {
                    J::String(i.to_string())
                }
            }
        }
    }

    pub fn principal_name(&self, p: &Principal) -> String {
        self.names.get(p).cloned().unwrap_or_else(|| p.to_text())
    }
}

pub fn render_blob(b: &[u8]) -> serde_json::Value {
    if b.len() <= 64 {
        serde_json::Value::String(format!("0x{}", hex::encode(b)))
    } else {
        let mut m = serde_json::Map::new();
        m.insert("len".into(), (b.len() as u64).into());
        m.insert("sha256".into(), hex::encode(Sha256::digest(b)).into());
        serde_json::Value::Object(m)
    }
}

/// Turn a decoded value back into a YAML node (for captures re-used as arguments).
pub fn value_to_node(v: &IDLValue, span: Span) -> Node {
    let kind = match v {
        IDLValue::Bool(b) => Kind::Bool(*b),
        IDLValue::Null | IDLValue::None | IDLValue::Reserved => Kind::Null,
        IDLValue::Text(s) => Kind::Str(s.clone()),
        IDLValue::Number(s) => Kind::Str(s.clone()),
        IDLValue::Float64(f) => Kind::Float(*f),
        IDLValue::Float32(f) => Kind::Float(*f as f64),
        IDLValue::Opt(inner) => return value_to_node(inner, span),
        IDLValue::Vec(items) => Kind::Seq(items.iter().map(|i| value_to_node(i, span)).collect()),
        IDLValue::Blob(b) => Kind::Str(format!("0x{}", hex::encode(b))),
        IDLValue::Record(fields) => Kind::Map(
            fields
                .iter()
                .map(|f| {
                    (
                        Node {
                            span,
                            kind: Kind::Str(label_name(&f.id)),
                        },
                        value_to_node(&f.val, span),
                    )
                })
                .collect(),
        ),
        IDLValue::Variant(VariantValue(f, _)) => Kind::Map(vec![(
            Node {
                span,
                kind: Kind::Str(label_name(&f.id)),
            },
            value_to_node(&f.val, span),
        )]),
        IDLValue::Principal(p) | IDLValue::Service(p) => Kind::Str(p.to_text()),
        IDLValue::Func(p, m) => Kind::Str(format!("{}.{m}", p.to_text())),
        other => match nat_i128(other) {
            Some(i) => Kind::Int(i),
            None => Kind::Str(other.to_string()),
        },
    };
    Node { span, kind }
}

// ---------------------------------------------------------------------------------------------
// Paths ($.Ok.id) for captures
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Field(String),
    Index(usize),
}

pub fn parse_path(p: &str) -> Result<Vec<Seg>, String> {
    let rest = p
        .strip_prefix('$')
        .ok_or_else(|| format!("a path starts with `$` (like `$.Ok.id`), found `{p}`"))?;
    let mut segs = vec![];
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                if name.is_empty() {
                    return Err(format!("empty field name in path `{p}`"));
                }
                segs.push(Seg::Field(name));
            }
            '[' => {
                let mut num = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    num.push(c);
                }
                segs.push(Seg::Index(
                    num.trim()
                        .parse()
                        .map_err(|_| format!("bad index `[{num}]` in path `{p}`"))?,
                ));
            }
            _ => return Err(format!("unexpected `{c}` in path `{p}`")),
        }
    }
    Ok(segs)
}

pub fn path_text(segs: &[Seg]) -> String {
    let mut s = "$".to_string();
    for seg in segs {
        match seg {
            Seg::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The type at a path (lint: is the capture path valid?).
pub fn type_at(ty: &Type, segs: &[Seg], env: &TypeEnv) -> Result<Type, String> {
    let mut t = trace(env, ty);
    for (i, seg) in segs.iter().enumerate() {
        // opt is transparent
        while let TypeInner::Opt(inner) = t.as_ref() {
            t = trace(env, inner);
        }
        let here = path_text(&segs[..i]);
        t = match (seg, t.as_ref()) {
            (Seg::Field(f), TypeInner::Record(fs) | TypeInner::Variant(fs)) => {
                let names: Vec<String> = fs.iter().map(|x| label_name(&x.id)).collect();
                let found = fs.iter().find(|x| &label_name(&x.id) == f).ok_or_else(|| {
                    format!(
                        "`{here}` has no field or case `{f}` (it has {}){}",
                        names.join(", "),
                        crate::diag::did_you_mean(f, names.iter().map(String::as_str))
                    )
                })?;
                trace(env, &found.ty)
            }
            (Seg::Index(_), TypeInner::Vec(inner)) => trace(env, inner),
            (Seg::Index(k), TypeInner::Record(fs)) if *k < fs.len() => trace(env, &fs[*k].ty),
            (_, other) => {
                return Err(format!(
                    "cannot go into `{here}` of type {other} with {}",
                    path_text(std::slice::from_ref(seg))
                ))
            }
        };
    }
    Ok(t)
}

/// The value at a path.
pub fn value_at<'v>(v: &'v IDLValue, segs: &[Seg]) -> Result<&'v IDLValue, String> {
    let mut cur = v;
    for (i, seg) in segs.iter().enumerate() {
        while let IDLValue::Opt(inner) = cur {
            cur = inner;
        }
        let here = path_text(&segs[..i]);
        cur = match (seg, cur) {
            (_, IDLValue::None) => return Err(format!("`{here}` is null")),
            (Seg::Field(f), IDLValue::Record(fields)) => {
                &fields
                    .iter()
                    .find(|x| &label_name(&x.id) == f)
                    .ok_or_else(|| format!("`{here}` has no field `{f}`"))?
                    .val
            }
            (Seg::Field(f), IDLValue::Variant(VariantValue(field, _))) => {
                let tag = label_name(&field.id);
                if &tag != f {
                    return Err(format!("`{here}` is `{tag}`, not `{f}`"));
                }
                &field.val
            }
            (Seg::Index(k), IDLValue::Vec(items)) => items
                .get(*k)
                .ok_or_else(|| format!("`{here}` has {} items, no [{k}]", items.len()))?,
            (Seg::Index(k), IDLValue::Record(fields)) => {
                &fields
                    .get(*k)
                    .ok_or_else(|| format!("`{here}` has no [{k}]"))?
                    .val
            }
            (_, other) => return Err(format!("cannot go into `{here}` ({other})")),
        };
    }
    Ok(cur)
}

// ---------------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------------

/// The closed set of matchers.
pub const MATCHERS: &[&str] = &[
    "eq", "ne", "gt", "ge", "lt", "le", "regex", "contains", "len", "each", "some", "any",
    "approx", "within",
];

/// One mismatch between a pattern and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub path: String,
    pub expected: String,
    pub got: String,
    pub span: Span,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.path, self.expected, self.got
        )
    }
}

/// Pattern checking and matching. With `value == None` only the pattern's types are checked (lint).
pub struct Matcher<'a> {
    pub env: &'a TypeEnv,
    pub resolve: &'a dyn Resolve,
    pub strict: bool,
    pub norm: Option<&'a Normalize<'a>>,
}

fn matcher_map(n: &Node) -> Option<&[(Node, Node)]> {
    let m = n.as_map()?;
    if !m.is_empty()
        && m.iter()
            .all(|(k, _)| k.as_str().map(|k| MATCHERS.contains(&k)).unwrap_or(false))
    {
        Some(m)
    } else {
        None
    }
}

impl Matcher<'_> {
    fn show(&self, v: &IDLValue) -> String {
        match self.norm {
            Some(n) => compact(&n.render(v)),
            None => format!("{v}"),
        }
    }

    fn show_node(&self, n: &Node) -> String {
        compact(&n.to_json())
    }

    /// Check a pattern against a type (and against a value, if given). Type errors are `Err`;
    /// mismatches are collected in `out`.
    pub fn check(
        &self,
        pat: &Node,
        ty: &Type,
        value: Option<&IDLValue>,
        path: &mut Vec<Seg>,
        out: &mut Vec<Mismatch>,
    ) -> Result<(), ValueError> {
        let t = trace(self.env, ty);
        // `${x}` in lint mode: any value
        if self.resolve.lenient() {
            if let Some(s) = pat.as_str() {
                if var_ref(s).is_some() {
                    return Ok(());
                }
            }
        }
        if let Some(c) = candid_text(pat) {
            let expected = from_candid_text(c, self.env, &t)?;
            if let Some(v) = value {
                if !values_equal(v, &expected) {
                    out.push(self.mismatch(path, self.show(&expected), v, pat.span));
                }
            }
            return Ok(());
        }
        // matchers, unless the keys are fields/cases of the type
        if let Some(m) = matcher_map(pat) {
            let is_label = |k: &str| match t.as_ref() {
                TypeInner::Record(fs) | TypeInner::Variant(fs) => {
                    fs.iter().any(|f| label_name(&f.id) == k)
                }
                _ => false,
            };
            if !m
                .iter()
                .any(|(k, _)| is_label(k.as_str().unwrap_or_default()))
            {
                return self.matchers(m, pat, &t, value, path, out);
            }
        }
        let v = value.map(|v| strip_opt_for(&t, v));
        match t.as_ref() {
            TypeInner::Opt(inner) => match (&pat.kind, value) {
                (Kind::Null, None) => Ok(()),
                (Kind::Null, Some(v)) => {
                    if !matches!(v, IDLValue::None | IDLValue::Null) {
                        out.push(self.mismatch(path, "null".into(), v, pat.span));
                    }
                    Ok(())
                }
                (_, None) => self.check(pat, inner, None, path, out),
                (_, Some(IDLValue::Opt(x))) => self.check(pat, inner, Some(x), path, out),
                (_, Some(other)) => {
                    if matches!(other, IDLValue::None | IDLValue::Null) {
                        out.push(Mismatch {
                            path: path_text(path),
                            expected: self.show_node(pat),
                            got: "null".into(),
                            span: pat.span,
                        });
                        Ok(())
                    } else {
                        self.check(pat, inner, Some(other), path, out)
                    }
                }
            },
            TypeInner::Record(fields) if matches!(pat.kind, Kind::Map(_)) => {
                let entries = pat.as_map().unwrap_or_default();
                for (k, sub) in entries {
                    let key = k.as_str().map(str::to_string).unwrap_or_else(|| k.brief());
                    let f = fields
                        .iter()
                        .find(|f| label_name(&f.id) == key)
                        .ok_or_else(|| {
                            let names: Vec<String> =
                                fields.iter().map(|f| label_name(&f.id)).collect();
                            err(
                                k.span,
                                format!(
                                    "`{key}` is not a field of this record (fields: {}){}",
                                    names.join(", "),
                                    crate::diag::did_you_mean(
                                        &key,
                                        names.iter().map(String::as_str)
                                    )
                                ),
                            )
                        })?;
                    let fv = match v {
                        Some(IDLValue::Record(vals)) => vals
                            .iter()
                            .find(|x| label_name(&x.id) == key)
                            .map(|x| &x.val),
                        _ => None,
                    };
                    if v.is_some() && fv.is_none() {
                        out.push(Mismatch {
                            path: format!("{}.{key}", path_text(path)),
                            expected: self.show_node(sub),
                            got: "nothing".into(),
                            span: sub.span,
                        });
                        continue;
                    }
                    path.push(Seg::Field(key.clone()));
                    let r = self.check(sub, &f.ty, fv, path, out);
                    path.pop();
                    r?;
                }
                if self.strict {
                    for f in fields {
                        let name = label_name(&f.id);
                        if !entries
                            .iter()
                            .any(|(k, _)| k.as_str() == Some(name.as_str()))
                        {
                            if let Some(IDLValue::Record(vals)) = v {
                                if let Some(x) = vals.iter().find(|x| label_name(&x.id) == name) {
                                    if !matches!(x.val, IDLValue::None | IDLValue::Null) {
                                        out.push(Mismatch {
                                            path: format!("{}.{name}", path_text(path)),
                                            expected:
                                                "no value (strict match, field not in the pattern)"
                                                    .into(),
                                            got: self.show(&x.val),
                                            span: pat.span,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            TypeInner::Variant(fields)
                if matches!(&pat.kind, Kind::Map(m) if m.len() == 1) || pat.as_str().is_some() =>
            {
                let (tag, sub) = match &pat.kind {
                    Kind::Str(s) => (s.clone(), None),
                    Kind::Map(m) => (
                        m[0].0
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| m[0].0.brief()),
                        Some(&m[0].1),
                    ),
                    _ => unreachable!(),
                };
                let f = fields
                    .iter()
                    .find(|f| label_name(&f.id) == tag)
                    .ok_or_else(|| {
                        let names: Vec<String> = fields.iter().map(|f| label_name(&f.id)).collect();
                        err(
                            pat.span,
                            format!(
                                "`{tag}` is not a case of this variant ({}){}",
                                case_list(fields),
                                crate::diag::did_you_mean(&tag, names.iter().map(String::as_str))
                            ),
                        )
                    })?;
                match v {
                    None => match sub {
                        Some(s) => self.check(s, &f.ty, None, path, out),
                        None => Ok(()),
                    },
                    Some(IDLValue::Variant(VariantValue(got, _))) => {
                        let got_tag = label_name(&got.id);
                        if got_tag != tag {
                            out.push(self.mismatch(
                                path,
                                format!("{tag:?}"),
                                v.unwrap_or(&IDLValue::Null),
                                pat.span,
                            ));
                            if let Some(s) = sub {
                                // still type-check the payload pattern
                                self.check(s, &f.ty, None, path, &mut vec![])?;
                            }
                            return Ok(());
                        }
                        match sub {
                            Some(s) => {
                                path.push(Seg::Field(tag));
                                let r = self.check(s, &f.ty, Some(&got.val), path, out);
                                path.pop();
                                r
                            }
                            None => Ok(()),
                        }
                    }
                    Some(other) => {
                        out.push(self.mismatch(path, format!("{tag:?}"), other, pat.span));
                        Ok(())
                    }
                }
            }
            TypeInner::Vec(inner)
                if !is_blob(self.env, inner) && matches!(pat.kind, Kind::Seq(_)) =>
            {
                let items = match &pat.kind {
                    Kind::Seq(i) => i,
                    _ => unreachable!(),
                };
                let vals = match v {
                    Some(IDLValue::Vec(vs)) => Some(vs),
                    _ => None,
                };
                if let Some(vs) = vals {
                    if vs.len() != items.len() {
                        out.push(Mismatch {
                            path: path_text(path),
                            expected: format!("{} items", items.len()),
                            got: format!(
                                "{} items: {}",
                                vs.len(),
                                self.show(v.unwrap_or(&IDLValue::Null))
                            ),
                            span: pat.span,
                        });
                        // type-check anyway
                        for it in items {
                            self.check(it, inner, None, path, &mut vec![])?;
                        }
                        return Ok(());
                    }
                }
                for (i, it) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    let r = self.check(it, inner, vals.map(|vs| &vs[i]), path, out);
                    path.pop();
                    r?;
                }
                Ok(())
            }
            _ => {
                // a plain value: equality
                let expected = to_value(pat, &t, self.env, self.resolve)?;
                if let Some(v) = v {
                    if !values_equal(v, &expected) {
                        out.push(self.mismatch(path, self.show(&expected), v, pat.span));
                    }
                }
                Ok(())
            }
        }
    }

    fn mismatch(&self, path: &[Seg], expected: String, got: &IDLValue, span: Span) -> Mismatch {
        Mismatch {
            path: path_text(path),
            expected,
            got: self.show(got),
            span,
        }
    }

    fn matchers(
        &self,
        m: &[(Node, Node)],
        pat: &Node,
        t: &Type,
        value: Option<&IDLValue>,
        path: &mut Vec<Seg>,
        out: &mut Vec<Mismatch>,
    ) -> Result<(), ValueError> {
        let merr = |span: Span, msg: String| ValueError {
            span,
            message: msg,
            kind: "matcher",
        };
        let inner_vec = match t.as_ref() {
            TypeInner::Vec(i) => Some(i.clone()),
            _ => None,
        };
        let within = m
            .iter()
            .find(|(k, _)| k.as_str() == Some("within"))
            .map(|(_, v)| v);
        if within.is_some() && !m.iter().any(|(k, _)| k.as_str() == Some("approx")) {
            return Err(merr(pat.span, "`within` goes with `approx`".into()));
        }
        for (k, arg) in m {
            let key = k.as_str().unwrap_or_default();
            let fail = |out: &mut Vec<Mismatch>, path: &[Seg], expected: String| {
                if let Some(v) = value {
                    out.push(Mismatch {
                        path: path_text(path),
                        expected,
                        got: self.show(v),
                        span: arg.span,
                    });
                }
            };
            match key {
                "any" => {}
                "within" => {}
                "eq" | "ne" => {
                    let mut sub = vec![];
                    self.check(arg, t, value, path, &mut sub)?;
                    if value.is_some() {
                        if key == "eq" {
                            out.extend(sub);
                        } else if sub.is_empty() {
                            fail(out, path, format!("anything but {}", self.show_node(arg)));
                        }
                    }
                }
                "gt" | "ge" | "lt" | "le" => {
                    if !is_numeric(t) {
                        return Err(merr(
                            k.span,
                            format!("`{key}` compares numbers, but the value has type {t}"),
                        ));
                    }
                    if self.resolve.lenient() && arg.as_str().is_some_and(|x| x.contains("${")) {
                        continue; // a capture: known at run time
                    }
                    let bound = parse_big(arg)
                        .map(|i| i as f64)
                        .or(match arg.kind {
                            Kind::Float(f) => Some(f),
                            _ => None,
                        })
                        .ok_or_else(|| merr(arg.span, format!("`{key}` needs a number")))?;
                    if let Some(v) = value {
                        let x = as_f64(strip_opt_for(t, v)).unwrap_or(f64::NAN);
                        let ok = match key {
                            "gt" => x > bound,
                            "ge" => x >= bound,
                            "lt" => x < bound,
                            _ => x <= bound,
                        };
                        if !ok {
                            fail(
                                out,
                                path,
                                format!("{} {}", op_text(key), self.show_node(arg)),
                            );
                        }
                    }
                }
                "approx" => {
                    if !is_numeric(t) {
                        return Err(merr(
                            k.span,
                            format!("`approx` compares numbers, but the value has type {t}"),
                        ));
                    }
                    if self.resolve.lenient() && arg.as_str().is_some_and(|x| x.contains("${")) {
                        continue;
                    }
                    let target = parse_big(arg)
                        .map(|i| i as f64)
                        .ok_or_else(|| merr(arg.span, "`approx` needs a number".into()))?;
                    let tol = match within {
                        None => target.abs() * 0.01,
                        Some(w) => match w.as_str().and_then(|s| s.strip_suffix('%')) {
                            Some(p) => {
                                target.abs()
                                    * p.trim()
                                        .parse::<f64>()
                                        .map_err(|_| merr(w.span, "bad percentage".into()))?
                                    / 100.0
                            }
                            None => parse_big(w).map(|i| i as f64).ok_or_else(|| {
                                merr(w.span, "`within` takes `5%` or a number".into())
                            })?,
                        },
                    };
                    if let Some(v) = value {
                        let x = as_f64(strip_opt_for(t, v)).unwrap_or(f64::NAN);
                        if (x - target).abs() > tol || x.is_nan() {
                            fail(out, path, format!("≈ {} (± {})", self.show_node(arg), tol));
                        }
                    }
                }
                "regex" | "contains" => {
                    let s = arg
                        .as_str()
                        .ok_or_else(|| merr(arg.span, format!("`{key}` takes text")))?;
                    let re = if key == "regex" {
                        Some(
                            regex::Regex::new(s)
                                .map_err(|e| merr(arg.span, format!("bad regex: {e}")))?,
                        )
                    } else {
                        None
                    };
                    if !matches!(
                        trace(self.env, t).as_ref(),
                        TypeInner::Text | TypeInner::Principal | TypeInner::Opt(_)
                    ) {
                        return Err(merr(
                            k.span,
                            format!("`{key}` matches text, but the value has type {t}"),
                        ));
                    }
                    if let Some(v) = value {
                        let text = match strip_opt_for(t, v) {
                            IDLValue::Text(s) => Some(s.clone()),
                            IDLValue::Principal(p) => Some(
                                self.norm
                                    .map(|n| n.principal_name(p))
                                    .unwrap_or_else(|| p.to_text()),
                            ),
                            _ => None,
                        };
                        let ok = text
                            .map(|x| {
                                re.as_ref()
                                    .map(|re| re.is_match(&x))
                                    .unwrap_or_else(|| x.contains(s))
                            })
                            .unwrap_or(false);
                        if !ok {
                            fail(
                                out,
                                path,
                                format!(
                                    "text {} {s:?}",
                                    if key == "regex" {
                                        "matching"
                                    } else {
                                        "containing"
                                    }
                                ),
                            );
                        }
                    }
                }
                "len" => {
                    let is_lenable = inner_vec.is_some() || matches!(t.as_ref(), TypeInner::Text);
                    if !is_lenable {
                        return Err(merr(k.span, format!("`len` applies to lists, blobs and text, but the value has type {t}")));
                    }
                    let len = value.map(|v| match v {
                        IDLValue::Vec(vs) => vs.len(),
                        IDLValue::Blob(b) => b.len(),
                        IDLValue::Text(s) => s.chars().count(),
                        _ => 0,
                    });
                    let nat: Type = TypeInner::Nat64.into();
                    let lv = len.map(|l| IDLValue::Nat64(l as u64));
                    path.push(Seg::Field("len()".into()));
                    let r = self.check(arg, &nat, lv.as_ref(), path, out);
                    path.pop();
                    r?;
                }
                "each" | "some" => {
                    let inner = inner_vec.clone().ok_or_else(|| {
                        merr(
                            k.span,
                            format!("`{key}` applies to lists, but the value has type {t}"),
                        )
                    })?;
                    // type check
                    self.check(arg, &inner, None, path, &mut vec![])?;
                    if let Some(v) = value {
                        let items: Vec<IDLValue> = match v {
                            IDLValue::Vec(vs) => vs.clone(),
                            IDLValue::Blob(b) => b.iter().map(|x| IDLValue::Nat8(*x)).collect(),
                            _ => vec![],
                        };
                        if key == "each" {
                            for (i, it) in items.iter().enumerate() {
                                path.push(Seg::Index(i));
                                let r = self.check(arg, &inner, Some(it), path, out);
                                path.pop();
                                r?;
                            }
                        } else {
                            let mut any = false;
                            for it in &items {
                                let mut sub = vec![];
                                self.check(arg, &inner, Some(it), path, &mut sub)?;
                                if sub.is_empty() {
                                    any = true;
                                    break;
                                }
                            }
                            if !any {
                                fail(
                                    out,
                                    path,
                                    format!("some item matching {}", self.show_node(arg)),
                                );
                            }
                        }
                    }
                }
                other => return Err(merr(k.span, format!("unknown matcher `{other}`"))),
            }
        }
        Ok(())
    }
}

fn op_text(k: &str) -> &'static str {
    match k {
        "gt" => ">",
        "ge" => "≥",
        "lt" => "<",
        _ => "≤",
    }
}

fn is_numeric(t: &Type) -> bool {
    match t.as_ref() {
        TypeInner::Opt(i) => is_numeric(i),
        TypeInner::Nat
        | TypeInner::Int
        | TypeInner::Nat8
        | TypeInner::Nat16
        | TypeInner::Nat32
        | TypeInner::Nat64
        | TypeInner::Int8
        | TypeInner::Int16
        | TypeInner::Int32
        | TypeInner::Int64
        | TypeInner::Float32
        | TypeInner::Float64 => true,
        TypeInner::Var(_) | TypeInner::Knot(_) => true, // resolved by the caller's trace
        _ => false,
    }
}

fn strip_opt_for<'v>(t: &Type, v: &'v IDLValue) -> &'v IDLValue {
    match (t.as_ref(), v) {
        (TypeInner::Opt(_), _) => v,
        (_, IDLValue::Opt(inner)) => inner,
        _ => v,
    }
}

/// Equality that ignores the variant index (not known from YAML) and Blob vs Vec<Nat8>.
pub fn values_equal(a: &IDLValue, b: &IDLValue) -> bool {
    match (a, b) {
        (IDLValue::Blob(x), IDLValue::Vec(y)) | (IDLValue::Vec(y), IDLValue::Blob(x)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| matches!(q, IDLValue::Nat8(r) if r == p))
        }
        (IDLValue::Vec(x), IDLValue::Vec(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (IDLValue::Opt(x), IDLValue::Opt(y)) => values_equal(x, y),
        (IDLValue::Record(x), IDLValue::Record(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| p.id == q.id && values_equal(&p.val, &q.val))
        }
        (IDLValue::Variant(VariantValue(x, _)), IDLValue::Variant(VariantValue(y, _))) => {
            x.id == y.id && values_equal(&x.val, &y.val)
        }
        (IDLValue::Null, IDLValue::None) | (IDLValue::None, IDLValue::Null) => true,
        _ => a == b,
    }
}

/// One-line JSON for messages.
pub fn compact(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    const DID: &str = r#"
type Status = variant { Pending; Completed; Failed : text };
type Item = record { id : nat64; title : text; data : blob; owner : principal; note : opt text };
type Err = variant { NotFound; Invalid : record { field : text } };
service : (record { admins : vec principal }) -> {
  put : (Item) -> (variant { Ok : record { id : nat64; status : Status }; Err : Err });
  get : (nat64) -> (opt Item) query;
  many : (text, opt nat32) -> (vec Item) query;
  balance : () -> (nat) query;
}
"#;

    struct R;
    impl Resolve for R {
        fn principal(&self, name: &str) -> Option<Principal> {
            (name == "alice").then(|| Principal::self_authenticating(b"alice"))
        }
        fn var(&self, name: &str) -> Option<Node> {
            (name == "t").then(|| Node {
                span: Span::default(),
                kind: Kind::Str("hello".into()),
            })
        }
    }

    fn iface() -> Interface {
        Interface::from_text(DID).unwrap()
    }

    #[test]
    fn numbers_in_text_are_bucketed() {
        assert_eq!(
            bucket_numbers_in("balance 871195789412 cannot fund 2000000000000 cycles"),
            "balance ~870B cannot fund ~2.0T cycles"
        );
        assert_eq!(
            bucket_numbers_in("id 42, hash ab1234567890123cd, 1234567890123x"),
            "id 42, hash ab1234567890123cd, 1234567890123x"
        );
    }

    #[test]
    fn encodes_records_variants_blobs() {
        let i = iface();
        let f = i.method("put").unwrap();
        let n = parse("{id: 5, title: \"${t} world\", data: 0xdead, owner: alice}").unwrap();
        let n = interpolate(&n, &R).unwrap();
        let bytes = encode_args(Some(&n), &f.args, &i.env, &R).unwrap();
        let back = IDLArgs::from_bytes_with_types(&bytes, &i.env, &f.args).unwrap();
        let text = back.to_string();
        assert!(text.contains("hello world"), "{text}");
        assert!(i.init_args.len() == 1);
    }

    #[test]
    fn type_errors_point_at_the_node() {
        let i = iface();
        let f = i.method("put").unwrap();
        let n = parse("id: 5\ntitle: x\ndata: 0xdead\nowner: alice\nnotte: y\n").unwrap();
        let e = encode_args(Some(&n), &f.args, &i.env, &R).unwrap_err();
        assert_eq!(e.span.line, 5);
        assert!(e.message.contains("did you mean `note`"), "{}", e.message);
        let n = parse("id: -1\ntitle: x\ndata: 0xdead\nowner: alice\n").unwrap();
        let e = encode_args(Some(&n), &f.args, &i.env, &R).unwrap_err();
        assert_eq!(e.span.line, 1);
    }

    #[test]
    fn multi_args_and_blob_generators() {
        let i = iface();
        let f = i.method("many").unwrap();
        let n = parse("[\"x\", 3]").unwrap();
        encode_args(Some(&n), &f.args, &i.env, &R).unwrap();
        let b = blob(&parse("{repeat: ab, len: 5}").unwrap()).unwrap();
        assert_eq!(b, vec![0xab; 5]);
        let b1 = blob(&parse("{bytes_of_len: 3000000, seed: 7}").unwrap()).unwrap();
        let b2 = blob(&parse("{bytes_of_len: 3000000, seed: 7}").unwrap()).unwrap();
        assert_eq!(b1.len(), 3_000_000);
        assert_eq!(b1, b2);
    }

    #[test]
    fn matching_is_partial_and_path_addressed() {
        let i = iface();
        let rets = &i.method("put").unwrap().rets;
        let val = IDLArgs::from_bytes_with_types(
            &candid_parser::parse_idl_args(
                "(variant { Ok = record { id = 7 : nat64; status = variant { Pending } } })",
            )
            .unwrap()
            .annotate_types(true, &i.env, rets)
            .unwrap()
            .to_bytes_with_types(&i.env, rets)
            .unwrap(),
            &i.env,
            rets,
        )
        .unwrap()
        .args
        .remove(0);
        let names = BTreeMap::new();
        let norm = Normalize {
            names: &names,
            start_nanos: 0,
            stable: None,
        };
        let m = Matcher {
            env: &i.env,
            resolve: &R,
            strict: false,
            norm: Some(&norm),
        };
        let mut out = vec![];
        m.check(
            &parse("{Ok: {status: Completed}}").unwrap(),
            &rets[0],
            Some(&val),
            &mut vec![],
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].to_string(),
            "$.Ok.status: expected \"Completed\", got \"Pending\""
        );
        let mut out = vec![];
        m.check(
            &parse("{Ok: {id: {ge: 5, lt: 8}}}").unwrap(),
            &rets[0],
            Some(&val),
            &mut vec![],
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty(), "{out:?}");
        let e = m
            .check(
                &parse("{Ok: {idd: 1}}").unwrap(),
                &rets[0],
                None,
                &mut vec![],
                &mut vec![],
            )
            .unwrap_err();
        assert!(e.message.contains("did you mean `id`"));
        let e = m
            .check(
                &parse("{Ok: {status: Done}}").unwrap(),
                &rets[0],
                None,
                &mut vec![],
                &mut vec![],
            )
            .unwrap_err();
        assert!(e.message.contains("not a case"), "{}", e.message);
        // capture paths
        let segs = parse_path("$.Ok.id").unwrap();
        assert!(matches!(
            type_at(&rets[0], &segs, &i.env).unwrap().as_ref(),
            TypeInner::Nat64
        ));
        assert_eq!(value_at(&val, &segs).unwrap(), &IDLValue::Nat64(7));
        assert!(type_at(&rets[0], &parse_path("$.Ok.idd").unwrap(), &i.env).is_err());
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(parse_big_str("100T"), Some(100_000_000_000_000));
        assert_eq!(parse_big_str("1_000"), Some(1000));
        assert_eq!(parse_big_str("2.5B"), Some(2_500_000_000));
        assert_eq!(fmt_duration(90_000_000_000), "1m30s");
        assert_eq!(fmt_duration(1_500_000_000), "1.5s");
        assert_eq!(bucket_cycles(1_234_567_890_123), "~1.2T");
    }
}
