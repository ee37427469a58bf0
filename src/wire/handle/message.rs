//! Native Handle messages (handle-protocol.md §1–§4): the 20-byte envelope, the 24-byte
//! header, the body (chosen by opCode for requests, by responseCode for responses) and the
//! credential section. Pure: bytes in, structures out, and back.
//!
//! ```text
//! envelope (20): major minor flags|sugMajor sugMinor sessionId requestId sequence messageLength
//! message:       header(24) body(bodyLength) [int4 credLength + credential]
//! header (24):   opCode responseCode opFlag siteSerial(2) recursion(1) reserved(1) expiration bodyLength
//! ```
//!
//! Decoding accepts what real clients send (2.3 with 2.11 suggested in bytes 2–3, the
//! credential section present or absent); encoding always writes the credential length, as
//! Handle.Net does, so every reference vector round-trips byte for byte.

use crate::model::codec::{DecodeError, Reader, Writer};
use crate::model::HandleValue;
use crate::wire::handle::value::{decode_values, encode_values};

pub const ENVELOPE_LEN: usize = 20;
pub const HEADER_LEN: usize = 24;
/// Largest message accepted (Handle.Net `MAX_MESSAGE_LENGTH`).
pub const MAX_MESSAGE_LEN: usize = 262_144;
/// Data bytes per UDP datagram (after the envelope); clients compute offsets with exactly 492.
pub const UDP_CHUNK: usize = 492;

/// The protocol version idnode speaks.
pub const OUR_VERSION: (u8, u8) = (2, 11);

/// The header's site serial when the sender knows no HS_SITE (Java's −1).
pub const UNKNOWN_SITE_SERIAL: u16 = 0xFFFF;

/// Operation codes.
pub mod op {
    pub const RESOLUTION: u32 = 1;
    pub const GET_SITE_INFO: u32 = 2;
    pub const CREATE_HANDLE: u32 = 100;
    pub const DELETE_HANDLE: u32 = 101;
    pub const ADD_VALUE: u32 = 102;
    pub const REMOVE_VALUE: u32 = 103;
    pub const MODIFY_VALUE: u32 = 104;
    pub const LIST_HANDLES: u32 = 105;
    pub const CHALLENGE_RESPONSE: u32 = 200;
    pub const VERIFY_CHALLENGE: u32 = 201;
    pub const HOME_NA: u32 = 300;
    pub const UNHOME_NA: u32 = 301;
    pub const LIST_HOMED_NAS: u32 = 302;
    pub const SESSION_SETUP: u32 = 400;
    pub const SESSION_TERMINATE: u32 = 401;
    /// CAICT IDIS password login (`OC_LOGIN`, ID-SDK `login(user, password)`): the body is
    /// shaped like a resolution request whose one "type" is the password, in clear.
    pub const LOGIN: u32 = 2000;
    /// CAICT IDIS key login (`OC_LOGIN_ID_SYSTEM`): identity handle and index; answered
    /// with a 402 challenge carrying this opCode, then opCode 200 as for any challenge.
    pub const LOGIN_ID_SYSTEM: u32 = 2001;

    /// The administrative operations that run as an identity (after a challenge, or as a
    /// session's or a login's): [`is_admin`] but LIST_HOMED_NAS, which anyone may ask over TCP.
    pub fn runs_as_identity(op: u32) -> bool {
        is_admin(op) && op != LIST_HOMED_NAS
    }

    /// Operations that change or enumerate data: never over UDP, always authenticated.
    pub fn is_admin(op: u32) -> bool {
        matches!(
            op,
            CREATE_HANDLE
                | DELETE_HANDLE
                | ADD_VALUE
                | REMOVE_VALUE
                | MODIFY_VALUE
                | LIST_HANDLES
                | HOME_NA
                | UNHOME_NA
                | LIST_HOMED_NAS
        )
    }
}

