//! File writing with the permissions private keys need.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::CaError;

pub(crate) const SECRET: u32 = 0o600;
pub(crate) const PUBLIC: u32 = 0o644;

/// Creates `path` without ever replacing an existing file, so a key cannot be clobbered by a
/// second `init` or `issue` racing the first.
pub(crate) fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CaError::AlreadyExists(path.to_path_buf()),
            _ => CaError::io(path, e),
        })?;
    // The umask may have narrowed `mode`; public files must stay readable by the node's user.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| CaError::io(path, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| CaError::io(path, e))
}

/// Replaces `path` through a rename so that a crash never leaves a half-written registry or
/// CRL behind for a node to load.
pub(crate) fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&tmp);
    create_new(&tmp, contents, mode)?;
    fs::rename(&tmp, path).map_err(|e| CaError::io(path, e))
}

pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<(), CaError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| CaError::io(path, e))
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|e| CaError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        create_new(&path, b"one", SECRET).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            create_new(&path, b"two", SECRET),
            Err(CaError::AlreadyExists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    #[test]
    fn replace_swaps_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        replace(&path, b"one", PUBLIC).unwrap();
        replace(&path, b"two", PUBLIC).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
