//! Atomic file replacement: write a temporary file next to the target, then rename.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use super::IoError;

/// A temporary file in the directory of `target` that replaces `target` only
/// on [`commit`](AtomicFile::commit).
///
/// The file is created next to the target so that the final rename does not
/// cross file systems. Dropping an `AtomicFile` without committing it deletes
/// the temporary file and leaves `target` as it was. Writes are not
/// buffered: wrap it in a buffered writer.
pub(super) struct AtomicFile {
    // Field order matters: `file` is closed before `temp` deletes the file.
    file: File,
    temp: TempPath,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file for `target`, named `.NAME.XXXXXX.tmp`.
    pub(super) fn create(target: &Path) -> Result<AtomicFile, IoError> {
        let Some(name) = target.file_name() else {
            return Err(IoError::new(target, "not a file path"));
        };
        let dir = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };

        // A hidden name that says what it is for: `.points.csv.XXXXXX.tmp`.
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // tempfile creates files readable by the owner only; ask for the usual
        // mode instead, so the result looks like any other new file (the umask
        // still applies).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder
            .tempfile_in(dir)
            .map_err(|e| IoError::new(target, format!("cannot create a temporary file in `{}`: {e}", dir.display())))?;
        let (file, temp) = temp.into_parts();
        Ok(AtomicFile { file, temp, target: target.to_path_buf() })
    }

    /// Syncs the data to disk and renames the temporary file to the target,
    /// replacing any file there. On error the temporary file is deleted and
    /// the target is untouched.
    pub(super) fn commit(self) -> Result<(), IoError> {
        let AtomicFile { file, temp, target } = self;
        file.sync_all().map_err(|e| IoError::new(&target, format!("cannot write: {e}")))?;
        drop(file);
        temp.persist(&target).map_err(|e| {
            // `e.path` is dropped here too, deleting the temporary file.
            IoError::new(&target, format!("cannot replace the file: {}", e.error))
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::BufWriter;

    /// Writes the bytes produced by `fill` to `path`, atomically.
    fn write(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), IoError> {
        let file = AtomicFile::create(path)?;
        let mut out = BufWriter::new(file);
        let written = fill(&mut out).and_then(|()| out.into_inner().map_err(|e| e.into_error()));
        written.map_err(|e| IoError::new(path, format!("cannot write: {e}")))?.commit()
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn success_leaves_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        write(&path, |w| w.write_all(b"hello\n")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello\n");
        assert_eq!(names_in(dir.path()), ["out.csv"]);
    }

    #[test]
    fn failure_midway_removes_temp_and_keeps_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        fs::write(&path, "old contents\n").unwrap();
        let err = write(&path, |w| {
            w.write_all(b"partial new contents")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("cannot write: disk on fire"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old contents\n");
        assert_eq!(names_in(dir.path()), ["out.csv"]);
    }

    #[test]
    fn failure_midway_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        write(&path, |w| {
            w.write_all(&[0u8; 100_000])?;
            Err(io::Error::other("boom"))
        })
        .unwrap_err();
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn rename_failure_removes_temp() {
        // A non-empty directory at the target path cannot be replaced by a file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        let err = write(&path, |w| w.write_all(b"1\n")).unwrap_err();
        assert!(err.to_string().contains("cannot replace the file"), "{err}");
        assert_eq!(names_in(dir.path()), ["out.csv"]);
        assert_eq!(fs::read_to_string(path.join("inside")).unwrap(), "x");
    }

    #[test]
    fn relative_path_without_directory_uses_current_directory() {
        // Only checks that the directory is derived without panicking; the
        // failing closure means nothing is left in the current directory.
        let err = write(Path::new("flowc-runtime-atomic-test.csv"), |_| Err(io::Error::other("stop"))).unwrap_err();
        assert!(err.to_string().contains("stop"));
        assert!(!Path::new("flowc-runtime-atomic-test.csv").exists());
    }

    #[cfg(unix)]
    #[test]
    fn new_file_is_not_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        write(&path, |w| w.write_all(b"1\n")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Exactly what a plain `File::create` would give under this umask.
        let plain = dir.path().join("plain");
        fs::File::create(&plain).unwrap();
        let plain_mode = fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, plain_mode);
    }

    #[test]
    fn drop_without_commit_removes_temp_and_keeps_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        fs::write(&path, "old").unwrap();
        {
            let mut file = AtomicFile::create(&path).unwrap();
            file.write_all(b"new contents").unwrap();
            assert_eq!(names_in(dir.path()).len(), 2);
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names_in(dir.path()), ["out.npy"]);
    }

    #[test]
    fn seek_and_overwrite_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"xxxx data").unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(b"head").unwrap();
        file.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"head data");
        assert_eq!(names_in(dir.path()), ["out.npy"]);
    }
}