/// opFlag bits.
pub mod flag {
    pub const AUTHORITATIVE: u32 = 0x8000_0000;
    pub const CERTIFY: u32 = 0x4000_0000;
    pub const ENCRYPT: u32 = 0x2000_0000;
    pub const RECURSIVE: u32 = 0x1000_0000;
    pub const CACHE_CERTIFY: u32 = 0x0800_0000;
    pub const CONTINUOUS: u32 = 0x0400_0000;
    pub const KEEP_ALIVE: u32 = 0x0200_0000;
    pub const PUBLIC_ONLY: u32 = 0x0100_0000;
    pub const RETURN_DIGEST: u32 = 0x0080_0000;
    pub const OVERWRITE: u32 = 0x0040_0000;
    pub const MINT: u32 = 0x0020_0000;
    pub const DO_NOT_REFER: u32 = 0x0010_0000;
    /// CAICT trusted query (ID-SDK `MsgSettings.setTruestyQuery`, `FLAG_31ST_MSG_TRUSTED_QUERY`):
    /// set on a request, echoed on its answer. Handle.Net neither sets nor reads it.
    pub const TRUSTED_QUERY: u32 = 0x0000_0002;
    /// CAICT trusted result (`FLAG_32ND_MSG_TRUSTED_RESULT`), on answers to a trusted query:
    /// set, the SDK reports the answer trusted; clear, untrusted. Set only when the data is
    /// this node's own (or the recursor checked the upstream's signature); see
    /// [`set_trusted_result`].
    pub const TRUSTED_RESULT: u32 = 0x0000_0001;
    /// Flags a response copies from its request (Handle.Net `takeValuesFrom`, plus the
    /// CAICT trusted-query bit the ID-SDK looks for on the answer).
    pub const ECHOED: u32 = AUTHORITATIVE
        | CERTIFY
        | ENCRYPT
        | CACHE_CERTIFY
        | PUBLIC_ONLY
        | DO_NOT_REFER
        | RETURN_DIGEST
        | TRUSTED_QUERY;

    /// Mark an answer's trust for the ID-SDK: [`TRUSTED_RESULT`] is set when the request
    /// asked ([`TRUSTED_QUERY`] echoed in `op_flag`) and `trusted`, cleared otherwise. Call
    /// it before the answer is signed (the bits are part of the signed header).
    pub fn set_trusted_result(op_flag: &mut u32, trusted: bool) {
        if trusted && *op_flag & TRUSTED_QUERY != 0 {
            *op_flag |= TRUSTED_RESULT;
        } else {
            *op_flag &= !TRUSTED_RESULT;
        }
    }
}

/// Envelope flag bits (byte 2, above the suggested major version).
pub mod envelope_flag {
    pub const COMPRESSED: u8 = 0x80;
    pub const ENCRYPTED: u8 = 0x40;
    pub const TRUNCATED: u8 = 0x20;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("message length {0} exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    TooLong(usize),
    #[error("message length {declared} disagrees with the {actual} bytes received")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("body length {body} does not fit in a message of {message} bytes")]
    BodyOverrun { body: usize, message: usize },
    #[error("unsupported request opCode {0}")]
    UnknownOpCode(u32),
    #[error("compressed or encrypted messages are not supported")]
    Unsupported,
}

/// The 20-byte envelope, kept as sent (suggested version bytes included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    pub major: u8,
    pub minor: u8,
    /// CP/EC/TC bits (byte 2 & 0xFC).
    pub flags: u8,
    /// Suggested version as sent; 0.x means "same as the message version".
    pub suggested_major: u8,
    pub suggested_minor: u8,
    pub session_id: u32,
    pub request_id: u32,
    pub sequence: u32,
    pub message_length: u32,
}

impl Envelope {
    pub fn decode(bytes: &[u8]) -> Result<Envelope, WireError> {
        let mut r = Reader::new(bytes);
        let major = r.u8("envelope major")?;
        let minor = r.u8("envelope minor")?;
        let b2 = r.u8("envelope flags")?;
        let suggested_minor = r.u8("envelope suggested minor")?;
        let env = Envelope {
            major,
            minor,
            flags: b2 & 0xFC,
            suggested_major: b2 & 0x03,
            suggested_minor,
            session_id: r.u32("session id")?,
            request_id: r.u32("request id")?,
            sequence: r.u32("sequence number")?,
            message_length: r.u32("message length")?,
        };
        if env.message_length as usize > MAX_MESSAGE_LEN {
            return Err(WireError::TooLong(env.message_length as usize));
        }
        Ok(env)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.major);
        out.put_u8(self.minor);
        out.put_u8((self.flags & 0xFC) | (self.suggested_major & 0x03));
        out.put_u8(self.suggested_minor);
        out.put_u32(self.session_id);
        out.put_u32(self.request_id);
        out.put_u32(self.sequence);
        out.put_u32(self.message_length);
    }

    /// The highest version the sender speaks (suggested, or the message version).
    pub fn suggested_version(&self) -> (u8, u8) {
        if self.suggested_major == 0 {
            (self.major, self.minor)
        } else {
            (self.suggested_major, self.suggested_minor)
        }
    }

    /// The version to answer at: the lower of what the client suggests and ours.
    pub fn negotiated_version(&self) -> (u8, u8) {
        let theirs = self.suggested_version();
        // Version 5.x is Handle.Net's legacy 2.0.
        let theirs = if theirs.0 == 5 { (2, 0) } else { theirs };
        theirs.min(OUR_VERSION)
    }
}

