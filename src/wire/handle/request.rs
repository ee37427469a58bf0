//! A native request decoded once into what it asks: [`OpCode`] names the operation, [`Request`]
//! holds its typed arguments, and [`RequestMessage`] keeps them with the envelope, header and
//! credential they came in (which answers echo and session MACs cover).
//!
//! [`RequestMessage::from_message`] is the one place an operation code and a body become a
//! request (tokio mini-redis's `Command::from_frame`); the server dispatches by matching on
//! [`Request`], never on a raw `u32` or an `(op code, body)` pair. [`Admin`] also goes the
//! other way ([`Admin::op_flag`], [`Admin::body`]): the client sends the type the server
//! decodes. Pure: no sockets, no state.

use super::message::{flag, op, Body, Envelope, Header, KeyExchange, Message};
use crate::model::HandleValue;

/// The operations a native request may name (Handle.Net's `OC_*`, plus the CAICT ID-SDK's
/// logins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    Resolution,
    GetSiteInfo,
    CreateHandle,
    DeleteHandle,
    AddValue,
    RemoveValue,
    ModifyValue,
    ListHandles,
    ChallengeResponse,
    VerifyChallenge,
    HomeNa,
    UnhomeNa,
    ListHomedNas,
    SessionSetup,
    SessionTerminate,
    /// CAICT IDIS password login (`OC_LOGIN`, 2000).
    Login,
    /// CAICT IDIS key login (`OC_LOGIN_ID_SYSTEM`, 2001).
    LoginIdSystem,
}

impl OpCode {
    /// Every operation, in wire-code order.
    pub const ALL: [OpCode; 17] = [
        OpCode::Resolution,
        OpCode::GetSiteInfo,
        OpCode::CreateHandle,
        OpCode::DeleteHandle,
        OpCode::AddValue,
        OpCode::RemoveValue,
        OpCode::ModifyValue,
        OpCode::ListHandles,
        OpCode::ChallengeResponse,
        OpCode::VerifyChallenge,
        OpCode::HomeNa,
        OpCode::UnhomeNa,
        OpCode::ListHomedNas,
        OpCode::SessionSetup,
        OpCode::SessionTerminate,
        OpCode::Login,
        OpCode::LoginIdSystem,
    ];

    /// The operation of a wire code; `None` for a code no request may carry.
    pub fn from_code(code: u32) -> Option<OpCode> {
        Some(match code {
            op::RESOLUTION => OpCode::Resolution,
            op::GET_SITE_INFO => OpCode::GetSiteInfo,
            op::CREATE_HANDLE => OpCode::CreateHandle,
            op::DELETE_HANDLE => OpCode::DeleteHandle,
            op::ADD_VALUE => OpCode::AddValue,
            op::REMOVE_VALUE => OpCode::RemoveValue,
            op::MODIFY_VALUE => OpCode::ModifyValue,
            op::LIST_HANDLES => OpCode::ListHandles,
            op::CHALLENGE_RESPONSE => OpCode::ChallengeResponse,
            op::VERIFY_CHALLENGE => OpCode::VerifyChallenge,
            op::HOME_NA => OpCode::HomeNa,
            op::UNHOME_NA => OpCode::UnhomeNa,
            op::LIST_HOMED_NAS => OpCode::ListHomedNas,
            op::SESSION_SETUP => OpCode::SessionSetup,
            op::SESSION_TERMINATE => OpCode::SessionTerminate,
            op::LOGIN => OpCode::Login,
            op::LOGIN_ID_SYSTEM => OpCode::LoginIdSystem,
            _ => return None,
        })
    }

    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            OpCode::Resolution => op::RESOLUTION,
            OpCode::GetSiteInfo => op::GET_SITE_INFO,
            OpCode::CreateHandle => op::CREATE_HANDLE,
            OpCode::DeleteHandle => op::DELETE_HANDLE,
            OpCode::AddValue => op::ADD_VALUE,
            OpCode::RemoveValue => op::REMOVE_VALUE,
            OpCode::ModifyValue => op::MODIFY_VALUE,
            OpCode::ListHandles => op::LIST_HANDLES,
            OpCode::ChallengeResponse => op::CHALLENGE_RESPONSE,
            OpCode::VerifyChallenge => op::VERIFY_CHALLENGE,
            OpCode::HomeNa => op::HOME_NA,
            OpCode::UnhomeNa => op::UNHOME_NA,
            OpCode::ListHomedNas => op::LIST_HOMED_NAS,
            OpCode::SessionSetup => op::SESSION_SETUP,
            OpCode::SessionTerminate => op::SESSION_TERMINATE,
            OpCode::Login => op::LOGIN,
            OpCode::LoginIdSystem => op::LOGIN_ID_SYSTEM,
        }
    }

    /// The `op` label of the request metrics. Both lists share "list" and both logins
    /// "login"; session setup and end are counted as "other" (the label set predates them).
    pub fn label(self) -> &'static str {
        match self {
            OpCode::Resolution => "resolve",
            OpCode::GetSiteInfo => "site",
            OpCode::CreateHandle => "create",
            OpCode::AddValue => "add",
            OpCode::ModifyValue => "modify",
            OpCode::RemoveValue => "remove",
            OpCode::DeleteHandle => "delete",
            OpCode::ListHandles | OpCode::ListHomedNas => "list",
            OpCode::ChallengeResponse => "challenge_answer",
            OpCode::VerifyChallenge => "verify",
            OpCode::HomeNa => "home",
            OpCode::UnhomeNa => "unhome",
            OpCode::Login | OpCode::LoginIdSystem => "login",
            OpCode::SessionSetup | OpCode::SessionTerminate => "other",
        }
    }

    /// Operations that change or enumerate data: never over UDP, always authenticated
    /// ([`op::is_admin`]).
    pub fn is_admin(self) -> bool {
        op::is_admin(self.code())
    }

    /// The administrative operations that run as an identity ([`op::runs_as_identity`]):
    /// every [`Request::Admin`].
    pub fn runs_as_identity(self) -> bool {
        op::runs_as_identity(self.code())
    }
}

