use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::serial::Serial;

/// Why the certificate authority could not do what it was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Refused so that an existing CA key, or an identity already handed out, is never lost.
    AlreadyExists(PathBuf),
    /// A file in a CA directory could not be understood.
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    InvalidRequest(String),
    UnknownSerial(Serial),
    AlreadyRevoked(Serial),
    Crypto(rcgen::Error),
}

impl CaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> CaError {
        CaError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl fmt::Display) -> CaError {
        CaError::Corrupt {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CaError::AlreadyExists(path) => {
                write!(
                    f,
                    "{} already exists; refusing to overwrite it",
                    path.display()
                )
            }
            CaError::Corrupt { path, reason } => write!(f, "{}: {reason}", path.display()),
            CaError::InvalidRequest(reason) => f.write_str(reason),
            CaError::UnknownSerial(serial) => {
                write!(
                    f,
                    "no certificate with serial {serial} was issued by this CA"
                )
            }
            CaError::AlreadyRevoked(serial) => {
                write!(f, "certificate {serial} is already revoked")
            }
            CaError::Crypto(e) => write!(f, "certificate generation failed: {e}"),
        }
    }
}

impl std::error::Error for CaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaError::Io { source, .. } => Some(source),
            CaError::Crypto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Crypto(e)
    }
}
