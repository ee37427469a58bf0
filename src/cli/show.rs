//! How the CLI shows answers: the values table of `idnode resolve` and the one-line
//! description of a negative answer. Pure formatting (lines in, lines out).

use crate::client::Response;
use crate::model::HandleValue;
use crate::wire::json as hjson;

/// A value's data for the table: text as is (control characters escaped), other formats as
/// `format:value` the way the REST API shows them.
fn data_text(value_json: &serde_json::Value) -> String {
    let data = &value_json["data"];
    let format = data["format"].as_str().unwrap_or("");
    match (format, data["value"].as_str()) {
        ("string", Some(s)) => s
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t"),
        (_, Some(s)) => format!("{format}:{s}"),
        _ => format!("{format}:{}", data["value"]),
    }
}

/// The values as `idnode resolve` prints them: the handle, a header and one aligned row per
/// value (index, type, TTL, permissions, data).
pub fn values_table(handle: &str, values: &[HandleValue]) -> Vec<String> {
    let header = ["INDEX", "TYPE", "TTL", "PERMS"].map(String::from);
    let rows: Vec<([String; 4], String)> = values
        .iter()
        .map(|v| {
            let j = hjson::value_to_json(v);
            let ttl = match &j["ttl"] {
                serde_json::Value::String(s) => format!("until {s}"),
                other => other.to_string(),
            };
            (
                [
                    v.index.to_string(),
                    v.type_name.clone(),
                    ttl,
                    v.permissions.to_bit_string(),
                ],
                data_text(&j),
            )
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for (cells, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String; 4], data: &str| {
        format!(
            "{:>w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {data}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
        .trim_end()
        .to_string()
    };
    let mut out = vec![handle.to_string(), line(&header, "DATA")];
    out.extend(rows.iter().map(|(cells, data)| line(cells, data)));
    out
}

/// The one-line description of a negative answer.
pub fn describe_failure(r: &Response) -> String {
    let mut text = format!("{}: RC {} {}", r.handle, r.code, r.code_name());
    if !r.message.is_empty() {
        text.push_str(": ");
        text.push_str(&r.message);
    }
    text
}
