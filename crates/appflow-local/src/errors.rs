//! AppFlow's error shapes, each with the HTTP status the service model gives it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Validation,
    ResourceNotFound,
    Conflict,
    ServiceQuotaExceeded,
    Throttling,
    InternalServer,
    AccessDenied,
    UnsupportedOperation,
    /// Not an AppFlow path at all.
    UnknownOperation,
}

impl ErrorKind {
    /// The code the SDK maps to a typed error variant (`x-amzn-ErrorType` and `__type`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::Conflict => "ConflictException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::InternalServer => "InternalServerException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::UnsupportedOperation => "UnsupportedOperationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Validation | ErrorKind::UnsupportedOperation => 400,
            ErrorKind::ServiceQuotaExceeded => 402,
            ErrorKind::AccessDenied => 403,
            ErrorKind::ResourceNotFound | ErrorKind::UnknownOperation => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Throttling => 429,
            ErrorKind::InternalServer => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFlowError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AppFlowError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn flow_not_found(name: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!("Flow {name} does not exist"),
        )
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
}
