//! The one module that knows about the YAML parser.
//!
//! `serde_yaml` (deprecated upstream) exposes no source positions for values, and the harness needs a
//! position for every node so that lint errors can point at `file:line:col` even for errors found long
//! after parsing (a Candid type error inside an argument, an undefined capture). So this module reads
//! marked events from `yaml-rust2`, builds a small spanned tree ([`Node`]), and offers a `serde`
//! deserializer over that tree. Everything else in the harness sees only [`Node`], [`Span`],
//! [`Spanned`] and [`RawNode`]; swapping the parser means rewriting this file only.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a scenario file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// Integers that fit i128; bigger ones stay strings.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML node with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: Kind,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }
    /// A short rendering for messages.
    pub fn brief(&self) -> String {
        match &self.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Str(s) => format!("{s:?}"),
            Kind::Seq(v) => format!("a list of {}", v.len()),
            Kind::Map(_) => "a map".into(),
        }
    }
    /// Plain JSON view (used for `${var}` values and schema tests).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(*b),
            Kind::Int(i) => i64::try_from(*i)
                .map(J::from)
                .unwrap_or_else(|_| J::String(i.to_string())),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Kind::Str(s) => J::String(s.clone()),
            Kind::Seq(v) => J::Array(v.iter().map(Node::to_json).collect()),
            Kind::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().map(str::to_string).unwrap_or_else(|| k.brief()),
                            v.to_json(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// A parse or shape error with the position it concerns.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub span: Option<Span>,
    pub message: String,
    /// Stable error kind (see `diag::ErrorKind`), e.g. "yaml", "unknown-key".
    pub kind: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            span: None,
            message: msg.to_string(),
            kind: "shape",
        }
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown key `{field}`");
        if let Some(s) = crate::diag::suggest(field, expected.iter().copied()) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        } else if !expected.is_empty() {
            message.push_str(&format!("; expected one of {}", expected.join(", ")));
        }
        Error {
            span: None,
            message,
            kind: "unknown-key",
        }
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown value `{variant}`");
        if let Some(s) = crate::diag::suggest(variant, expected.iter().copied()) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        } else {
            message.push_str(&format!("; expected one of {}", expected.join(", ")));
        }
        Error {
            span: None,
            message,
            kind: "unknown-key",
        }
    }
    fn missing_field(field: &'static str) -> Self {
        Error {
            span: None,
            message: format!("missing key `{field}`"),
            kind: "missing-key",
        }
    }
    fn duplicate_field(field: &'static str) -> Self {
        Error {
            span: None,
            message: format!("duplicate key `{field}`"),
            kind: "duplicate-key",
        }
    }
}

