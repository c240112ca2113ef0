//! Streaming reader for `.tar.gz` (and plain `.tar`) archives.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};

use crate::error::{DataError, Result};

/// A regular file read from an archive.
pub(crate) struct ArchiveFile {
    /// Entry path, components joined by `/`, without a leading `./`.
    pub path: String,
    /// The file's bytes.
    pub data: Vec<u8>,
}

/// Everything read from an archive: regular files and directory entries.
pub(crate) struct ArchiveContents {
    pub files: Vec<ArchiveFile>,
    pub dirs: Vec<String>,
}

/// `true` for a path with a component starting with `.` (`.DS_Store`, `._x.jpg`, `.git/…`).
pub(crate) fn is_hidden(path: &str) -> bool {
    path.split('/')
        .any(|c| c.starts_with('.') && c != "." && c != "..")
}

/// `true` when the file starts with the gzip magic number.
pub(crate) fn is_gzip(path: &Path) -> Result<bool> {
    let mut reader = BufReader::new(File::open(path).map_err(|e| DataError::io(path, e))?);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    Ok(head.starts_with(&[0x1f, 0x8b]))
}

/// Reads a whole archive, gzip-compressed or not, into memory. Hidden entries (see
/// [`is_hidden`]) are skipped; links and special files are ignored.
pub(crate) fn read(path: &Path) -> Result<ArchiveContents> {
    let display = path.display().to_string();
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader: Box<dyn Read> = if is_gzip(path)? {
        Box::new(flate2::read::GzDecoder::new(BufReader::with_capacity(
            1 << 20,
            file,
        )))
    } else {
        Box::new(BufReader::new(file))
    };
    let corrupt = |e: std::io::Error| {
        DataError::invalid(display.clone(), format!("cannot read archive: {e}"))
    };
    let mut archive = tar::Archive::new(reader);
    let mut contents = ArchiveContents {
        files: Vec::new(),
        dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let mut parts = Vec::new();
        for c in raw.components() {
            match c {
                Component::Normal(s) => match s.to_str() {
                    Some(s) => parts.push(s.to_owned()),
                    None => {
                        return Err(DataError::invalid(
                            format!("{display}:{}", raw.display()),
                            "entry name is not valid UTF-8",
                        ))
                    }
                },
                Component::CurDir => {}
                _ => {
                    return Err(DataError::invalid(
                        format!("{display}:{}", raw.display()),
                        "entry name is absolute or leaves the archive",
                    ))
                }
            }
        }
        let name = parts.join("/");
        if name.is_empty() || is_hidden(&name) {
            continue;
        }
        if kind.is_dir() {
            contents.dirs.push(name);
        } else {
            // The declared size only sizes the first allocation; it is not trusted beyond 64 MiB.
            let mut data = Vec::with_capacity(entry.size().min(64 << 20) as usize);
            entry.read_to_end(&mut data).map_err(|e| {
                DataError::invalid(
                    format!("{display}:{name}"),
                    format!("cannot read archive entry: {e}"),
                )
            })?;
            contents.files.push(ArchiveFile { path: name, data });
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::is_hidden;

    #[test]
    fn hidden_rule() {
        assert!(is_hidden(".DS_Store"));
        assert!(is_hidden("train/cat/._0001.jpg"));
        assert!(is_hidden("a/.git/config"));
        assert!(!is_hidden("train/cat/0001.jpg"));
    }
}
