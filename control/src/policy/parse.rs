//! Reading policy text: YAML (serde-saphyr) or JSON (serde_json) into [`PolicyDocument`], then
//! validation, with every diagnostic carrying its path and, where the source allows, its line and
//! column.
//!
//! Shape errors (unknown field, wrong type, bad YAML) stop deserialisation at the first one; the
//! path comes from `serde_path_to_error`, the location from the parser. Semantic errors are all
//! collected by [`super::validate`]; for YAML their paths are mapped back to positions by
//! [`YamlLocator`], an index from path to node position built from the parser's event stream.
//!
//! Never: evaluate anything the document says (no includes, no tags with meaning, no network);
//! serde-saphyr's default budgets bound alias expansion and nesting.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::granit_parser::{Event, Parser};

use super::dto::PolicyDocument;
use super::{ValidatedPolicy, validate};
use crate::error::{Diagnostic, Diagnostics, PolicyError};

/// The syntax of a policy text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML (files, the console's editor).
    Yaml,
    /// JSON (the REST API).
    Json,
}

impl Format {
    /// `Json` for names ending in `.json`, `Yaml` otherwise.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parses and validates a policy text. On error, every diagnostic has a path and (YAML, JSON
/// shape errors) a position.
pub fn parse_policy(text: &str, format: Format) -> Result<ValidatedPolicy, PolicyError> {
    let doc = parse_document(text, format)?;
    match validate(doc) {
        Ok(p) => Ok(p),
        Err(mut diags) => {
            if format == Format::Yaml {
                let locator = YamlLocator::new(text);
                for d in &mut diags {
                    if let Some((l, c)) = locator.locate(&d.path) {
                        d.line = Some(l);
                        d.column = Some(c);
                    }
                }
            }
            Err(PolicyError::Invalid(Diagnostics(diags)))
        }
    }
}

/// Parses and validates a policy that arrived as a JSON document (the API's object form)
/// straight from the parsed value, without printing it to text and parsing that again. Only a
/// document that does not fit the model takes the text path, for the same diagnostics
/// [`parse_policy`] gives.
pub fn parse_policy_value(v: &serde_json::Value) -> Result<ValidatedPolicy, PolicyError> {
    match PolicyDocument::deserialize(v) {
        Ok(doc) => validate(doc).map_err(|d| PolicyError::Invalid(Diagnostics(d))),
        Err(_) => parse_policy(&v.to_string(), Format::Json),
    }
}

/// Parses a policy text into its DTO without semantic validation.
pub fn parse_document(text: &str, format: Format) -> Result<PolicyDocument, PolicyError> {
    match format {
        Format::Json => parse_json(text),
        Format::Yaml => parse_yaml(text),
    }
}

/// Fast path: deserialise without path tracking (`serde_path_to_error` wraps every value and
/// costs about as much again as the parse itself on large policies). Only a document that fails
/// is parsed a second time, with tracking, for the error's path: same result, same errors.
fn parse_json(text: &str) -> Result<PolicyDocument, PolicyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(doc) = PolicyDocument::deserialize(&mut de)
        && de.end().is_ok()
    {
        return Ok(doc);
    }
    parse_json_tracked(text)
}

fn parse_json_tracked(text: &str) -> Result<PolicyDocument, PolicyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: PolicyDocument = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = clean_path(&e.path().to_string());
        let inner = e.into_inner();
        PolicyError::Syntax(Diagnostic {
            path,
            message: strip_json_position(&inner.to_string()),
            line: Some(inner.line() as u64),
            column: Some(inner.column() as u64),
        })
    })?;
    de.end().map_err(|e| {
        PolicyError::Syntax(Diagnostic {
            path: String::new(),
            message: strip_json_position(&e.to_string()),
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
        })
    })?;
    Ok(doc)
}

