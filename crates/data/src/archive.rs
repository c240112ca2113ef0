//! Streaming reader for `.tar.gz` (and plain `.tar`) archives.
//!
//! Memory stays bounded whatever the archive's headers say: each entry's declared size is
//! checked against its format's limit ([`entry_limit`]) before any of it is read, and the tar
//! reader's own reads between two entries (headers, GNU long names, PAX records, which it keeps
//! in memory) are capped at [`METADATA_BUDGET`] bytes.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};
use std::rc::Rc;

use crate::cifar;
use crate::error::{DataError, Result};

/// The most bytes an image (or any other entry that is not a CIFAR-10 file) of an archive may
/// declare: 64 MiB, far above any real JPEG or PNG of a training set.
pub(crate) const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// The most bytes the tar reader may take from the stream between two entries it hands out
/// (the end of the previous entry's data, its padding, the next header and the metadata
/// entries in front of it). Real headers take a few hundred bytes.
pub(crate) const METADATA_BUDGET: u64 = 1 << 20;

/// The most bytes an entry named `name` may declare, and what that limit is, for the message.
pub(crate) fn entry_limit(name: &str) -> (u64, String) {
    cifar::entry_limit(name).unwrap_or_else(|| {
        (
            MAX_ENTRY_BYTES,
            format!(
                "the {} MiB limit of an archive entry",
                MAX_ENTRY_BYTES >> 20
            ),
        )
    })
}

/// The decompressed stream, metered: a read past `limit` total bytes fails, so no size that a
/// header declares can make the tar reader buffer more than what the caller allowed.
struct Metered<R> {
    inner: R,
    used: Rc<Cell<u64>>,
    limit: Rc<Cell<u64>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (used, limit) = (self.used.get(), self.limit.get());
        if buf.is_empty() {
            return Ok(0);
        }
        if used >= limit {
            return Err(std::io::Error::other(format!(
                "a tar header or metadata entry (long name, PAX record) takes more than \
                 {METADATA_BUDGET} bytes"
            )));
        }
        let n = buf
            .len()
            .min(usize::try_from(limit - used).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.used.set(used + got as u64);
        Ok(got)
    }
}

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
/// [`is_hidden`]) are skipped; links and special files are ignored. A file entry that declares
/// more than its [`entry_limit`] is refused before it is read.
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
    let (used, limit) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(METADATA_BUDGET)));
    let mut archive = tar::Archive::new(Metered {
        inner: reader,
        used: Rc::clone(&used),
        limit: Rc::clone(&limit),
    });
    let mut contents = ArchiveContents {
        files: Vec::new(),
        dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        // This entry's data (read below, or skipped by the tar reader) and the next header.
        let size = entry.size();
        limit.set(
            used.get()
                .saturating_add(size)
                .saturating_add(METADATA_BUDGET),
        );
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
            let (max, what) = entry_limit(&name);
            if size > max {
                return Err(DataError::invalid(
                    format!("{display}:{name}"),
                    format!("entry declares {size} bytes, more than {what} ({max} bytes); refusing to read it"),
                ));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(|e| {
                DataError::invalid(
                    format!("{display}:{name}"),
                    format!("cannot read archive entry: {e}"),
                )
            })?;
            if data.len() as u64 != size {
                return Err(DataError::invalid(
                    format!("{display}:{name}"),
                    format!(
                        "cannot read archive entry: the archive ends after {} of its {size} bytes",
                        data.len()
                    ),
                ));
            }
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
