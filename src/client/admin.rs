//! Admin requests from text: one line of an `idnode admin batch` file becomes an
//! [`AdminRequest`].
//!
//! A line is a JSON object: `{"op": "create", "handle": "88.100.1/X", "values": [...]}`,
//! `{"op": "remove", "handle": "...", "indexes": [2]}`, `{"op": "delete", "handle": "..."}`;
//! ops `create`, `add`, `modify`, `remove`, `delete`; values in the REST shape, checked as the
//! server checks them; `"overwrite": true` for create and add.
//!
//! It sits in the client, which sends these requests (of the type the server decodes,
//! `wire::handle::request::Admin`), so the batch format is defined (and tested) once, apart
//! from the command line that reads the file and prints the results.

use super::AdminRequest;
use crate::model::{validate_values, HandleValue, ValueError};
use crate::wire::json::{values_from_request_body, JsonError};

/// Why a batch line is not an admin request.
#[derive(Debug, thiserror::Error)]
pub enum BatchLineError {
    #[error("malformed JSON")]
    Json(#[source] serde_json::Error),
    /// A field the op needs is absent or of the wrong kind.
    #[error("no {0:?}")]
    Missing(&'static str),
    #[error("bad values")]
    BadValues(#[source] JsonError),
    #[error(transparent)]
    Invalid(#[from] ValueError),
    #[error("bad index {0}")]
    BadIndex(serde_json::Value),
    #[error("unknown op {0:?} (create, add, modify, remove, delete)")]
    UnknownOp(String),
}

impl AdminRequest {
    /// One line of an `idnode admin batch` file (see the module docs).
    pub fn from_batch_line(line: &str) -> Result<AdminRequest, BatchLineError> {
        let json: serde_json::Value = serde_json::from_str(line).map_err(BatchLineError::Json)?;
        let field = |name: &str| json.get(name);
        let handle = field("handle")
            .and_then(|v| v.as_str())
            .ok_or(BatchLineError::Missing("handle"))?
            .to_string();
        let overwrite = field("overwrite")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let values = || -> Result<Vec<HandleValue>, BatchLineError> {
            let v = field("values").ok_or(BatchLineError::Missing("values"))?;
            let (_, values) = values_from_request_body(v).map_err(BatchLineError::BadValues)?;
            validate_values(&values)?;
            Ok(values)
        };
        let op = field("op").and_then(|v| v.as_str()).unwrap_or_default();
        Ok(match op {
            "create" => AdminRequest::Create {
                handle,
                values: values()?,
                overwrite,
                mint: false,
            },
            "add" => AdminRequest::AddValues {
                handle,
                values: values()?,
                overwrite,
            },
            "modify" => AdminRequest::ModifyValues {
                handle,
                values: values()?,
            },
            "remove" => AdminRequest::RemoveValues {
                handle,
                indexes: field("indexes")
                    .and_then(|v| v.as_array())
                    .ok_or(BatchLineError::Missing("indexes"))?
                    .iter()
                    .map(|i| {
                        i.as_u64()
                            .and_then(|i| u32::try_from(i).ok())
                            .ok_or_else(|| BatchLineError::BadIndex(i.clone()))
                    })
                    .collect::<Result<_, _>>()?,
            },
            "delete" => AdminRequest::Delete { handle },
            other => return Err(BatchLineError::UnknownOp(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        let e = AdminRequest::from_batch_line(line).unwrap_err();
        // As the command line prints it: the error and its causes.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }

    #[test]
    fn every_op() {
        let url = r#"[{"index":1,"type":"URL","data":"https://x"}]"#;
        let values = vec![HandleValue::new(1, "URL", "https://x")];
        let h = "88.100.1/X".to_string();
        let parse = |line: String| AdminRequest::from_batch_line(&line).unwrap();
        assert_eq!(
            parse(format!(
                r#"{{"op":"create","handle":"{h}","values":{url}}}"#
            )),
            AdminRequest::Create {
                handle: h.clone(),
                values: values.clone(),
                overwrite: false,
                mint: false,
            }
        );
        assert_eq!(
            parse(format!(
                r#"{{"op":"add","handle":"{h}","values":{url},"overwrite":true}}"#
            )),
            AdminRequest::AddValues {
                handle: h.clone(),
                values: values.clone(),
                overwrite: true,
            }
        );
        assert_eq!(
            parse(format!(
                r#"{{"op":"modify","handle":"{h}","values":{url}}}"#
            )),
            AdminRequest::ModifyValues {
                handle: h.clone(),
                values,
            }
        );
        assert_eq!(
            parse(format!(
                r#"{{"op":"remove","handle":"{h}","indexes":[2,3]}}"#
            )),
            AdminRequest::RemoveValues {
                handle: h.clone(),
                indexes: vec![2, 3],
            }
        );
        assert_eq!(
            parse(format!(r#"{{"op":"delete","handle":"{h}"}}"#)),
            AdminRequest::Delete { handle: h }
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(err("{nope").starts_with("malformed JSON: "));
        assert_eq!(err(r#"{"op":"delete"}"#), "no \"handle\"");
        assert_eq!(err(r#"{"op":"create","handle":"a/b"}"#), "no \"values\"");
        assert_eq!(err(r#"{"op":"remove","handle":"a/b"}"#), "no \"indexes\"");
        assert_eq!(
            err(r#"{"op":"remove","handle":"a/b","indexes":[1,-2]}"#),
            "bad index -2"
        );
        assert_eq!(
            err(r#"{"op":"remove","handle":"a/b","indexes":[4294967296]}"#),
            "bad index 4294967296"
        );
        assert_eq!(
            err(r#"{"op":"rename","handle":"a/b"}"#),
            "unknown op \"rename\" (create, add, modify, remove, delete)"
        );
        assert_eq!(
            err(r#"{"handle":"a/b"}"#),
            "unknown op \"\" (create, add, modify, remove, delete)"
        );
        assert!(err(r#"{"op":"add","handle":"a/b","values":[{"index":1}]}"#)
            .starts_with("bad values: "));
        // Checked as the server checks a record's values.
        let dup = r#"[{"index":1,"type":"URL","data":"a"},{"index":1,"type":"EMAIL","data":"b"}]"#;
        assert_eq!(
            err(&format!(r#"{{"op":"add","handle":"a/b","values":{dup}}}"#)),
            "duplicate value index 1"
        );
    }
}