fn at(mut e: Error, span: Span) -> Error {
    if e.span.is_none() {
        e.span = Some(span);
    }
    e
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct Builder {
    stack: Vec<(Node, Option<Node>, usize)>, // container, pending key for maps, anchor
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    error: Option<Error>,
    docs: usize,
}

fn span_of(m: &Marker) -> Span {
    Span {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => {
                self.docs += 1;
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((container, pending, _)) => match &mut container.kind {
                Kind::Seq(v) => v.push(node),
                Kind::Map(m) => match pending.take() {
                    None => *pending = Some(node),
                    Some(k) => {
                        if let Some(ks) = k.as_str() {
                            if m.iter().any(|(k2, _)| k2.as_str() == Some(ks))
                                && self.error.is_none()
                            {
                                self.error = Some(Error {
                                    span: Some(k.span),
                                    message: format!("duplicate key `{ks}`"),
                                    kind: "duplicate-key",
                                });
                            }
                        }
                        m.push((k, node))
                    }
                },
                _ => unreachable!("only containers are pushed on the stack"),
            },
        }
    }
}

fn scalar(value: String, style: TScalarStyle, tagged_str: bool, span: Span) -> Node {
    let kind = if style != TScalarStyle::Plain || tagged_str {
        Kind::Str(value)
    } else {
        match value.as_str() {
            "~" | "null" | "Null" | "NULL" | "" => Kind::Null,
            "true" | "True" | "TRUE" => Kind::Bool(true),
            "false" | "False" | "FALSE" => Kind::Bool(false),
            s => {
                if let Ok(i) = s.parse::<i128>() {
                    Kind::Int(i)
                } else if let Some(h) = s
                    .strip_prefix("0x")
                    .and_then(|h| i128::from_str_radix(h, 16).ok())
                {
                    // 0x.. stays a string: blobs are written in hex and must not turn into numbers.
                    let _ = h;
                    Kind::Str(value)
                } else if s.contains('.') && s.parse::<f64>().is_ok() && !s.ends_with('.') {
                    Kind::Float(s.parse().unwrap_or(0.0))
                } else {
                    Kind::Str(value)
                }
            }
        }
    };
    Node { span, kind }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let span = span_of(&mark);
        match ev {
            Event::Scalar(v, style, anchor, tag) => {
                let tagged_str = tag.as_ref().map(|t| t.suffix == "str").unwrap_or(false);
                let node = scalar(v, style, tagged_str, span);
                self.push_value(node, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((
                    Node {
                        span,
                        kind: Kind::Seq(vec![]),
                    },
                    None,
                    anchor,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((
                    Node {
                        span,
                        kind: Kind::Map(vec![]),
                    },
                    None,
                    anchor,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, _, anchor)) = self.stack.pop() {
                    // block collections are reported at their first entry
                    let first = match &node.kind {
                        Kind::Seq(v) => v.first().map(|n| n.span),
                        Kind::Map(m) => m.first().map(|(k, _)| k.span),
                        _ => None,
                    };
                    if let Some(f) = first {
                        if f < node.span {
                            node.span = f;
                        }
                    }
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone());
                match node {
                    Some(mut n) => {
                        n.span = span;
                        self.push_value(n, 0)
                    }
                    None => {
                        if self.error.is_none() {
                            self.error = Some(Error {
                                span: Some(span),
                                message: "unknown alias".into(),
                                kind: "yaml",
                            });
                        }
                        self.push_value(
                            Node {
                                span,
                                kind: Kind::Null,
                            },
                            0,
                        )
                    }
                }
            }
            _ => {}
        }
    }
}

/// Parse one YAML document into a spanned tree. Duplicate keys, multiple documents and syntax errors
/// are errors with a position.
pub fn parse(text: &str) -> Result<Node, Error> {
    let mut b = Builder {
        stack: vec![],
        anchors: vec![],
        root: None,
        error: None,
        docs: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        return Err(Error {
            span: Some(span_of(e.marker())),
            message: format!("YAML syntax error: {}", e.info()),
            kind: "yaml",
        });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    if b.docs > 1 {
        return Err(Error {
            span: None,
            message: "a scenario file holds exactly one YAML document".into(),
            kind: "yaml",
        });
    }
    Ok(b.root.unwrap_or(Node {
        span: Span { line: 1, col: 1 },
        kind: Kind::Null,
    }))
}

// ---------------------------------------------------------------------------------------------
// Spanned values and raw nodes, passed through serde by name
// ---------------------------------------------------------------------------------------------

const SPANNED: &str = "$harness::yaml::Spanned";
const RAW: &str = "$harness::yaml::RawNode";

thread_local! {
    static STASH: RefCell<Vec<Node>> = const { RefCell::new(Vec::new()) };
}

/// A value with the position of the YAML node it came from.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub span: Span,
    pub value: T,
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a spanned value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let line: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("span"))?;
                let col: usize = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("span"))?;
                let value: T = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("value"))?;
                Ok(Spanned {
                    span: Span { line, col },
                    value,
                })
            }
        }
        d.deserialize_newtype_struct(SPANNED, V(std::marker::PhantomData))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
    /// As `T` (a `Spanned<Step>` inside a `repeat` step refers to the `Step` definition).
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// An uninterpreted YAML subtree (arguments, patterns): interpreted later against a Candid type.
#[derive(Clone, Debug, PartialEq)]
pub struct RawNode(pub Node);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<RawNode, E> {
                STASH
                    .with(|s| s.borrow().get(i as usize).cloned())
                    .map(RawNode)
                    .ok_or_else(|| E::custom("raw YAML node is only available from harness::yaml"))
            }
        }
        d.deserialize_newtype_struct(RAW, V)
    }
}

impl schemars::JsonSchema for RawNode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "description": "A value written in YAML, typed by the canister's Candid interface" })
    }
}

// ---------------------------------------------------------------------------------------------
// serde Deserializer over Node
// ---------------------------------------------------------------------------------------------

/// Deserialize a typed value from a spanned node. Errors carry the innermost position.
pub fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, Error> {
    STASH.with(|s| s.borrow_mut().clear());
    let r = T::deserialize(NodeDe(node));
    STASH.with(|s| s.borrow_mut().clear());
    r
}

