//! Errors a change or a document can have, each with a stable code that the server
//! reports per change and clients switch on.

/// Why a pushed change was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("the change is not valid base64")]
    InvalidEncoding,
    #[error("malformed change: {0}")]
    Malformed(String),
    #[error("the change is truncated")]
    Truncated,
    #[error("the change's checksum does not match its bytes")]
    ChecksumMismatch,
    #[error("compressed change chunks are not accepted; send uncompressed changes")]
    Compressed,
    #[error("this is a document chunk, not a change")]
    NotAChange,
    #[error("the change is larger than the server accepts")]
    TooLarge,
    #[error("the change is for a document of type `{actual}`, but this document is `{expected}`")]
    WrongDocumentType { expected: String, actual: String },
    #[error("the document has no valid `type` field")]
    UnknownDocumentType,
    #[error("the change's actor id belongs to another device")]
    ForeignActor,
    #[error(
        "this actor id already wrote a different change with this sequence number; after a reinstall the app must use a fresh actor id"
    )]
    ActorReused,
    #[error("the record is outside your assigned provinces and cooperatives")]
    OutOfScope,
    #[error("the change is internally inconsistent: {0}")]
    Rejected(String),
    #[error("too many operations: {0}")]
    TooManyOperations(String),
    #[error("the change nests objects deeper than {0} levels; no record needs more")]
    TooDeep(usize),
    #[error("the change has an operation no correct Automerge client writes: {0}")]
    UnsupportedOperation(String),
    #[error(
        "this device already has {0} changes waiting for dependencies the server lacks; push the changes they depend on first"
    )]
    TooManyPending(usize),
    #[error(
        "this device created {0} records in the last 24 hours, the most one tablet may; ask an admin"
    )]
    TooManyNewDocuments(usize),
}

impl ChangeError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ChangeError::InvalidEncoding => "invalid_encoding",
            ChangeError::Malformed(_) => "malformed_change",
            ChangeError::Truncated => "truncated_change",
            ChangeError::ChecksumMismatch => "checksum_mismatch",
            ChangeError::Compressed => "compressed_change",
            ChangeError::NotAChange => "not_a_change",
            ChangeError::TooLarge => "change_too_large",
            ChangeError::WrongDocumentType { .. } => "wrong_document_type",
            ChangeError::UnknownDocumentType => "unknown_document_type",
            ChangeError::ForeignActor => "foreign_actor",
            ChangeError::ActorReused => "actor_reused",
            ChangeError::OutOfScope => "out_of_scope",
            ChangeError::Rejected(_) => "rejected_change",
            ChangeError::TooManyOperations(_) => "too_many_operations",
            ChangeError::TooDeep(_) => "too_deeply_nested",
            ChangeError::UnsupportedOperation(_) => "unsupported_operation",
            ChangeError::TooManyPending(_) => "too_many_pending",
            ChangeError::TooManyNewDocuments(_) => "too_many_new_documents",
        }
    }
}
