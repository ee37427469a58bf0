//! Response codes: the Handle protocol's codes are the lingua franca of every front end (the
//! REST API carries them as `responseCode`; HTTP statuses and DNS rcodes are derived from them
//! in one place per front end).

/// Handle response codes (handle-protocol.md §3) that idnode produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    Success = 1,
    Error = 2,
    ServerTooBusy = 3,
    ProtocolError = 4,
    OperationNotSupported = 5,
    RecursionCountTooHigh = 6,
    ServerBackup = 7,
    HandleNotFound = 100,
    HandleAlreadyExists = 101,
    InvalidHandle = 102,
    ValuesNotFound = 200,
    ValueAlreadyExists = 201,
    InvalidValue = 202,
    ServerNotResponsible = 301,
    ServiceReferral = 302,
    PrefixReferral = 303,
    InvalidAdmin = 400,
    InsufficientPermissions = 401,
    AuthenticationNeeded = 402,
    AuthenticationFailed = 403,
    InvalidCredential = 404,
    AuthenticationTimeout = 405,
    AuthenticationError = 406,
    /// No live session or pending challenge has the request's session id.
    SessionTimeout = 500,
    SessionFailed = 501,
    /// A session message's MAC does not verify.
    InvalidSessionKey = 502,
    InvalidSessionSetupRequest = 504,
    /// A session counter seen before (a replay).
    SessionMessageRejected = 505,
}

/// Every response code handle-protocol.md §3 defines, with the name Handle.Net gives it
/// (`AbstractMessage.RC_*` without the prefix), including those idnode never sends: the one
/// list of names (the client prints them, [`ResponseCode::name`] reads them).
const NAMES: [(u32, &str); 31] = [
    (0, "RESERVED"),
    (1, "SUCCESS"),
    (2, "ERROR"),
    (3, "SERVER_TOO_BUSY"),
    (4, "PROTOCOL_ERROR"),
    (5, "OPERATION_NOT_SUPPORTED"),
    (6, "RECURSION_COUNT_TOO_HIGH"),
    (7, "SERVER_BACKUP"),
    (100, "HANDLE_NOT_FOUND"),
    (101, "HANDLE_ALREADY_EXISTS"),
    (102, "INVALID_HANDLE"),
    (200, "VALUES_NOT_FOUND"),
    (201, "VALUE_ALREADY_EXISTS"),
    (202, "INVALID_VALUE"),
    (300, "OUT_OF_DATE_SITE_INFO"),
    (301, "SERVER_NOT_RESP"),
    (302, "SERVICE_REFERRAL"),
    (303, "PREFIX_REFERRAL"),
    (400, "INVALID_ADMIN"),
    (401, "INSUFFICIENT_PERMISSIONS"),
    (402, "AUTHENTICATION_NEEDED"),
    (403, "AUTHENTICATION_FAILED"),
    (404, "INVALID_CREDENTIAL"),
    (405, "AUTHEN_TIMEOUT"),
    (406, "AUTHEN_ERROR"),
    (500, "SESSION_TIMEOUT"),
    (501, "SESSION_FAILED"),
    (502, "INVALID_SESSION_KEY"),
    (503, "NEED_RSAKEY_FOR_SESSIONEXCHANGE"),
    (504, "INVALID_SESSIONSETUP_REQUEST"),
    (505, "SESSION_MESSAGE_REJECTED"),
];

/// The name of a Handle response code on the wire, e.g. `HANDLE_NOT_FOUND`; `UNKNOWN` for a
/// code the protocol does not define.
pub fn name(code: u32) -> &'static str {
    NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("UNKNOWN", |(_, name)| name)
}

/// OUT_OF_DATE_SITE_INFO (RC 300): a code idnode never sends (no [`ResponseCode`] variant) but
/// reads from upstreams, which send the walk to another site.
pub const OUT_OF_DATE_SITE_INFO: u32 = 300;