/// What a native request asks, with its arguments (the flags that change an operation's
/// meaning included; the ones every answer echoes stay in the [`Header`]). One variant per
/// operation group, each with its own type, so a handler takes exactly what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// OC_RESOLUTION.
    Resolve(Resolve),
    /// OC_GET_SITE_INFO (the body's handle, "/", says nothing).
    SiteInfo,
    /// The operations that run as an identity: after a challenge, or as a session's or a
    /// login's.
    Admin(Admin),
    /// OC_LIST_HOMED_NAS: anyone may ask, over TCP.
    ListHomed,
    /// OC_RESPONSE_TO_CHALLENGE (200).
    ChallengeAnswer(ChallengeAnswer),
    /// OC_VERIFY_CHALLENGE (201): another server asks whether an answer is valid.
    VerifyChallenge(VerifyChallenge),
    /// OC_SESSION_SETUP (400).
    SessionSetup(SessionSetup),
    /// OC_SESSION_TERMINATE (401).
    SessionTerminate,
    /// OC_LOGIN (2000).
    PasswordLogin(PasswordLogin),
    /// OC_LOGIN_ID_SYSTEM (2001).
    KeyLogin(KeyLogin),
}

/// OC_RESOLUTION: an identifier, the indexes and types wanted (none: all), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub handle: String,
    pub indexes: Vec<u32>,
    pub types: Vec<String>,
    /// PO: only values anyone may read.
    pub public_only: bool,
    /// Not DNR: a prefix handle's referral may be answered.
    pub refer: bool,
    /// REC: resolve through the hierarchy when this node is not responsible.
    pub recursive: bool,
}

/// OC_RESPONSE_TO_CHALLENGE (200): the identity and its signed response; the envelope's
/// session id names the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    /// "HS_SECKEY" or "HS_PUBKEY".
    pub auth_type: String,
    pub identity_handle: String,
    pub identity_index: u32,
    pub signed_response: Vec<u8>,
}

/// OC_VERIFY_CHALLENGE (201): is `signed_response` a valid answer by `index:handle` to a
/// challenge of `nonce` over a request of `digest`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyChallenge {
    pub handle: String,
    pub index: u32,
    pub nonce: Vec<u8>,
    pub digest: Vec<u8>,
    pub signed_response: Vec<u8>,
}

/// OC_SESSION_SETUP (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetup {
    /// Key exchange mode: 1 client cipher, 2 server cipher, 3 key from a handle, 4 DH.
    pub mode: u16,
    /// Idle timeout the client asks for, in seconds.
    pub timeout: u32,
    /// Who the session is for (empty handle and index `u32::MAX` (-1): anonymous).
    pub identity_handle: String,
    pub identity_index: u32,
    pub exchange: KeyExchange,
}

/// OC_LOGIN (2000): the user (a handle), an index list (the ID-SDK sends none) and a list
/// whose one element is the password, in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordLogin {
    pub user: String,
    pub indexes: Vec<u32>,
    pub passwords: Vec<Vec<u8>>,
}

