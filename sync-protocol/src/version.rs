//! Protocol version and compatibility rules.
//!
//! A request carries `protocol_version`. The server answers any version from
//! [`MIN_SUPPORTED_VERSION`] to [`PROTOCOL_VERSION`] in that version's format, and
//! refuses others with `unsupported_protocol_version`. New optional fields may be added
//! within a version (readers ignore unknown fields, writers default missing ones); a
//! change that old clients cannot ignore makes a new version.

/// The version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest version the server still answers.
pub const MIN_SUPPORTED_VERSION: u32 = 1;

/// Whether a server built with this crate answers `version`.
pub fn is_supported(version: u32) -> bool {
    (MIN_SUPPORTED_VERSION..=PROTOCOL_VERSION).contains(&version)
}
