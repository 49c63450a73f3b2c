//! coopsync sync protocol: wire types, document schemas, validation and (with the
//! `client` feature) a transport-agnostic sync client. Pure: no HTTP, database or async
//! runtime, so tablet apps, simulators and the server share it.
//!
//! Records are Automerge documents, one per cooperative, member or training session.
//! A tablet edits them offline and, when online, sends the changes the server lacks in a
//! [`messages::SyncRequest`] and receives what it lacks in a [`messages::SyncResponse`].
//!
//! ```
//! use automerge::AutoCommit;
//! use sync_protocol::documents::{DocType, Member, doc_type_of};
//!
//! let mut doc = AutoCommit::new();
//! let member = Member {
//!     cooperative_id: Some("0b6c1a8e-3f51-4f3e-9a57-2d8f1f7c9b10".into()),
//!     full_name_khmer: Some("សុខ ចាន់".into()),
//!     sex: Some("female".into()),
//!     role: Some("member".into()),
//!     ..Member::default()
//! };
//! member.write(&mut doc, true).unwrap();
//! assert_eq!(doc_type_of(&doc), Some(DocType::Member));
//! let (read, findings) = Member::read(&doc);
//! assert_eq!(read, member);
//! assert!(findings.is_empty());
//! assert!(read.validate(2026).is_empty());
//! ```

pub mod chunk;
#[cfg(feature = "client")]
pub mod client;
pub mod documents;
pub mod error;
pub mod ids;
pub mod messages;
pub mod version;

pub use error::ChangeError;
pub use version::PROTOCOL_VERSION;