/// OC_LOGIN_ID_SYSTEM (2001): the identity that will answer the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLogin {
    pub identity_handle: String,
    pub identity_index: u32,
}

/// The administrative operations that run as an identity ([`OpCode::runs_as_identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// OC_CREATE_HANDLE; with MINT, `handle` is what the minted identifier is made from.
    Create {
        handle: String,
        values: Vec<HandleValue>,
        overwrite: bool,
        mint: bool,
    },
    /// OC_ADD_VALUE.
    AddValues {
        handle: String,
        values: Vec<HandleValue>,
        overwrite: bool,
    },
    /// OC_MODIFY_VALUE.
    ModifyValues {
        handle: String,
        values: Vec<HandleValue>,
    },
    /// OC_REMOVE_VALUE.
    RemoveValues { handle: String, indexes: Vec<u32> },
    /// OC_DELETE_HANDLE.
    Delete { handle: String },
    /// OC_LIST_HANDLES: `handle` is the prefix handle `0.NA/<prefix>`.
    List { handle: String },
    /// OC_HOME_NA: `handle` is the prefix handle `0.NA/<prefix>`.
    Home { handle: String },
    /// OC_UNHOME_NA: `handle` is the prefix handle `0.NA/<prefix>`.
    Unhome { handle: String },
}

impl Admin {
    pub fn op_code(&self) -> OpCode {
        match self {
            Admin::Create { .. } => OpCode::CreateHandle,
            Admin::AddValues { .. } => OpCode::AddValue,
            Admin::ModifyValues { .. } => OpCode::ModifyValue,
            Admin::RemoveValues { .. } => OpCode::RemoveValue,
            Admin::Delete { .. } => OpCode::DeleteHandle,
            Admin::List { .. } => OpCode::ListHandles,
            Admin::Home { .. } => OpCode::HomeNa,
            Admin::Unhome { .. } => OpCode::UnhomeNa,
        }
    }

    /// The handle a handle write changes (create, add, modify, remove, delete); `None` for
    /// lists and for home/unhome, which name prefixes this node may not home yet.
    pub fn write_target(&self) -> Option<&str> {
        match self {
            Admin::Create { handle, .. }
            | Admin::AddValues { handle, .. }
            | Admin::ModifyValues { handle, .. }
            | Admin::RemoveValues { handle, .. }
            | Admin::Delete { handle } => Some(handle),
            Admin::List { .. } | Admin::Home { .. } | Admin::Unhome { .. } => None,
        }
    }

    /// The handle the request names.
    pub fn handle(&self) -> &str {
        match self {
            Admin::Create { handle, .. }
            | Admin::AddValues { handle, .. }
            | Admin::ModifyValues { handle, .. }
            | Admin::RemoveValues { handle, .. }
            | Admin::Delete { handle }
            | Admin::List { handle }
            | Admin::Home { handle }
            | Admin::Unhome { handle } => handle,
        }
    }

    /// The opFlag bits this request's meaning sets (OVRW, MINT), the ones
    /// [`Request::from_parts`] reads back; a sender adds those every request of it carries.
    pub fn op_flag(&self) -> u32 {
        let set = |on: bool, bit: u32| if on { bit } else { 0 };
        match self {
            Admin::Create {
                overwrite, mint, ..
            } => set(*overwrite, flag::OVERWRITE) | set(*mint, flag::MINT),
            Admin::AddValues { overwrite, .. } => set(*overwrite, flag::OVERWRITE),
            _ => 0,
        }
    }

    /// The body the request is sent with, the one [`Request::from_parts`] takes it from
    /// (under [`Admin::op_code`]).
    pub fn body(&self) -> Body {
        match self {
            Admin::Create { handle, values, .. }
            | Admin::AddValues { handle, values, .. }
            | Admin::ModifyValues { handle, values } => Body::HandleValues {
                handle: handle.clone(),
                values: values.clone(),
            },
            Admin::RemoveValues { handle, indexes } => Body::RemoveValues {
                handle: handle.clone(),
                indexes: indexes.clone(),
            },
            Admin::Delete { handle }
            | Admin::List { handle }
            | Admin::Home { handle }
            | Admin::Unhome { handle } => Body::Handle {
                handle: handle.clone(),
            },
        }
    }
}

