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

impl ResponseCode {
    pub fn code(self) -> u32 {
        self as u32
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
