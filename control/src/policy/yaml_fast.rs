//! The fast path for YAML policies: one pass over the events of the YAML parser serde-saphyr
//! itself runs (granit-parser, re-exported by serde-saphyr) into a `serde_json::Value`, then the
//! model's derived `Deserialize` (with `deny_unknown_fields`) from that value. On a 10 000-rule
//! policy this costs a fraction of serde-saphyr's deserializer, which records every key, keeps
//! merge and duplicate-key bookkeeping and enforces its budgets event by event.
//!
//! It only takes the plain subset policies are written in: block and flow mappings and
//! sequences, quoted and block scalars (strings), and plain scalars that serde-saphyr would read
//! the same way whatever the target type asks (a decimal integer, or text that cannot be a null,
//! a boolean, a number or a float). Everything else declines (`None`): anchors, aliases, tags,
//! `%YAML` directives, merge keys (`<<`), duplicate or non-text keys, empty, null-, boolean- or
//! float-looking plain scalars, several documents, a byte-order mark, nesting or sizes near
//! serde-saphyr's budgets, a syntax error, and a document that does not fit the model. The
//! caller then runs serde-saphyr, which gives the result or the error with its path and
//! position. So this path never accepts a text serde-saphyr would read differently; the
//! invariant is checked by [`crate::fuzzing`] on every input it is given.

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle};

use super::dto::PolicyDocument;

/// serde-saphyr's default `max_depth` is 64; stay below it.
const MAX_DEPTH: usize = 60;
/// serde-saphyr's default `max_nodes` is 250 000 (events 1 000 000); every event counts here.
const MAX_EVENTS: usize = 240_000;

/// The document, if `text` is in the subset this path reads exactly as serde-saphyr does.
pub(crate) fn parse(text: &str) -> Option<PolicyDocument> {
    PolicyDocument::deserialize(to_value(text)?).ok()
}

/// A plain scalar as serde-saphyr reads it for any target, when that is unambiguous.
enum Plain {
    Text,
    Integer(u64),
}

fn classify_plain(s: &str) -> Option<Plain> {
    let b = s.as_bytes();
    let first = *b.first()?;
    if first.is_ascii_digit() {
        if b.iter().all(u8::is_ascii_digit) {
            // Decimal without leading zeros (`0123` and friends are options in serde-saphyr).
            if first == b'0' && b.len() > 1 {
                return None;
            }
            return s.parse().ok().map(Plain::Integer);
        }
        // Addresses and prefixes (`10.0.0.0/24`, `192.168.1.1`): not a number in any form.
        let dots = b.iter().filter(|&&c| c == b'.').count();
        let text = (b.contains(&b'/') || dots >= 2) && !b.contains(&b':') && !b.contains(&b'_');
        return text.then_some(Plain::Text);
    }
    if !first.is_ascii_alphabetic() {
        return None;
    }
    // YAML 1.1 booleans and nulls, and what Rust's float parser takes (`inf`, `NaN`).
    const RESERVED: [&str; 13] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity", "e",
    ];
    if RESERVED.iter().any(|r| s.eq_ignore_ascii_case(r)) {
        return None;
    }
    Some(Plain::Text)
}

enum Frame {
    Seq(Vec<Value>),
    Map(Map<String, Value>, Option<String>),
}