impl Request {
    pub fn op_code(&self) -> OpCode {
        match self {
            Request::Resolve(_) => OpCode::Resolution,
            Request::SiteInfo => OpCode::GetSiteInfo,
            Request::Admin(a) => a.op_code(),
            Request::ListHomed => OpCode::ListHomedNas,
            Request::ChallengeAnswer(_) => OpCode::ChallengeResponse,
            Request::VerifyChallenge(_) => OpCode::VerifyChallenge,
            Request::SessionSetup(_) => OpCode::SessionSetup,
            Request::SessionTerminate => OpCode::SessionTerminate,
            Request::PasswordLogin(_) => OpCode::Login,
            Request::KeyLogin(_) => OpCode::LoginIdSystem,
        }
    }

    /// The request a request header and its decoded body make.
    pub fn from_parts(header: &Header, body: Body) -> Result<Request, RequestError> {
        if !header.is_request() {
            return Err(RequestError::Response(header.response_code));
        }
        let op_code =
            OpCode::from_code(header.op_code).ok_or(RequestError::UnknownOpCode(header.op_code))?;
        let has = |f| header.has(f);
        let admin = |a| Ok(Request::Admin(a));
        match (op_code, body) {
            (
                OpCode::Resolution,
                Body::Resolution {
                    handle,
                    indexes,
                    types,
                },
            ) => Ok(Request::Resolve(Resolve {
                handle,
                indexes,
                types,
                public_only: has(flag::PUBLIC_ONLY),
                refer: !has(flag::DO_NOT_REFER),
                recursive: has(flag::RECURSIVE),
            })),
            (OpCode::GetSiteInfo, Body::Handle { .. }) => Ok(Request::SiteInfo),
            (OpCode::CreateHandle, Body::HandleValues { handle, values }) => admin(Admin::Create {
                handle,
                values,
                overwrite: has(flag::OVERWRITE),
                mint: has(flag::MINT),
            }),
            (OpCode::AddValue, Body::HandleValues { handle, values }) => admin(Admin::AddValues {
                handle,
                values,
                overwrite: has(flag::OVERWRITE),
            }),
            (OpCode::ModifyValue, Body::HandleValues { handle, values }) => {
                admin(Admin::ModifyValues { handle, values })
            }
            (OpCode::RemoveValue, Body::RemoveValues { handle, indexes }) => {
                admin(Admin::RemoveValues { handle, indexes })
            }
            (OpCode::DeleteHandle, Body::Handle { handle }) => admin(Admin::Delete { handle }),
            (OpCode::ListHandles, Body::Handle { handle }) => admin(Admin::List { handle }),
            (OpCode::HomeNa, Body::Handle { handle }) => admin(Admin::Home { handle }),
            (OpCode::UnhomeNa, Body::Handle { handle }) => admin(Admin::Unhome { handle }),
            (OpCode::ListHomedNas, Body::Handle { .. }) => Ok(Request::ListHomed),
            (
                OpCode::ChallengeResponse,
                Body::ChallengeAnswer {
                    auth_type,
                    identity_handle,
                    identity_index,
                    signed_response,
                },
            ) => Ok(Request::ChallengeAnswer(ChallengeAnswer {
                auth_type,
                identity_handle,
                identity_index,
                signed_response,
            })),
            (
                OpCode::VerifyChallenge,
                Body::VerifyChallenge {
                    handle,
                    index,
                    nonce,
                    digest,
                    signed_response,
                },
            ) => Ok(Request::VerifyChallenge(VerifyChallenge {
                handle,
                index,
                nonce,
                digest,
                signed_response,
            })),
            (
                OpCode::SessionSetup,
                Body::SessionSetup {
                    mode,
                    timeout,
                    identity_handle,
                    identity_index,
                    exchange,
                },
            ) => Ok(Request::SessionSetup(SessionSetup {
                mode,
                timeout,
                identity_handle,
                identity_index,
                exchange,
            })),
            (OpCode::SessionTerminate, Body::Handle { .. }) => Ok(Request::SessionTerminate),
            (
                OpCode::Login,
                Body::PasswordLogin {
                    user,
                    indexes,
                    passwords,
                },
            ) => Ok(Request::PasswordLogin(PasswordLogin {
                user,
                indexes,
                passwords,
            })),
            (
                OpCode::LoginIdSystem,
                Body::LoginIdSystem {
                    identity_handle,
                    identity_index,
                },
            ) => Ok(Request::KeyLogin(KeyLogin {
                identity_handle,
                identity_index,
            })),
            (op_code, _) => Err(RequestError::BodyMismatch(op_code)),
        }
    }
}

/// Why a decoded message is no request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("a response (code {0}), not a request")]
    Response(u32),
    #[error("unsupported request opCode {0}")]
    UnknownOpCode(u32),
    /// A body of another operation's shape ([`Message::decode`] never makes one).
    #[error("bad body")]
    BodyMismatch(OpCode),
}