impl ResponseCode {
    /// Every code of the enum, in wire order.
    pub const ALL: [ResponseCode; 28] = [
        ResponseCode::Success,
        ResponseCode::Error,
        ResponseCode::ServerTooBusy,
        ResponseCode::ProtocolError,
        ResponseCode::OperationNotSupported,
        ResponseCode::RecursionCountTooHigh,
        ResponseCode::ServerBackup,
        ResponseCode::HandleNotFound,
        ResponseCode::HandleAlreadyExists,
        ResponseCode::InvalidHandle,
        ResponseCode::ValuesNotFound,
        ResponseCode::ValueAlreadyExists,
        ResponseCode::InvalidValue,
        ResponseCode::ServerNotResponsible,
        ResponseCode::ServiceReferral,
        ResponseCode::PrefixReferral,
        ResponseCode::InvalidAdmin,
        ResponseCode::InsufficientPermissions,
        ResponseCode::AuthenticationNeeded,
        ResponseCode::AuthenticationFailed,
        ResponseCode::InvalidCredential,
        ResponseCode::AuthenticationTimeout,
        ResponseCode::AuthenticationError,
        ResponseCode::SessionTimeout,
        ResponseCode::SessionFailed,
        ResponseCode::InvalidSessionKey,
        ResponseCode::InvalidSessionSetupRequest,
        ResponseCode::SessionMessageRejected,
    ];

    /// The enum for a wire code; `None` for a code idnode does not produce.
    pub fn from_u32(code: u32) -> Option<ResponseCode> {
        ResponseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A session code (RC 500-505): about the session layer, not the request.
    pub fn is_session(self) -> bool {
        self.code() >= 500
    }

    pub fn code(self) -> u32 {
        self as u32
    }

    /// The code's Handle.Net name, e.g. `HANDLE_NOT_FOUND` (see [`name`]).
    pub fn name(self) -> &'static str {
        name(self.code())
    }

    /// The label used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            ResponseCode::Success => "1",
            ResponseCode::Error => "2",
            ResponseCode::ServerTooBusy => "3",
            ResponseCode::ProtocolError => "4",
            ResponseCode::OperationNotSupported => "5",
            ResponseCode::RecursionCountTooHigh => "6",
            ResponseCode::ServerBackup => "7",
            ResponseCode::HandleNotFound => "100",
            ResponseCode::HandleAlreadyExists => "101",
            ResponseCode::InvalidHandle => "102",
            ResponseCode::ValuesNotFound => "200",
            ResponseCode::ValueAlreadyExists => "201",
            ResponseCode::InvalidValue => "202",
            ResponseCode::ServerNotResponsible => "301",
            ResponseCode::ServiceReferral => "302",
            ResponseCode::PrefixReferral => "303",
            ResponseCode::InvalidAdmin => "400",
            ResponseCode::InsufficientPermissions => "401",
            ResponseCode::AuthenticationNeeded => "402",
            ResponseCode::AuthenticationFailed => "403",
            ResponseCode::InvalidCredential => "404",
            ResponseCode::AuthenticationTimeout => "405",
            ResponseCode::AuthenticationError => "406",
            ResponseCode::SessionTimeout => "500",
            ResponseCode::SessionFailed => "501",
            ResponseCode::InvalidSessionKey => "502",
            ResponseCode::InvalidSessionSetupRequest => "504",
            ResponseCode::SessionMessageRejected => "505",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_idnode_sends_has_its_handle_name() {
        use ResponseCode as R;
        for code in ResponseCode::ALL {
            assert_eq!(ResponseCode::from_u32(code.code()), Some(code));
            assert_ne!(code.name(), "UNKNOWN", "{code:?}");
            assert_eq!(code.label(), code.code().to_string());
        }
        assert_eq!(R::HandleNotFound.name(), "HANDLE_NOT_FOUND");
        assert_eq!(R::AuthenticationTimeout.name(), "AUTHEN_TIMEOUT");
        assert_eq!(name(0), "RESERVED");
        assert_eq!(name(300), "OUT_OF_DATE_SITE_INFO");
        assert_eq!(name(503), "NEED_RSAKEY_FOR_SESSIONEXCHANGE");
        assert_eq!(name(999), "UNKNOWN");
        assert_eq!(ResponseCode::from_u32(0), None);
        assert_eq!(ResponseCode::from_u32(OUT_OF_DATE_SITE_INFO), None);
        assert_eq!(ResponseCode::from_u32(503), None);
    }
}
