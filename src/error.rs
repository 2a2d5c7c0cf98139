//! The one error type. Each variant names what went wrong from the caller's point of view, and
//! its name is the Lambda `errorType`, so callers can branch on it without parsing messages.

/// Why an invocation (or the function's start) failed.
///
/// Messages say what and where (row index, column path, target) but never quote a row value:
/// they end up in CloudWatch and in the caller's terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event is not the documented shape: malformed JSON, missing or empty `rows`, a row
    /// that is not an object, a type conflict, no targets at all.
    #[error("{0}")]
    InvalidEvent(String),
    /// A target is malformed: not an `s3://bucket/path/` prefix, an unknown codec, a duplicate.
    #[error("{0}")]
    InvalidTarget(String),
    /// A well-formed target that `ALLOWED_PREFIXES` (or the path rules) forbid.
    #[error("{0}")]
    TargetNotAllowed(String),
    /// A `source` object outside `ALLOWED_SOURCES`; nothing was read.
    #[error("{0}")]
    SourceNotAllowed(String),
    /// The `source` object or its bucket does not exist (or cannot be seen).
    #[error("{0}")]
    SourceNotFound(String),
    /// Reading the `source` object failed (access, network, a change between two reads).
    #[error("{0}")]
    SourceReadFailed(String),
    /// A notification for an object inside one of its own target folders: converting it
    /// would trigger the function again on its own output.
    #[error("{0}")]
    RecursiveTrigger(String),
    /// A job's commit found executions of its map run that failed or never finished: the
    /// job is not whole, and no `_SUCCESS` marker was written.
    #[error("{0}")]
    JobIncomplete(String),
    /// S3 refused or failed a write; whatever this invocation wrote has been removed.
    #[error("{0}")]
    S3WriteFailed(String),
    /// Another write held a folder, partition or piece of work this one replaces or repeats
    /// until its time ran out; nothing of it is left in S3, and a retry writes it.
    #[error("{0}")]
    WriteConflict(String),
    /// A table target names a table the catalog does not have (and no `TABLE_WAREHOUSE` to
    /// create it in); nothing was written.
    #[error("{0}")]
    TableNotFound(String),
    /// A table target outside `ALLOWED_TABLES`; nothing was written.
    #[error("{0}")]
    TableNotAllowed(String),
    /// The rows have a column the table lacks, or one whose type the table's cannot take;
    /// nothing was written.
    #[error("{0}")]
    TableSchemaMismatch(String),
    /// Other writers kept committing to the table until the time for retries ran out; the
    /// data files written were removed, nothing is visible.
    #[error("{0}")]
    CommitConflict(String),
    /// The catalog refused or failed a read or a commit; nothing is visible, and what was
    /// written has been removed.
    #[error("{0}")]
    CatalogFailed(String),
    /// The function's environment variables are wrong; raised at start, before any event.
    #[error("{0}")]
    InvalidConfig(String),
}

impl Error {
    /// An `InvalidEvent` about something inside a larger whole (a source object, an
    /// EventBridge event's `detail`) says which, as `<context>: <message>`; other errors are
    /// already about what they name.
    pub fn within(self, context: &str) -> Error {
        match self {
            Error::InvalidEvent(m) => Error::InvalidEvent(format!("{context}: {m}")),
            other => other,
        }
    }

    /// The Lambda `errorType`: the variant's name.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidEvent(_) => "InvalidEvent",
            Error::InvalidTarget(_) => "InvalidTarget",
            Error::TargetNotAllowed(_) => "TargetNotAllowed",
            Error::SourceNotAllowed(_) => "SourceNotAllowed",
            Error::SourceNotFound(_) => "SourceNotFound",
            Error::SourceReadFailed(_) => "SourceReadFailed",
            Error::RecursiveTrigger(_) => "RecursiveTrigger",
            Error::JobIncomplete(_) => "JobIncomplete",
            Error::S3WriteFailed(_) => "S3WriteFailed",
            Error::WriteConflict(_) => "WriteConflict",
            Error::TableNotFound(_) => "TableNotFound",
            Error::TableNotAllowed(_) => "TableNotAllowed",
            Error::TableSchemaMismatch(_) => "TableSchemaMismatch",
            Error::CommitConflict(_) => "CommitConflict",
            Error::CatalogFailed(_) => "CatalogFailed",
            Error::InvalidConfig(_) => "InvalidConfig",
        }
    }
}