#[derive(Clone, Copy)]
struct NodeDe<'a>(&'a Node);

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let span = self.0.span;
        let r = match &self.0.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(i) => {
                if let Ok(u) = u64::try_from(*i) {
                    v.visit_u64(u)
                } else if let Ok(s) = i64::try_from(*i) {
                    v.visit_i64(s)
                } else {
                    v.visit_i128(*i)
                }
            }
            Kind::Float(f) => v.visit_f64(*f),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(items) => v.visit_seq(Seq {
                it: items.iter(),
                span,
            }),
            Kind::Map(entries) => v.visit_map(Map {
                it: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| at(e, span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0.kind {
            Kind::Null => v.visit_none(),
            _ => v.visit_some(self).map_err(|e| at(e, self.0.span)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        // Scalars are accepted where strings are expected (`as: 1` is unusual but harmless).
        match &self.0.kind {
            Kind::Int(i) => v.visit_string(i.to_string()),
            Kind::Float(f) => v.visit_string(f.to_string()),
            Kind::Bool(b) => v.visit_string(b.to_string()),
            _ => self.deserialize_any(v),
        }
        .map_err(|e| at(e, self.0.span))
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_string(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        let span = self.0.span;
        if name == SPANNED {
            return v
                .visit_seq(SpannedSeq {
                    node: self.0,
                    state: 0,
                })
                .map_err(|e| at(e, span));
        }
        if name == RAW {
            let idx = STASH.with(|s| {
                let mut s = s.borrow_mut();
                s.push(self.0.clone());
                s.len() - 1
            });
            return v.visit_u64(idx as u64);
        }
        v.visit_newtype_struct(self).map_err(|e| at(e, span))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let span = self.0.span;
        match &self.0.kind {
            Kind::Str(s) => v
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: Error| at(e, span)),
            Kind::Map(m) if m.len() == 1 => v
                .visit_enum(Enum {
                    key: &m[0].0,
                    value: &m[0].1,
                })
                .map_err(|e| at(e, span)),
            _ => Err(Error {
                span: Some(span),
                message: format!(
                    "expected a name or a single-key map, found {}",
                    self.0.type_name()
                ),
                kind: "shape",
            }),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier
    }
}

struct SpannedSeq<'a> {
    node: &'a Node,
    state: u8,
}

impl<'de, 'a> SeqAccess<'de> for SpannedSeq<'a> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.state += 1;
        match self.state {
            1 => seed
                .deserialize((self.node.span.line as u64).into_deserializer())
                .map(Some),
            2 => seed
                .deserialize((self.node.span.col as u64).into_deserializer())
                .map(Some),
            3 => seed.deserialize(NodeDe(self.node)).map(Some),
            _ => Ok(None),
        }
    }
}

struct Seq<'a> {
    it: std::slice::Iter<'a, Node>,
    #[allow(dead_code)]
    span: Span,
}

impl<'de, 'a> SeqAccess<'de> for Seq<'a> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.it.next() {
            None => Ok(None),
            Some(n) => seed
                .deserialize(NodeDe(n))
                .map(Some)
                .map_err(|e| at(e, n.span)),
        }
    }
}

struct Map<'a> {
    it: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de, 'a> MapAccess<'de> for Map<'a> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.it.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k))
                    .map(Some)
                    .map_err(|e| at(e, k.span))
            }
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self.value.take().expect("value after key");
        seed.deserialize(NodeDe(v)).map_err(|e| at(e, v.span))
    }
}

struct Enum<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for Enum<'a> {
    type Error = Error;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let key = self.key;
        seed.deserialize(NodeDe(key))
            .map(|v| (v, self))
            .map_err(|e| at(e, key.span))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for Enum<'a> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        match self.value.kind {
            Kind::Null => Ok(()),
            _ => Err(Error {
                span: Some(self.value.span),
                message: "this value takes no argument".into(),
                kind: "shape",
            }),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(NodeDe(self.value))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(NodeDe(self.value), v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(NodeDe(self.value), v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_one_based() {
        let n = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!(b.span, Span { line: 3, col: 3 });
        let c = b.get("c").unwrap();
        assert_eq!(c.span.line, 3);
        assert_eq!(n.get("a").unwrap().kind, Kind::Int(1));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.kind, "duplicate-key");
        assert_eq!(e.span.unwrap().line, 3);
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let n = parse("a: \"12\"\nb: 0xff\nc: 1.5\nd: ~\n").unwrap();
        assert_eq!(n.get("a").unwrap().kind, Kind::Str("12".into()));
        assert_eq!(n.get("b").unwrap().kind, Kind::Str("0xff".into()));
        assert_eq!(n.get("c").unwrap().kind, Kind::Float(1.5));
        assert_eq!(n.get("d").unwrap().kind, Kind::Null);
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        name: Spanned<String>,
        #[allow(dead_code)]
        raw: Option<RawNode>,
    }

    #[test]
    fn unknown_field_has_span_and_suggestion() {
        let n = parse("name: x\nnmae: y\n").unwrap();
        let e = from_node::<T>(&n).unwrap_err();
        assert_eq!(e.span, Some(Span { line: 2, col: 1 }));
        assert!(e.message.contains("did you mean `name`"), "{}", e.message);
        let n = parse("name: x\nraw: {a: [1]}\n").unwrap();
        let t = from_node::<T>(&n).unwrap();
        assert_eq!(t.name.span, Span { line: 1, col: 7 });
        assert!(t.raw.unwrap().0.get("a").is_some());
    }
}