/// The 24-byte header (the body length is derived when encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub op_code: u32,
    /// 0 for requests.
    pub response_code: u32,
    pub op_flag: u32,
    pub site_serial: u16,
    pub recursion_count: u8,
    pub expiration: u32,
}

impl Header {
    pub fn has(&self, flag: u32) -> bool {
        self.op_flag & flag != 0
    }
    pub fn is_request(&self) -> bool {
        self.response_code == 0
    }
}

/// A request digest carried at the start of a response body when RD is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDigest {
    /// 1 MD5, 2 SHA-1, 3 SHA-256, 0 legacy MD5 (encoded as an int4-length byte array with no
    /// type byte; its leading zero byte reads as type 0).
    pub hash_type: u8,
    pub digest: Vec<u8>,
}

/// Message bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// OC_RESOLUTION request.
    Resolution {
        handle: String,
        indexes: Vec<u32>,
        types: Vec<String>,
    },
    /// Requests whose body is one handle: get-site-info ("/"), delete, list handles, home,
    /// unhome, list homed prefixes, session terminate.
    Handle { handle: String },
    /// Create handle, add value, modify value.
    HandleValues {
        handle: String,
        values: Vec<HandleValue>,
    },
    /// OC_REMOVE_VALUE.
    RemoveValues { handle: String, indexes: Vec<u32> },
    /// OC_RESPONSE_TO_CHALLENGE (200) request.
    ChallengeAnswer {
        auth_type: String,
        identity_handle: String,
        identity_index: u32,
        signed_response: Vec<u8>,
    },
    /// OC_LOGIN (2000) request: the user (a handle), an index list (the ID-SDK sends none)
    /// and a string list whose one element is the password, in clear.
    PasswordLogin {
        user: String,
        indexes: Vec<u32>,
        passwords: Vec<Vec<u8>>,
    },
    /// OC_LOGIN_ID_SYSTEM (2001) request: the identity that will answer the challenge.
    LoginIdSystem {
        identity_handle: String,
        identity_index: u32,
    },
    /// OC_VERIFY_CHALLENGE (201) request.
    VerifyChallenge {
        handle: String,
        index: u32,
        nonce: Vec<u8>,
        digest: Vec<u8>,
        signed_response: Vec<u8>,
    },
    /// Resolution success: the handle and its values.
    Values {
        handle: String,
        values: Vec<HandleValue>,
    },
    /// GET_SITE_INFO success: a raw HS_SITE record.
    SiteInfo { site: Vec<u8> },
    /// LIST_HANDLES / LIST_HOMED_NAS success (one message of a CN sequence).
    HandleList { handles: Vec<String> },
    /// OC_VERIFY_CHALLENGE success: 1 = valid.
    VerifyResult { valid: bool },
    /// Create with MINT: the minted handle.
    MintedHandle { handle: String },
    /// Generic success with no body.
    Empty,
    /// Error responses (100, 200, 301, 4xx, …): a message.
    Error { message: String },
    /// 302 / 303 referrals.
    Referral {
        handle: String,
        values: Vec<HandleValue>,
    },
    /// 402 challenge: the nonce.
    Challenge { nonce: Vec<u8> },
    /// OC_SESSION_SETUP (400) request. Handle.Net sizes the int2 mode as 4 bytes, so its
    /// bodies end with 2 unwritten zero bytes that count in bodyLength: they are written on
    /// encode and accepted (or their absence) on decode.
    SessionSetup {
        /// Key exchange mode: 1 client cipher, 2 server cipher, 3 key from a handle, 4 DH.
        mode: u16,
        /// Idle timeout the client asks for, in seconds.
        timeout: u32,
        /// Who the session is for (empty handle and index `u32::MAX` (-1): anonymous).
        identity_handle: String,
        identity_index: u32,
        exchange: KeyExchange,
    },
    /// OC_SESSION_SETUP success: the mode and its data (mode 4: int4 encryption algorithm
    /// followed by the server's DH_PUB_KEY), then the same 2 unwritten zero bytes.
    SessionSetupAnswer { mode: u16, data: Vec<u8> },
}