/// Fast paths first: the policy subset read straight from the parser's events
/// ([`super::yaml_fast`]), then serde-saphyr untracked; serde-saphyr with path tracking only
/// for a text that fails, for its error.
fn parse_yaml(text: &str) -> Result<PolicyDocument, PolicyError> {
    if let Some(doc) = super::yaml_fast::parse(text) {
        return Ok(doc);
    }
    if let Ok(doc) =
        serde_saphyr::with_deserializer_from_str(text, |de| PolicyDocument::deserialize(de))
    {
        return Ok(doc);
    }
    parse_yaml_tracked(text)
}

fn parse_yaml_tracked(text: &str) -> Result<PolicyDocument, PolicyError> {
    let mut path_seen = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path_seen = clean_path(&e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let plain = e.without_snippet();
        let loc = plain.location().or_else(|| e.location());
        let (line, column) = match loc {
            Some(l) if l.line() > 0 => (Some(l.line()), Some(l.column())),
            _ => (None, None),
        };
        PolicyError::Syntax(Diagnostic {
            path: path_seen,
            message: plain.to_string(),
            line,
            column,
        })
    })
}

/// serde_path_to_error renders the root as `.`; we render it as the empty path.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_owned()
    }
}

/// serde_json appends " at line L column C"; the diagnostic carries those separately.
fn strip_json_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Maps paths such as `spec.zones[1].subnets[0]` to the 1-based (line, column) of the YAML node
/// at that path (for a mapping entry, its value).
pub struct YamlLocator {
    positions: HashMap<String, (u64, u64)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl YamlLocator {
    /// Indexes `text`; a text that does not parse yields an empty index (positions then come
    /// from the parser error instead).
    pub fn new(text: &str) -> Self {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let pos = (span.start.line() as u64, span.start.col() as u64 + 1);
            let is_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::MappingStart(..)
                    | Event::Alias(..)
            );
            if !is_node {
                match event {
                    Event::SequenceEnd | Event::MappingEnd => {
                        stack.pop();
                        Self::finish_value(&mut stack);
                    }
                    _ => {}
                }
                continue;
            }
            // A scalar in key position of a mapping is a key, not a node with a path.
            if let Some(Frame::Map {
                key: key @ None, ..
            }) = stack.last_mut()
            {
                if let Event::Scalar(k, ..) = &event {
                    *key = Some(k.to_string());
                }
                // Complex keys are not part of our schema; skip their contents.
                if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) {
                    *key = Some(String::from("?"));
                    stack.push(Frame::Seq {
                        path: String::from("?"),
                        next: 0,
                    });
                }
                continue;
            }
            let path = match stack.last() {
                None => String::new(),
                // The key is always set here: the key-position case was handled above.
                Some(Frame::Map { path, key }) => {
                    let k = key.as_deref().unwrap_or_default();
                    if path.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{path}.{k}")
                    }
                }
                Some(Frame::Seq { path, next }) => format!("{path}[{next}]"),
            };
            positions.entry(path.clone()).or_insert(pos);
            match event {
                Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                Event::MappingStart(..) => stack.push(Frame::Map { path, key: None }),
                _ => Self::finish_value(&mut stack),
            }
        }
        YamlLocator { positions }
    }

    /// After a complete value: a mapping waits for its next key, a sequence moves on.
    fn finish_value(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }

    /// Position of the node at `path`, or of its nearest ancestor that exists in the text (a
    /// missing field is reported at the mapping that lacks it).
    pub fn locate(&self, path: &str) -> Option<(u64, u64)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "\
apiVersion: septa.io/v1
kind: Policy
metadata:
  name: t
spec:
  zones:
    - name: a
      subnets: [10.0.0.0/24]
    - name: b
      subnets:
        - 10.0.1.0/24
        - 10.0.2.0/33
