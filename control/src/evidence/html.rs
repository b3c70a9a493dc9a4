//! The HTML rendering of a pack: a pure function of the pack (so [`super::verify`] can check the
//! report is the rendering of the JSON), self-contained, no scripts.

use std::fmt::Write as _;

use serde_json::Value;

use super::EvidencePack;
use crate::export::rfc3339_ms;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn title(section: &str) -> &'static str {
    match section {
        "matrix" => "Zone / conduit matrix",
        "flow-map" => "Observed data-flow map",
        "verdicts" => "Deny and would-deny statistics",
        "changes" => "Policy change history",
        "anomalies" => "Anomaly summary",
        "models" => "Model versions",
        "log" => "Audit log integrity",
        _ => "Statement",
    }
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn details(out: &mut String, section: &str, data: &Value) {
    let rows = |key: &str| {
        data.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match section {
        "matrix" => {
            let body: Vec<Vec<String>> = rows("cells")
                .iter()
                .flat_map(|c| {
                    let (f, t) = (s(&c["from"]), s(&c["to"]));
                    c["conduits"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |k| {
                            vec![
                                f.clone(),
                                t.clone(),
                                s(&k["conduit"]),
                                s(&k["action"]),
                                s(&k["mode"]),
                                k["services"].to_string(),
                            ]
                        })
                })
                .collect();
            table(
                out,
                &["from", "to", "conduit", "action", "mode", "services"],
                &body,
            );
        }
        "flow-map" => {
            let body: Vec<Vec<String>> = rows("edges")
                .iter()
                .map(|e| vec![s(&e["from"]), s(&e["to"]), s(&e["flows"]), s(&e["bytes"])])
                .collect();
            table(out, &["from zone", "to zone", "flows", "bytes"], &body);
        }
        "verdicts" => {
            let body: Vec<Vec<String>> = rows("top_denied")
                .iter()
                .map(|e| {
                    vec![
                        s(&e["src"]),
                        s(&e["dst"]),
                        s(&e["proto"]),
                        s(&e["dport"]),
                        s(&e["count"]),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "source",
                    "destination",
                    "proto",
                    "port",
                    "denied / would-deny",
                ],
                &body,
            );
        }
        "changes" | "anomalies" => {
            let key = if section == "changes" {
                "changes"
            } else {
                "alerts"
            };
            let body: Vec<Vec<String>> = rows(key)
                .iter()
                .map(|c| {
                    vec![
                        s(&c["seq"]),
                        c["ts_ms"].as_i64().map(rfc3339_ms).unwrap_or_default(),
                        s(&c["action"]),
                        s(&c["actor"]),
                        s(&c["reason"]),
                        s(&c["result"]),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    "record",
                    "time",
                    "action",
                    "author / approver",
                    "reason",
                    "result",
                ],
                &body,
            );
        }
        "models" => {
            let body: Vec<Vec<String>> = rows("models")
                .iter()
                .map(|m| vec![s(&m["file"]), s(&m["sha256"]), s(&m["bytes"])])
                .collect();
            table(out, &["file", "sha256", "bytes"], &body);
        }
        _ => {
            let _ = write!(
                out,
                "<pre>{}</pre>",
                esc(&serde_json::to_string_pretty(data).unwrap_or_default())
            );
        }
    }
}

/// Renders the report.
pub fn render(p: &EvidencePack) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Septa evidence pack {} to {}</title>\
         <style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}table{{border-collapse:collapse;margin:.5em 0}}\
         td,th{{border:1px solid #999;padding:.2em .5em;font-size:90%;text-align:left}}.src{{font-family:monospace;font-size:85%}}</style></head><body>\n",
        esc(&rfc3339_ms(p.from_ms)),
        esc(&rfc3339_ms(p.to_ms))
    );
    let _ = writeln!(
        o,
        "<h1>Septa evidence pack</h1><p>Window {} to {}; generated {} by Septa {}. Audit log key <span class=\"src\">{}</span>. \
         Check this pack with <code>septa evidence verify DIR --data-dir DATA</code>.</p>",
        esc(&rfc3339_ms(p.from_ms)),
        esc(&rfc3339_ms(p.to_ms)),
        esc(&rfc3339_ms(p.generated_ms)),
        esc(&p.septa_version),
        esc(&p.audit_public_key)
    );
    if !p.caveats.is_empty() {
        o.push_str("<h2>Caveats</h2><ul>");
        for c in &p.caveats {
            let _ = write!(o, "<li>{}</li>", esc(c));
        }
        o.push_str("</ul>\n");
    }
    for st in &p.statements {
        let _ = write!(
            o,
            "<h2 id=\"{}\">{}: {}</h2><p>{}</p><p>Controls: {}</p>",
            esc(&st.id),
            esc(&st.id),
            esc(title(&st.section)),
            esc(&st.text),
            esc(&st.controls.join(", "))
        );
        if st.sources.is_empty() {
            o.push_str("<p>Audit records: none.</p>");
        } else {
            o.push_str("<p>Audit records:</p><ul class=\"src\">");
            for src in &st.sources {
                let cp = src.checkpoint.as_ref().map_or_else(
                    || "not yet covered by a signed checkpoint".to_owned(),
                    |c| {
                        format!(
                            "signed checkpoint at record {} (sig {}…)",
                            c.seq,
                            &c.sig[..c.sig.len().min(16)]
                        )
                    },
                );
                let _ = write!(
                    o,
                    "<li>record {} hash {}; {}</li>",
                    src.seq,
                    esc(&src.hash),
                    esc(&cp)
                );
            }
            o.push_str("</ul>");
        }
        details(&mut o, &st.section, &st.data);
        let _ = writeln!(
            o,
            "<p class=\"src\">statement sha256 {}</p>",
            esc(&st.sha256)
        );
    }
    o.push_str("<h2>Controls referenced</h2>");
    let rows: Vec<Vec<String>> = p
        .controls
        .iter()
        .map(|c| vec![s(&c["id"]), s(&c["framework"]), s(&c["title"])])
        .collect();
    table(&mut o, &["id", "framework", "control"], &rows);
    o.push_str("\n</body></html>\n");
    o
}