/// The mode-dependent part of a session setup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExchange {
    /// Modes 1 (client cipher) and 4 (Diffie-Hellman): an encoded public key (HS_PUBKEY
    /// form; a `DH_PUB_KEY` for mode 4).
    PublicKey(Vec<u8>),
    /// Mode 3: the handle value holding the key.
    KeyHandle { handle: String, index: u32 },
    /// Mode 2 and unknown modes: nothing.
    None,
}

/// Session setup key exchange modes (Handle.Net `Common.KEY_EXCHANGE_*`).
pub mod key_exchange {
    pub const CIPHER_CLIENT: u16 = 1;
    pub const CIPHER_SERVER: u16 = 2;
    pub const CIPHER_HDL: u16 = 3;
    pub const DH: u16 = 4;
}

/// A decoded (or to-be-encoded) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub envelope: Envelope,
    pub header: Header,
    /// Responses with RD set carry the request's digest before the body.
    pub digest: Option<RequestDigest>,
    pub body: Body,
    /// The credential section: `None` when absent, `Some(empty)` for length 0.
    pub credential: Option<Vec<u8>>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_bytes(s.as_bytes());
}

fn put_int_array(out: &mut Vec<u8>, a: &[u32]) {
    out.put_u32(a.len() as u32);
    for v in a {
        out.put_u32(*v);
    }
}