";

    #[test]
    fn locator_finds_values_in_block_and_flow_style() {
        let l = YamlLocator::new(SMALL);
        assert_eq!(l.locate("apiVersion"), Some((1, 13)));
        assert_eq!(l.locate("spec.zones[0].name"), Some((7, 13)));
        assert_eq!(l.locate("spec.zones[0].subnets[0]"), Some((8, 17)));
        assert_eq!(l.locate("spec.zones[1].subnets[1]"), Some((12, 11)));
        // Missing field: the nearest ancestor.
        assert_eq!(l.locate("spec.zones[1].mode"), Some((9, 7)));
    }

    #[test]
    fn semantic_errors_carry_yaml_positions() {
        let err = parse_policy(SMALL, Format::Yaml).unwrap_err();
        let d = err.diagnostics();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "spec.zones[1].subnets[1]");
        assert_eq!((d[0].line, d[0].column), (Some(12), Some(11)));
    }

    #[test]
    fn unknown_yaml_field_is_named_with_path_and_line() {
        let text = SMALL.replace(
            "      subnets: [10.0.0.0/24]",
            "      subnetz: [10.0.0.0/24]",
        );
        let err = parse_policy(&text, Format::Yaml).unwrap_err();
        let PolicyError::Syntax(d) = err else {
            panic!("{err}")
        };
        assert!(d.message.contains("subnetz"), "{d}");
        assert!(d.path.starts_with("spec.zones[0]"), "{d}");
        assert_eq!(d.line, Some(8), "{d}");
    }

    #[test]
    fn unknown_json_field_is_named_with_path_and_line() {
        let text = r#"{"apiVersion":"septa.io/v1","kind":"Policy","metadata":{"name":"t"},
"spec":{"zones":[{"name":"a","subnets":["10.0.0.0/8"],"colour":"red"}]}}"#;
        let err = parse_policy(text, Format::Json).unwrap_err();
        let PolicyError::Syntax(d) = err else {
            panic!("{err}")
        };
        assert!(d.message.contains("colour"), "{d}");
        assert!(d.path.starts_with("spec.zones[0]"), "{d}");
        assert_eq!(d.line, Some(2));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = SMALL.replace("  name: t", "  name: [t]");
        let PolicyError::Syntax(d) = parse_policy(&text, Format::Yaml).unwrap_err() else {
            panic!()
        };
        assert_eq!(d.path, "metadata.name", "{d}");
        assert_eq!(d.line, Some(4), "{d}");
    }

    #[test]
    fn broken_yaml_has_a_position() {
        let text = "apiVersion: septa.io/v1\nkind: [Policy\n";
        let PolicyError::Syntax(d) = parse_policy(text, Format::Yaml).unwrap_err() else {
            panic!()
        };
        assert!(d.line.is_some(), "{d}");
    }

    #[test]
    fn a_json_document_parses_as_its_text_does() {
        let p = parse_policy(
            SMALL.replace("10.0.2.0/33", "10.0.2.0/24").as_str(),
            Format::Yaml,
        )
        .unwrap();
        let text = String::from_utf8(p.canonical_json()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parse_policy_value(&v).unwrap(), p);
        // Invalid documents: the same diagnostics as the text path (semantic and shape errors).
        for bad in [
            text.replace("10.0.2.0/24", "10.0.2.0/33"),
            text.replace("\"subnets\"", "\"subnetz\""),
        ] {
            let v: serde_json::Value = serde_json::from_str(&bad).unwrap();
            assert_eq!(
                parse_policy_value(&v).unwrap_err().diagnostics(),
                parse_policy(&v.to_string(), Format::Json)
                    .unwrap_err()
                    .diagnostics()
            );
        }
    }

    #[test]
    fn trailing_json_is_rejected() {
        let text = r#"{"apiVersion":"septa.io/v1","kind":"Policy","metadata":{"name":"t"},"spec":{"zones":[]}} x"#;
        assert!(matches!(
            parse_policy(text, Format::Json),
            Err(PolicyError::Syntax(_))
        ));
    }
}