/// Builds the value of the single document in `text`, or declines.
fn to_value(text: &str) -> Option<Value> {
    if text.contains('\u{feff}') {
        return None;
    }
    let mut options = Options::default();
    options.emit_comments = false;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Value> = None;
    let mut documents = 0usize;
    let mut events = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, _span) = next.ok()?;
        events += 1;
        if events > MAX_EVENTS {
            return None;
        }
        let value = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(_, version) => {
                documents += 1;
                if version.is_some() || documents > 1 {
                    return None;
                }
                continue;
            }
            Event::Scalar(v, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                let plain = style == ScalarStyle::Plain;
                if let Some(Frame::Map(map, key @ None)) = stack.last_mut() {
                    // A key: text only, no merge key, no duplicate.
                    if plain && !matches!(classify_plain(&v), Some(Plain::Text)) {
                        return None;
                    }
                    if v == "<<" || map.contains_key(v.as_ref()) {
                        return None;
                    }
                    *key = Some(v.into_owned());
                    continue;
                }
                if !plain {
                    Value::String(v.into_owned())
                } else {
                    match classify_plain(&v)? {
                        Plain::Text => Value::String(v.into_owned()),
                        Plain::Integer(n) => Value::Number(Number::from(n)),
                    }
                }
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= MAX_DEPTH {
                    return None;
                }
                // A collection as a mapping key.
                if let Some(Frame::Map(_, None)) = stack.last() {
                    return None;
                }
                let is_seq = matches!(event, Event::SequenceStart(..));
                stack.push(if is_seq {
                    Frame::Seq(Vec::new())
                } else {
                    Frame::Map(Map::new(), None)
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq(items) => Value::Array(items),
                Frame::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map(map, None) => Value::Object(map),
                Frame::Map(_, Some(_)) | Frame::Seq(_) => return None,
            },
            // Aliases, anchors, comments, anything newer: serde-saphyr's business.
            _ => return None,
        };
        match stack.last_mut() {
            None if root.is_none() => root = Some(value),
            None => return None,
            Some(Frame::Seq(items)) => items.push(value),
            Some(Frame::Map(map, key)) => {
                let k = key.take()?;
                map.insert(k, value);
            }
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saphyr(text: &str) -> Option<PolicyDocument> {
        serde_saphyr::from_str(text).ok()
    }

    const POLICY: &str = "\
apiVersion: septa.io/v1
kind: Policy
metadata:
  name: t
  labels: {team: ops, 'tier': \"1\"}
spec:
  defaults: {mode: enforce}
  zones:
    - name: a
      subnets: [10.0.0.0/24, fd00::/64]
    - name: b
      mode: monitor
      subnets:
        - 10.0.1.0/24
  conduits:
    - name: c1
      from: [a]
      to: [b]
      services:
        - proto: tcp
          ports: [443, \"8000-8080\"]
        - {proto: icmp, icmpTypes: [8]}
";

    #[test]
    fn reads_the_subset_as_serde_saphyr_does() {
        let fast = parse(POLICY).expect("in the subset");
        assert_eq!(Some(fast), saphyr(POLICY));
    }

    #[test]
    fn the_shipped_policies_take_the_fast_path() {
        for text in [
            include_str!("../../../configs/policies/demo.yaml"),
            include_str!("../../../configs/policies/routed-lab.yaml"),
        ] {
            let fast = parse(text).expect("in the subset");
            assert_eq!(Some(fast), saphyr(text));
        }
    }

    #[test]
    fn declines_what_it_does_not_read_exactly() {
        for (from, to) in [
            ("name: t\n", "name: &n t\n"),
            ("ports: [443,", "ports: [!!int 443,"),
            ("  name: t\n", "  name: t\n  name: u\n"),
            ("from: [a]", "from: [yes]"),
            ("from: [a]", "from: [~]"),
            ("ports: [443,", "ports: [0443,"),
            ("ports: [443,", "ports: [0x1bb,"),
            ("ports: [443,", "ports: [4.5e2,"),
            ("ports: [443,", "ports: [1_000,"),
            ("kind: Policy\n", "kind: Policy\n---\nkind: Policy\n"),
            ("kind: Policy\n", "kind:\n"),
        ] {
            let text = POLICY.replacen(from, to, 1);
            assert_ne!(text, POLICY, "{from}");
            assert!(parse(&text).is_none(), "{to}");
        }
        assert!(parse(&format!("%YAML 1.2\n---\n{POLICY}")).is_none());
        assert!(parse(&format!("\u{feff}{POLICY}")).is_none());
        assert!(parse("a: [").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn plain_scalars_are_classified_conservatively() {
        let text = |s| matches!(classify_plain(s), Some(Plain::Text));
        assert!(text("tcp") && text("septa.io/v1") && text("10.1.2.0/24") && text("fd00::1"));
        assert!(text("192.168.1.1"));
        for s in [
            "", "true", "False", "NULL", "y", "No", "off", "inf", "NaN", "e", "1.5", "1e3", "-1",
            "+1", ".5", "1:30", "0o17", "12:00:00", "~",
        ] {
            assert!(!text(s), "{s}");
        }
        assert!(matches!(classify_plain("443"), Some(Plain::Integer(443))));
        assert!(matches!(classify_plain("0"), Some(Plain::Integer(0))));
        assert!(classify_plain("007").is_none());
        assert!(classify_plain("99999999999999999999").is_none());
    }
}