/// A request as received: what it asks, and the envelope, header and credential it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMessage {
    pub envelope: Envelope,
    pub header: Header,
    /// The credential section: `None` when absent, `Some(empty)` for length 0.
    pub credential: Option<Vec<u8>>,
    pub request: Request,
}

impl RequestMessage {
    /// The request a decoded message carries.
    pub fn from_message(m: Message) -> Result<RequestMessage, RequestError> {
        Ok(RequestMessage {
            request: Request::from_parts(&m.header, m.body)?,
            envelope: m.envelope,
            header: m.header,
            credential: m.credential,
        })
    }

    pub fn op_code(&self) -> OpCode {
        self.request.op_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_code_round_trips_and_unknown_codes_are_none() {
        for op in OpCode::ALL {
            assert_eq!(OpCode::from_code(op.code()), Some(op));
        }
        for code in [0, 3, 106, 202, 402, 1999, 2002, u32::MAX] {
            assert_eq!(OpCode::from_code(code), None);
        }
    }

    #[test]
    fn admin_groups_agree_with_the_wire_rules() {
        for op in OpCode::ALL {
            assert_eq!(op.is_admin(), op::is_admin(op.code()), "{op:?}");
            assert_eq!(op.runs_as_identity(), op::runs_as_identity(op.code()));
        }
        assert!(OpCode::ListHomedNas.is_admin() && !OpCode::ListHomedNas.runs_as_identity());
    }

    #[test]
    fn metric_labels_keep_their_names() {
        let labels: Vec<_> = OpCode::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(
            labels,
            [
                "resolve",
                "site",
                "create",
                "delete",
                "add",
                "remove",
                "modify",
                "list",
                "challenge_answer",
                "verify",
                "home",
                "unhome",
                "list",
                "other",
                "other",
                "login",
                "login"
            ]
        );
    }

    fn from(op_code: u32, op_flag: u32, body: Body) -> Result<RequestMessage, RequestError> {
        RequestMessage::from_message(Message::request(op_code, op_flag, body))
    }

    #[test]
    fn decoded_requests_become_typed_requests() {
        let r = from(
            op::RESOLUTION,
            flag::PUBLIC_ONLY | flag::RECURSIVE,
            Body::Resolution {
                handle: "88.100.1/x".into(),
                indexes: vec![1],
                types: vec!["URL".into()],
            },
        )
        .unwrap();
        assert_eq!(
            r.request,
            Request::Resolve(Resolve {
                handle: "88.100.1/x".into(),
                indexes: vec![1],
                types: vec!["URL".into()],
                public_only: true,
                refer: true,
                recursive: true,
            })
        );
        let body = Body::HandleValues {
            handle: "88.100.1/x".into(),
            values: Vec::new(),
        };
        let create = from(op::CREATE_HANDLE, flag::MINT, body.clone()).unwrap();
        assert_eq!(create.op_code(), OpCode::CreateHandle);
        assert!(matches!(
            create.request,
            Request::Admin(Admin::Create {
                mint: true,
                overwrite: false,
                ..
            })
        ));
        let modify = from(op::MODIFY_VALUE, 0, body).unwrap();
        let Request::Admin(a) = &modify.request else {
            panic!("{modify:?}")
        };
        assert_eq!(a.write_target(), Some("88.100.1/x"));
        let list = from(
            op::LIST_HANDLES,
            0,
            Body::Handle {
                handle: "0.NA/88.100.1".into(),
            },
        )
        .unwrap();
        let Request::Admin(a) = &list.request else {
            panic!()
        };
        assert_eq!((a.write_target(), a.handle()), (None, "0.NA/88.100.1"));
        let homed = from(op::LIST_HOMED_NAS, 0, Body::Handle { handle: "/".into() });
        assert_eq!(homed.unwrap().request, Request::ListHomed);
    }

    #[test]
    fn responses_unknown_codes_and_mismatched_bodies_are_no_requests() {
        let mut m = Message::request(op::RESOLUTION, 0, Body::Empty);
        m.header.response_code = 1;
        assert_eq!(
            RequestMessage::from_message(m),
            Err(RequestError::Response(1))
        );
        assert_eq!(
            from(999, 0, Body::Empty),
            Err(RequestError::UnknownOpCode(999))
        );
        assert_eq!(
            from(op::DELETE_HANDLE, 0, Body::Empty),
            Err(RequestError::BodyMismatch(OpCode::DeleteHandle))
        );
    }
}
