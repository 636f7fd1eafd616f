//! Diagnostics: `file:line:col`, the offending line and a caret.

use crate::yaml::Span;
use std::fmt;
use std::path::{Path, PathBuf};

/// Every kind of lint error, with a stable name (used in tests and in `--format` outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// YAML syntax error.
    Yaml,
    /// A key the format does not know (with a suggestion).
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// The same key twice in one map.
    DuplicateKey,
    /// A value of the wrong shape (a list where a map is expected, ...).
    Shape,
    /// `schema:` missing or not a supported version.
    Schema,
    /// A step with no action or with two actions.
    StepAction,
    /// Two steps with the same id, or a reference to a step id that does not exist.
    StepId,
    /// A canister logical name that is not declared.
    UnknownCanister,
    /// An identity that is not declared.
    UnknownIdentity,
    /// A method that the canister's Candid interface does not have.
    UnknownMethod,
    /// An argument or pattern that does not fit the Candid type.
    Type,
    /// A `${name}` that is neither a var, a parameter nor an earlier capture.
    UndefinedCapture,
    /// A capture path that does not exist in the method's return type.
    CapturePath,
    /// A cargo feature the crate does not declare.
    UnknownFeature,
    /// A crate that is not in the workspace, or a .did that cannot be read.
    Build,
    /// An include that does not exist, or wrong parameters.
    Include,
    /// A matcher used wrongly (bad regex, unknown matcher, ...).
    Matcher,
    /// A duration or time that cannot be read.
    Duration,
    /// Variants that cannot be expanded (no stage steps, ...).
    Variant,
    /// A failpoint step whose canister is not built with the `failpoints` feature.
    Failpoint,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Yaml => "yaml",
            ErrorKind::UnknownKey => "unknown-key",
            ErrorKind::MissingKey => "missing-key",
            ErrorKind::DuplicateKey => "duplicate-key",
            ErrorKind::Shape => "shape",
            ErrorKind::Schema => "schema",
            ErrorKind::StepAction => "step-action",
            ErrorKind::StepId => "step-id",
            ErrorKind::UnknownCanister => "unknown-canister",
            ErrorKind::UnknownIdentity => "unknown-identity",
            ErrorKind::UnknownMethod => "unknown-method",
            ErrorKind::Type => "type",
            ErrorKind::UndefinedCapture => "undefined-capture",
            ErrorKind::CapturePath => "capture-path",
            ErrorKind::UnknownFeature => "unknown-feature",
            ErrorKind::Build => "build",
            ErrorKind::Include => "include",
            ErrorKind::Matcher => "matcher",
            ErrorKind::Duration => "duration",
            ErrorKind::Variant => "variant",
            ErrorKind::Failpoint => "failpoint",
        }
    }
    pub fn from_yaml(kind: &str) -> ErrorKind {
        match kind {
            "yaml" => ErrorKind::Yaml,
            "unknown-key" => ErrorKind::UnknownKey,
            "missing-key" => ErrorKind::MissingKey,
            "duplicate-key" => ErrorKind::DuplicateKey,
            _ => ErrorKind::Shape,
        }
    }
}

/// One lint error.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    pub file: PathBuf,
    pub span: Option<Span>,
    pub message: String,
    /// The offending source line (filled in by [`Diagnostic::with_source`]).
    pub line_text: Option<String>,
}

impl Diagnostic {
    pub fn new(
        kind: ErrorKind,
        file: &Path,
        span: Option<Span>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            kind,
            file: file.to_path_buf(),
            span,
            message: message.into(),
            line_text: None,
        }
    }
    pub fn with_source(mut self, source: &str) -> Self {
        if let Some(span) = self.span {
            self.line_text = source
                .lines()
                .nth(span.line.saturating_sub(1))
                .map(str::to_string);
        }
        self
    }
    /// The line the error points at (1-based), if any.
    pub fn line(&self) -> Option<usize> {
        self.span.map(|s| s.line)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = crate::paths::display(&self.file);
        match self.span {
            Some(s) => writeln!(
                f,
                "error[{}]: {}:{}:{}: {}",
                self.kind.name(),
                file,
                s.line,
                s.col,
                self.message
            )?,
            None => writeln!(f, "error[{}]: {}: {}", self.kind.name(), file, self.message)?,
        }
        if let (Some(s), Some(text)) = (self.span, &self.line_text) {
            let gutter = s.line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", s.line, text)?;
            let pad: String = text
                .chars()
                .take(s.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{:gutter$} | {}^", "", pad)?;
        }
        Ok(())
    }
}

/// The closest candidate by Jaro-Winkler similarity, if it is close enough.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(word, c).max(strsim::normalized_damerau_levenshtein(word, c)),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.6)
        .max_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(_, c)| c)
}

/// "did you mean" suffix for messages.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(word, candidates) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_column() {
        let src = "a: 1\nbad: here\n";
        let d = Diagnostic::new(
            ErrorKind::UnknownKey,
            Path::new("x.yaml"),
            Some(Span { line: 2, col: 6 }),
            "nope",
        )
        .with_source(src);
        let s = d.to_string();
        assert!(s.contains("x.yaml:2:6: nope"), "{s}");
        assert!(s.contains("2 | bad: here"), "{s}");
        assert!(s.contains("  |      ^"), "{s}");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("stpes", ["steps", "name"]), Some("steps"));
        assert_eq!(suggest("zzz", ["steps", "name"]), None);
    }
}
