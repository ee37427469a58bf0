//! Identities (`index:handle`, one value of a handle) and the one parser of their text form.
//!
//! `300:0.NA/88.100.1` names value 300 of `0.NA/88.100.1`. Configuration (`node.server_admins`,
//! `sync.allow`, `sync.follow`), REST session ids and certificate subjects, HTTP Basic user
//! names and the `--auth-handle` option all name identities this way; they differ only in
//! whether the index may be left out, which [`IndexRule`] says. Percent-decoding is the
//! transport's business and happens before the text reaches [`Identity::parse`].
//!
//! It sits in `auth` because an identity is what authentication proves and authorization
//! checks; it depends on `model` alone (the handle and its case rule).

use crate::model::{Handle, HandleError, SuffixCase};

/// An authenticated administrator: one value (`index`) of a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub handle: Handle,
    pub index: u32,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.index, self.handle)
    }
}

/// Whether an identity's text must name the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexRule {
    /// `index:handle` with a positive index: configured identities, REST session ids,
    /// certificate subjects.
    Required,
    /// `index:handle` (index 0 allowed) or a bare handle: HTTP Basic user names and
    /// `--auth-handle`. Text before the first `:` counts as an index only when it is all ASCII
    /// digits; otherwise the whole text is the handle (a prefix may contain `:`).
    Optional,
}

/// Why a text does not name an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// [`IndexRule::Required`] and no `:`.
    #[error("{0:?} is not index:handle")]
    NotIndexHandle(String),
    /// [`IndexRule::Required`] and the index is not a positive integer.
    #[error("{0:?}: index must be a positive integer")]
    BadIndex(String),
    /// The index is all digits but larger than a value index can be.
    #[error("{0:?}: index must be at most {max}", max = u32::MAX)]
    IndexTooLarge(String),
    #[error("{text:?}: {source}")]
    Handle { text: String, source: HandleError },
}

impl IndexRule {
    /// Split `text` into the index it names (`None`: none, under [`IndexRule::Optional`]) and
    /// the handle text, without parsing the handle.
    pub fn split(self, text: &str) -> Result<(Option<u32>, &str), IdentityError> {
        let split = text
            .split_once(':')
            .filter(|(i, _)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
        let Some((index, handle)) = split else {
            return match (self, text.contains(':')) {
                (IndexRule::Optional, _) => Ok((None, text)),
                (IndexRule::Required, true) => Err(IdentityError::BadIndex(text.to_string())),
                (IndexRule::Required, false) => {
                    Err(IdentityError::NotIndexHandle(text.to_string()))
                }
            };
        };
        let index: u32 = index
            .parse()
            .map_err(|_| IdentityError::IndexTooLarge(text.to_string()))?;
        if self == IndexRule::Required && index == 0 {
            return Err(IdentityError::BadIndex(text.to_string()));
        }
        Ok((Some(index), handle))
    }
}

impl Identity {
    /// Parse `index:handle` under `rule`, the handle under the node's case rule. A bare handle
    /// ([`IndexRule::Optional`]) gives index 0: any value of the handle, as in an HS_ADMIN
    /// reference.
    pub fn parse(text: &str, case: SuffixCase, rule: IndexRule) -> Result<Identity, IdentityError> {
        let (index, handle) = rule.split(text)?;
        let handle = Handle::parse(handle, case).map_err(|source| IdentityError::Handle {
            text: text.to_string(),
            source,
        })?;
        Ok(Identity {
            handle,
            index: index.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, rule: IndexRule) -> Result<(u32, String), IdentityError> {
        Identity::parse(text, SuffixCase::Sensitive, rule)
            .map(|id| (id.index, id.handle.as_str().to_string()))
    }

    #[test]
    fn required_needs_a_positive_index() {
        let r = IndexRule::Required;
        assert_eq!(parse("300:0.NA/88.100", r), Ok((300, "0.NA/88.100".into())));
        // The handle keeps everything after the first ':'.
        assert_eq!(parse("1:88.100/a:b", r), Ok((1, "88.100/a:b".into())));
        assert_eq!(
            parse("0.NA/88.100", r),
            Err(IdentityError::NotIndexHandle("0.NA/88.100".into()))
        );
        for bad in [
            "0:0.NA/88.100",
            "x:0.NA/88.100",
            ":0.NA/88.100",
            "+3:0.NA/88.100",
        ] {
            assert_eq!(
                parse(bad, r),
                Err(IdentityError::BadIndex(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse("4294967296:0.NA/88.100", r),
            Err(IdentityError::IndexTooLarge(
                "4294967296:0.NA/88.100".into()
            ))
        );
        assert!(matches!(
            parse("300:nohandle", r),
            Err(IdentityError::Handle {
                source: HandleError::MissingSlash,
                ..
            })
        ));
        assert_eq!(
            parse("4294967295:0.NA/88.100", r),
            Ok((u32::MAX, "0.NA/88.100".into()))
        );
    }

    #[test]
    fn optional_takes_a_bare_handle_as_index_zero() {
        let o = IndexRule::Optional;
        assert_eq!(parse("300:0.NA/88.100", o), Ok((300, "0.NA/88.100".into())));
        assert_eq!(parse("0:0.NA/88.100", o), Ok((0, "0.NA/88.100".into())));
        assert_eq!(parse("0.NA/88.100", o), Ok((0, "0.NA/88.100".into())));
        // Not all digits before the ':': the whole text is the handle.
        assert_eq!(parse("x:88.100/a", o), Ok((0, "x:88.100/a".into())));
        assert_eq!(
            parse("99999999999:0.NA/88.100", o),
            Err(IdentityError::IndexTooLarge(
                "99999999999:0.NA/88.100".into()
            ))
        );
        assert!(matches!(
            parse("admin", o),
            Err(IdentityError::Handle { .. })
        ));
        assert!(matches!(parse("300", o), Err(IdentityError::Handle { .. })));
    }

    #[test]
    fn split_leaves_the_handle_unparsed() {
        let o = IndexRule::Optional;
        assert_eq!(o.split("300:88.100.1"), Ok((Some(300), "88.100.1")));
        assert_eq!(o.split("88.100.1"), Ok((None, "88.100.1")));
        assert_eq!(o.split(""), Ok((None, "")));
        assert_eq!(IndexRule::Required.split("7:x"), Ok((Some(7), "x")));
    }

    #[test]
    fn the_handle_follows_the_case_rule() {
        let id =
            Identity::parse("1:88.100/Ab", SuffixCase::Insensitive, IndexRule::Required).unwrap();
        assert_eq!(id.handle.as_str(), "88.100/Ab");
        assert_eq!(id.handle.key(), "88.100/AB");
        assert_eq!(id.to_string(), "1:88.100/Ab");
    }
}