fn int_array(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u32>, DecodeError> {
    let n = r.count(what, 4)?;
    (0..n).map(|_| r.u32(what)).collect()
}

fn string_array(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<String>, DecodeError> {
    let n = r.count(what, 4)?;
    (0..n).map(|_| r.string(what).map(str::to_string)).collect()
}

fn encode_body(body: &Body, out: &mut Vec<u8>) {
    match body {
        Body::Resolution {
            handle,
            indexes,
            types,
        } => {
            put_str(out, handle);
            put_int_array(out, indexes);
            out.put_u32(types.len() as u32);
            for t in types {
                put_str(out, t);
            }
        }
        Body::Handle { handle } | Body::MintedHandle { handle } => put_str(out, handle),
        Body::PasswordLogin {
            user,
            indexes,
            passwords,
        } => {
            put_str(out, user);
            put_int_array(out, indexes);
            out.put_u32(passwords.len() as u32);
            for p in passwords {
                out.put_bytes(p);
            }
        }
        Body::LoginIdSystem {
            identity_handle,
            identity_index,
        } => {
            put_str(out, identity_handle);
            out.put_u32(*identity_index);
        }
        Body::HandleValues { handle, values } | Body::Values { handle, values } => {
            put_str(out, handle);
            encode_values(values, out);
        }
        Body::Referral { handle, values } => {
            put_str(out, handle);
            encode_values(values, out);
        }
        Body::RemoveValues { handle, indexes } => {
            put_str(out, handle);
            put_int_array(out, indexes);
        }
        Body::ChallengeAnswer {
            auth_type,
            identity_handle,
            identity_index,
            signed_response,
        } => {
            put_str(out, auth_type);
            put_str(out, identity_handle);
            out.put_u32(*identity_index);
            out.put_bytes(signed_response);
        }
        Body::VerifyChallenge {
            handle,
            index,
            nonce,
            digest,
            signed_response,
        } => {
            put_str(out, handle);
            out.put_u32(*index);
            out.put_bytes(nonce);
            out.put_bytes(digest);
            out.put_bytes(signed_response);
        }
        Body::SiteInfo { site } => out.extend_from_slice(site),
        Body::HandleList { handles } => {
            out.put_u32(handles.len() as u32);
            for h in handles {
                put_str(out, h);
            }
        }
        Body::VerifyResult { valid } => out.put_u8(u8::from(*valid)),
        Body::Empty => {}
        Body::Error { message } => put_str(out, message),
        Body::Challenge { nonce } => out.put_bytes(nonce),
        Body::SessionSetup {
            mode,
            timeout,
            identity_handle,
            identity_index,
            exchange,
        } => {
            out.put_u16(*mode);
            out.put_u32(*timeout);
            put_str(out, identity_handle);
            out.put_u32(*identity_index);
            match exchange {
                KeyExchange::PublicKey(key) => out.put_bytes(key),
                KeyExchange::KeyHandle { handle, index } => {
                    put_str(out, handle);
                    out.put_u32(*index);
                }
                KeyExchange::None => {}
            }
            out.put_u16(0);
        }
        Body::SessionSetupAnswer { mode, data } => {
            out.put_u16(*mode);
            out.put_bytes(data);
            out.put_u16(0);
        }
    }
}

/// The 2 zero bytes Handle.Net leaves after a session setup body (optional on decode).
fn unwritten_mode_bytes(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    if r.remaining() == 2 && r.u16("session setup padding")? != 0 {
        return Err(DecodeError::Invalid {
            what: "session setup padding",
            reason: "not zero".into(),
        });
    }
    Ok(())
}

fn decode_session_setup(r: &mut Reader<'_>) -> Result<Body, DecodeError> {
    let mode = r.u16("key exchange mode")?;
    let timeout = r.u32("session timeout")?;
    let identity_handle = r.string("session identity handle")?.to_string();
    let identity_index = r.u32("session identity index")?;
    let exchange = match mode {
        key_exchange::CIPHER_CLIENT | key_exchange::DH => {
            KeyExchange::PublicKey(r.bytes("session exchange key")?.to_vec())
        }
        key_exchange::CIPHER_HDL => KeyExchange::KeyHandle {
            handle: r.string("exchange key handle")?.to_string(),
            index: r.u32("exchange key index")?,
        },
        _ => KeyExchange::None,
    };
    unwritten_mode_bytes(r)?;
    Ok(Body::SessionSetup {
        mode,
        timeout,
        identity_handle,
        identity_index,
        exchange,
    })
}

fn decode_request_body(op_code: u32, r: &mut Reader<'_>) -> Result<Body, WireError> {
    Ok(match op_code {
        op::RESOLUTION => Body::Resolution {
            handle: r.string("handle")?.to_string(),
            indexes: int_array(r, "index list")?,
            types: string_array(r, "type list")?,
        },
        op::GET_SITE_INFO
        | op::DELETE_HANDLE
        | op::LIST_HANDLES
        | op::HOME_NA
        | op::UNHOME_NA
        | op::LIST_HOMED_NAS
        | op::SESSION_TERMINATE => Body::Handle {
            handle: r.string("handle")?.to_string(),
        },
        op::CREATE_HANDLE | op::ADD_VALUE | op::MODIFY_VALUE => Body::HandleValues {
            handle: r.string("handle")?.to_string(),
            values: decode_values(r)?,
        },
        op::REMOVE_VALUE => Body::RemoveValues {
            handle: r.string("handle")?.to_string(),
            indexes: int_array(r, "index list")?,
        },
        op::CHALLENGE_RESPONSE => Body::ChallengeAnswer {
            auth_type: r.string("auth type")?.to_string(),
            identity_handle: r.string("identity handle")?.to_string(),
            identity_index: r.u32("identity index")?,
            signed_response: r.bytes("signed response")?.to_vec(),
        },
        op::LOGIN => Body::PasswordLogin {
            user: r.string("login user")?.to_string(),
            indexes: int_array(r, "login index list")?,
            passwords: {
                let n = r.count("login password list", 4)?;
                (0..n)
                    .map(|_| r.bytes("login password").map(<[u8]>::to_vec))
                    .collect::<Result<_, _>>()?
            },
        },
        op::LOGIN_ID_SYSTEM => Body::LoginIdSystem {
            identity_handle: r.string("identity handle")?.to_string(),
            identity_index: r.u32("identity index")?,
        },
        op::VERIFY_CHALLENGE => Body::VerifyChallenge {
            handle: r.string("handle")?.to_string(),
            index: r.u32("index")?,
            nonce: r.bytes("nonce")?.to_vec(),
            digest: r.bytes("digest")?.to_vec(),
            signed_response: r.bytes("signed response")?.to_vec(),
        },
        op::SESSION_SETUP => decode_session_setup(r)?,
        other => return Err(WireError::UnknownOpCode(other)),
    })
}

fn decode_response_body(header: &Header, r: &mut Reader<'_>) -> Result<Body, WireError> {
    Ok(match header.response_code {
        1 => match header.op_code {
            // A password login's success is a value-less resolution answer (the ID-SDK's
            // convertBytesToLoginResponse reads the handle and the count).
            op::RESOLUTION | op::LOGIN => Body::Values {
                handle: r.string("handle")?.to_string(),
                values: decode_values(r)?,
            },
            op::GET_SITE_INFO => Body::SiteInfo {
                site: r.rest().to_vec(),
            },
            op::LIST_HANDLES | op::LIST_HOMED_NAS => Body::HandleList {
                handles: string_array(r, "handle list")?,
            },
            op::VERIFY_CHALLENGE => Body::VerifyResult {
                valid: r.u8("verification result")? == 1,
            },
            op::CREATE_HANDLE if r.remaining() > 0 => Body::MintedHandle {
                handle: r.string("minted handle")?.to_string(),
            },
            op::SESSION_SETUP => {
                let mode = r.u16("key exchange mode")?;
                let data = r.bytes("session setup data")?.to_vec();
                unwritten_mode_bytes(r)?;
                Body::SessionSetupAnswer { mode, data }
            }
            _ => Body::Empty,
        },
        302 | 303 => Body::Referral {
            handle: r.string("referral handle")?.to_string(),
            values: if r.remaining() > 0 {
                decode_values(r)?
            } else {
                Vec::new()
            },
        },
        402 => Body::Challenge {
            nonce: r.bytes("nonce")?.to_vec(),
        },
        _ => Body::Error {
            message: if r.remaining() > 0 {
                r.string("error message")?.to_string()
            } else {
                String::new()
            },
        },
    })
}

fn digest_len(hash_type: u8) -> Option<usize> {
    match hash_type {
        1 => Some(16),
        2 => Some(20),
        3 => Some(32),
        _ => None,
    }
}

impl Message {
    /// A request as idnode's clients send it: version 2.11 suggesting 2.11, no session,
    /// request id 0, site serial unknown, recursion count 0, expiration 0, an empty credential
    /// section. Callers set what differs (`envelope.request_id`, `header.expiration`, ...).
    pub fn request(op_code: u32, op_flag: u32, body: Body) -> Message {
        Message {
            envelope: Envelope {
                major: OUR_VERSION.0,
                minor: OUR_VERSION.1,
                flags: 0,
                suggested_major: OUR_VERSION.0,
                suggested_minor: OUR_VERSION.1,
                session_id: 0,
                request_id: 0,
                sequence: 0,
                message_length: 0,
            },
            header: Header {
                op_code,
                response_code: 0,
                op_flag,
                site_serial: UNKNOWN_SITE_SERIAL,
                recursion_count: 0,
                expiration: 0,
            },
            digest: None,
            body,
            credential: Some(Vec::new()),
        }
    }

    /// Encode envelope + message; the envelope's `message_length` is computed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let mut env = self.envelope;
        env.message_length = 0;
        env.encode(&mut out);
        self.encode_message_into(&mut out);
        let len = (out.len() - ENVELOPE_LEN) as u32;
        out[16..20].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Header + body + credential, without the envelope.
    pub fn encode_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_message_into(&mut out);
        out
    }

    fn encode_message_into(&self, out: &mut Vec<u8>) {
        let h = &self.header;
        out.put_u32(h.op_code);
        out.put_u32(h.response_code);
        out.put_u32(h.op_flag);
        out.put_u16(h.site_serial);
        out.put_u8(h.recursion_count);
        out.put_u8(0);
        out.put_u32(h.expiration);
        let body_len_at = out.len();
        out.put_u32(0);
        let body_start = out.len();
        if let Some(d) = &self.digest {
            if digest_len(d.hash_type).is_some() {
                out.put_u8(d.hash_type);
                out.extend_from_slice(&d.digest);
            } else {
                // Legacy form: no type byte, an int4-length byte array (its first byte, 0,
                // is what readers take for "type 0").
                out.put_bytes(&d.digest);
            }
        }
        encode_body(&self.body, out);
        let body_len = (out.len() - body_start) as u32;
        out[body_len_at..body_len_at + 4].copy_from_slice(&body_len.to_be_bytes());
        if let Some(c) = &self.credential {
            out.put_bytes(c);
        }
    }

    /// Decode a message (header + body + credential) given its envelope.
    pub fn decode(envelope: Envelope, message: &[u8]) -> Result<Message, WireError> {
        if envelope.flags & (envelope_flag::COMPRESSED | envelope_flag::ENCRYPTED) != 0 {
            return Err(WireError::Unsupported);
        }
        if message.len() != envelope.message_length as usize {
            return Err(WireError::LengthMismatch {
                declared: envelope.message_length as usize,
                actual: message.len(),
            });
        }
        let mut r = Reader::new(message);
        let header = Header {
            op_code: r.u32("opCode")?,
            response_code: r.u32("responseCode")?,
            op_flag: r.u32("opFlag")?,
            site_serial: r.u16("site serial")?,
            recursion_count: r.u8("recursion count")?,
            expiration: {
                let _reserved = r.u8("reserved")?;
                r.u32("expiration")?
            },
        };
        let body_len = r.u32("body length")? as usize;
        if body_len > r.remaining() {
            return Err(WireError::BodyOverrun {
                body: body_len,
                message: message.len(),
            });
        }
        let body_bytes = r.take(body_len, "body")?;
        let credential = match r.remaining() {
            0 => None,
            n if n >= 4 => {
                let c = r.bytes("credential")?.to_vec();
                r.finish()?;
                Some(c)
            }
            n => return Err(DecodeError::Trailing(n).into()),
        };
        let mut b = Reader::new(body_bytes);
        let digest = if !header.is_request() && header.has(flag::RETURN_DIGEST) {
            let first = *body_bytes.first().ok_or(DecodeError::Truncated {
                what: "digest type",
                needed: 1,
            })?;
            match digest_len(first) {
                Some(n) => {
                    b.u8("digest type")?;
                    let digest = b.take(n, "request digest")?.to_vec();
                    Some(RequestDigest {
                        hash_type: first,
                        digest,
                    })
                }
                None if first == 0 => {
                    let digest = b.bytes("request digest")?.to_vec();
                    Some(RequestDigest {
                        hash_type: 0,
                        digest,
                    })
                }
                None => {
                    return Err(DecodeError::Invalid {
                        what: "digest type",
                        reason: format!("unknown hash type {first}"),
                    }
                    .into())
                }
            }
        } else {
            None
        };
        let body = if header.is_request() {
            decode_request_body(header.op_code, &mut b)?
        } else {
            decode_response_body(&header, &mut b)?
        };
        b.finish()?;
        Ok(Message {
            envelope,
            header,
            digest,
            body,
            credential,
        })
    }

    /// Whether this answer (received over UDP) sends the client to TCP: RC 2 or the
    /// envelope's TC flag, on which Handle.Net clients ask again over TCP at once.
    pub fn asks_for_tcp(&self) -> bool {
        self.header.response_code == 2 || self.envelope.flags & envelope_flag::TRUNCATED != 0
    }

    /// Decode envelope + message from one buffer holding exactly one message.
    pub fn decode_full(bytes: &[u8]) -> Result<Message, WireError> {
        if bytes.len() < ENVELOPE_LEN {
            return Err(DecodeError::Truncated {
                what: "envelope",
                needed: ENVELOPE_LEN - bytes.len(),
            }
            .into());
        }
        let env = Envelope::decode(&bytes[..ENVELOPE_LEN])?;
        Message::decode(env, &bytes[ENVELOPE_LEN..])
    }
}

/// The header+body bytes of an encoded message (what request digests and signatures cover):
/// `message` is the part after the envelope.
pub fn header_and_body(message: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(message.get(20..24)?.try_into().ok()?) as usize;
    message.get(..HEADER_LEN.checked_add(len)?)
}

#[cfg(test)]
mod tests;
