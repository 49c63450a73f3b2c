//! Authentication: password hashing, access tokens, refresh tokens, sessions and the
//! request extractor that turns a bearer token into a signed-in user.

pub mod extract;
pub mod jwt;
pub mod password;
pub mod session;
pub mod throttle;

pub use extract::{Principal, principal_of};
