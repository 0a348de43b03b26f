//! The DPS protocol over MQTT as pure functions: topics, `$rid`, retry-after, the MQTT user name,
//! the identifiers' limits, what an incoming PUBLISH is, and what a reply's status and body say.
//! No I/O and no state.
#![forbid(unsafe_code)]

pub mod body;
pub mod chain;
pub mod classify;
pub mod csr;
pub mod ids;
pub mod info;
pub mod register_body;
pub mod retry_after;
pub mod topic;
pub mod username;

/// The one subscription DPS supports.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
/// DPS refuses messages over 96 KB; we refuse to read bigger packets too.
pub const MAX_PACKET: usize = 96 * 1024;
/// The longest registration id DPS accepts (128 characters); also the bound we put on the ID
/// scope and the api version, which are far shorter in practice. Longer values cannot make a
/// CONNECT that fits the MQTT limits, so `open` refuses them up front ([`ids`]).
pub const MAX_ID_LEN: usize = 128;
/// The client version the SDK's transport reports (`PROV_DEVICE_CLIENT_VERSION`).
pub const CLIENT_VERSION: &str = "1.15.0";
/// The status from which a reply is transient (`PROV_STATUS_CODE_TRANSIENT_ERROR`).
pub const TRANSIENT_STATUS: u16 = 429;
