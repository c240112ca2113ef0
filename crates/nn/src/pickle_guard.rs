//! A weights-only check of the pickles inside a PyTorch checkpoint, run before the checkpoint is
//! parsed.
//!
//! burn-store's PyTorch reader never executes pickle code: a `GLOBAL` only names a class, and a
//! `REDUCE` of anything but the tensor-rebuild functions becomes an opaque placeholder. So a
//! hostile pickle (`os.system` and the like) cannot run anything, but the reader would still
//! *accept* the file and load whatever tensors sit next to the payload. effcnn is stricter, like
//! PyTorch's `weights_only=True`: every global the pickle references must be on a short
//! allow-list (tensor rebuild functions, storage and dtype classes, `OrderedDict`), otherwise
//! loading fails with [`NnError::UnsafePickle`] naming the global.
//!
//! The scan walks the opcode stream without building objects. `GLOBAL`/`INST` carry their names
//! inline; for `STACK_GLOBAL` the two strings pushed right before it (possibly through the memo)
//! are the names, and anything else before it is refused.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::NnError;

/// Globals a weights-only checkpoint may reference.
fn allowed(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_tensor_v3"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch" => {
            name.ends_with("Storage") && name.chars().all(|c| c.is_ascii_alphanumeric())
                || matches!(
                    name,
                    "Tensor"
                        | "Size"
                        | "device"
                        | "float32"
                        | "float64"
                        | "float16"
                        | "bfloat16"
                        | "half"
                        | "float"
                        | "double"
                        | "int64"
                        | "int32"
                        | "int16"
                        | "int8"
                        | "uint8"
                        | "long"
                        | "int"
                        | "bool"
                )
        }
        "torch.storage" => name == "UntypedStorage",
        "builtins" | "__builtin__" => matches!(name, "set" | "frozenset"),
        "_codecs" => name == "encode",
        _ => false,
    }
}

/// The container a checkpoint uses, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    Zip,
    Tar,
    /// Pre-1.6 `torch.save`: a sequence of pickles, then raw storages.
    Legacy,
    /// A single pickle.
    Pickle,
}

/// The legacy magic number 0x1950a86a20f9469cfc6c as protocols ≥ 2 write it (LONG1 bytes) and
/// as protocols 0/1 write it (decimal text). Detection follows the reader's own rule (the magic
/// anywhere in the first 64 bytes), so the guard never scans fewer pickles than the reader reads.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_MAGIC_TEXT: &[u8] = b"119547037146038801333356";
const LEGACY_MAGIC_SEARCH: usize = 64;

pub(crate) fn container(head: &[u8]) -> Container {
    let window = &head[..head.len().min(LEGACY_MAGIC_SEARCH)];
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Container::Zip
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Container::Tar
    } else if window
        .windows(LEGACY_MAGIC.len())
        .any(|w| w == LEGACY_MAGIC)
        || window
            .windows(LEGACY_MAGIC_TEXT.len())
            .any(|w| w == LEGACY_MAGIC_TEXT)
    {
        Container::Legacy
    } else {
        Container::Pickle
    }
}

/// Check every pickle of a checkpoint's bytes (`path` names them in errors). Returns the
/// container kind.
pub(crate) fn check_bytes(path: &Path, bytes: &[u8]) -> Result<Container, NnError> {
    let kind = container(bytes);
    match kind {
        Container::Zip => {
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| NnError::format(path, format!("not a readable zip archive: {e}")))?;
            let mut found = false;
            for i in 0..archive.len() {
                let mut entry = archive
                    .by_index(i)
                    .map_err(|e| NnError::format(path, format!("zip entry {i}: {e}")))?;
                let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
                if !name.ends_with(".pkl") {
                    continue;
                }
                if entry.size() > burn_store::pytorch_reader::MAX_PICKLE_SIZE {
                    return Err(NnError::format(
                        path,
                        format!("{name} is implausibly large"),
                    ));
                }
                let mut pkl = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut pkl)
                    .map_err(|e| NnError::format(path, format!("{name}: {e}")))?;
                scan(path, &pkl)?;
                found |= name.ends_with("data.pkl");
            }
            if !found {
                return Err(NnError::format(
                    path,
                    "zip archive without a data.pkl: not a PyTorch checkpoint",
                ));
            }
        }
        Container::Legacy => {
            // magic number, protocol version, sys info, the object, the storage keys.
            let mut pos = 0;
            for _ in 0..5 {
                pos += scan(path, &bytes[pos..])?;
            }
        }
        Container::Pickle => {
            scan(path, bytes)?;
        }
        Container::Tar => {
            return Err(NnError::format(
                path,
                "TAR checkpoints (PyTorch before 0.1.10) are not supported; re-save the \
                 state_dict with a current PyTorch",
            ))
        }
    }
    Ok(kind)
}

/// What the scanner knows about a stack value: a string (a candidate global name) or not.
type Val = Option<String>;

/// Scan one pickle starting at `data[0]`; returns the number of bytes it spans (through STOP).
pub(crate) fn scan(path: &Path, data: &[u8]) -> Result<usize, NnError> {
    let bad = |msg: String| NnError::format(path, format!("malformed pickle: {msg}"));
    let mut pos = 0usize;
    // The most recent pushes, for STACK_GLOBAL; memo of string values.
    let mut recent: Vec<Val> = Vec::new();
    let mut memo: HashMap<u64, Val> = HashMap::new();
    let mut memo_next: u64 = 0;

    let take = |pos: &mut usize, n: usize| -> Result<&[u8], NnError> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| bad(format!("truncated at byte {}", *pos)))?;
        let s = &data[*pos..end];
        *pos = end;
        Ok(s)
    };
    let line = |pos: &mut usize| -> Result<String, NnError> {
        let rest = &data[*pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("unterminated line argument".into()))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        *pos += n + 1;
        Ok(s)
    };
    let le = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            v |= (x as u64) << (8 * i);
        }
        v
    };

    loop {
        let op = *data
            .get(pos)
            .ok_or_else(|| bad("no STOP opcode before the end of the data".into()))?;
        pos += 1;
        let mut push: Option<Val> = Some(None);
        match op {
            b'.' => return Ok(pos),
            // Strings (candidate names for STACK_GLOBAL).
            b'X' => {
                let n = le(take(&mut pos, 4)?) as usize;
                push = Some(Some(
                    String::from_utf8_lossy(take(&mut pos, n)?).into_owned(),
                ));
            }
            0x8c => {
                let n = take(&mut pos, 1)?[0] as usize;
                push = Some(Some(
                    String::from_utf8_lossy(take(&mut pos, n)?).into_owned(),
                ));
            }
            0x8d => {
                let n = le(take(&mut pos, 8)?) as usize;
                push = Some(Some(
                    String::from_utf8_lossy(take(&mut pos, n)?).into_owned(),
                ));
            }
            b'V' => push = Some(Some(line(&mut pos)?)),
            b'S' => {
                let s = line(&mut pos)?;
                push = Some(Some(s.trim_matches(|c| c == '\'' || c == '"').to_string()));
            }
            b'T' => {
                let n = le(take(&mut pos, 4)?) as usize;
                push = Some(Some(
                    String::from_utf8_lossy(take(&mut pos, n)?).into_owned(),
                ));
            }
            b'U' => {
                let n = take(&mut pos, 1)?[0] as usize;
                push = Some(Some(
                    String::from_utf8_lossy(take(&mut pos, n)?).into_owned(),
                ));
            }
            // Globals.
            b'c' | b'i' => {
                let module = line(&mut pos)?;
                let name = line(&mut pos)?;
                if op == b'i' || !allowed(&module, &name) {
                    return Err(NnError::UnsafePickle {
                        path: path.to_path_buf(),
                        global: format!("{module}.{name}"),
                    });
                }
            }
            0x93 => {
                let n = recent.len();
                let (m, nm) = if n >= 2 {
                    (recent[n - 2].clone(), recent[n - 1].clone())
                } else {
                    (None, None)
                };
                match (m, nm) {
                    (Some(m), Some(nm)) if allowed(&m, &nm) => {}
                    (Some(m), Some(nm)) => {
                        return Err(NnError::UnsafePickle {
                            path: path.to_path_buf(),
                            global: format!("{m}.{nm}"),
                        })
                    }
                    _ => {
                        return Err(NnError::UnsafePickle {
                            path: path.to_path_buf(),
                            global: "<a STACK_GLOBAL whose names are computed>".into(),
                        })
                    }
                }
            }
            // Memo: PUT/MEMOIZE store the most recent push; GET pushes it back.
            0x94 => {
                memo.insert(memo_next, recent.last().cloned().flatten());
                memo_next += 1;
                push = None;
            }
            b'p' => {
                let k: u64 = line(&mut pos)?
                    .trim()
                    .parse()
                    .map_err(|_| bad("PUT index".into()))?;
                memo.insert(k, recent.last().cloned().flatten());
                push = None;
            }
            b'q' => {
                let k = take(&mut pos, 1)?[0] as u64;
                memo.insert(k, recent.last().cloned().flatten());
                push = None;
            }
            b'r' => {
                let k = le(take(&mut pos, 4)?);
                memo.insert(k, recent.last().cloned().flatten());
                push = None;
            }
            b'g' => {
                let k: u64 = line(&mut pos)?
                    .trim()
                    .parse()
                    .map_err(|_| bad("GET index".into()))?;
                push = Some(memo.get(&k).cloned().flatten());
            }
            b'h' => {
                let k = take(&mut pos, 1)?[0] as u64;
                push = Some(memo.get(&k).cloned().flatten());
            }
            b'j' => {
                let k = le(take(&mut pos, 4)?);
                push = Some(memo.get(&k).cloned().flatten());
            }
            // Framing and protocol: no stack effect.
            0x80 => {
                take(&mut pos, 1)?;
                push = None;
            }
            0x95 => {
                take(&mut pos, 8)?;
                push = None;
            }
            // Fixed-size arguments.
            b'J' => drop(take(&mut pos, 4)?),
            b'K' => drop(take(&mut pos, 1)?),
            b'M' => drop(take(&mut pos, 2)?),
            b'G' => drop(take(&mut pos, 8)?),
            // Length-prefixed non-string data.
            0x8a => {
                let n = take(&mut pos, 1)?[0] as usize;
                take(&mut pos, n)?;
            }
            0x8b => {
                let n = le(take(&mut pos, 4)?) as usize;
                take(&mut pos, n)?;
            }
            b'B' => {
                let n = le(take(&mut pos, 4)?) as usize;
                take(&mut pos, n)?;
            }
            b'C' => {
                let n = take(&mut pos, 1)?[0] as usize;
                take(&mut pos, n)?;
            }
            0x8e | 0x96 => {
                let n = le(take(&mut pos, 8)?) as usize;
                take(&mut pos, n)?;
            }
            // Line arguments that are not names.
            b'F' | b'I' | b'L' | b'P' => drop(line(&mut pos)?),
            // Extension registry and out-of-band buffers: never in a weights-only checkpoint.
            0x82..=0x84 | 0x97 | 0x98 => {
                return Err(NnError::UnsafePickle {
                    path: path.to_path_buf(),
                    global: format!("<pickle opcode 0x{op:02x}>"),
                })
            }
            // Argument-less opcodes.
            b'('
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b'Q'
            | b'R'
            | b'a'
            | b'b'
            | b'd'
            | b'}'
            | b'e'
            | b'l'
            | b']'
            | b'o'
            | b's'
            | b't'
            | b')'
            | b'u'
            | 0x81
            | 0x85..=0x89
            | 0x8f
            | 0x90..=0x92 => {}
            other => {
                return Err(bad(format!(
                    "unknown opcode 0x{other:02x} at byte {}",
                    pos - 1
                )))
            }
        }
        if let Some(v) = push {
            recent.push(v);
            if recent.len() > 2 {
                recent.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.pkl")
    }

    #[test]
    fn protocol2_global_os_system_is_refused() {
        let pkl = b"\x80\x02cos\nsystem\nq\x00X\x0b\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
        let err = scan(p(), pkl).unwrap_err();
        assert!(
            matches!(err, NnError::UnsafePickle { ref global, .. } if global == "os.system"),
            "{err}"
        );
    }

    #[test]
    fn protocol4_stack_global_is_checked() {
        // STACK_GLOBAL of "builtins" "eval", names memoized.
        let pkl = b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.";
        let err = scan(p(), pkl).unwrap_err();
        assert!(
            matches!(err, NnError::UnsafePickle { ref global, .. } if global == "builtins.eval"),
            "{err}"
        );
        // The same through BINGET of memoized strings.
        let pkl = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93.";
        let err = scan(p(), pkl).unwrap_err();
        assert!(
            matches!(err, NnError::UnsafePickle { ref global, .. } if global == "os.system"),
            "{err}"
        );
        // OrderedDict is fine.
        let pkl = b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93)R.";
        assert_eq!(scan(p(), pkl).unwrap(), pkl.len());
    }

    #[test]
    fn computed_stack_global_is_refused() {
        let pkl = b"\x80\x04K\x01K\x02\x93.";
        assert!(matches!(scan(p(), pkl), Err(NnError::UnsafePickle { .. })));
    }

    #[test]
    fn protocol0_legacy_file_is_scanned_past_its_header() {
        let mut f = b"L119547037146038801333356L\n.I1001\n.(dS'little_endian'\nI01\ns.".to_vec();
        f.extend(b"cos\nsystem\n(S'x'\ntR.");
        f.extend(b"(lp0\n.");
        assert_eq!(container(&f), Container::Legacy);
        let err = check_bytes(p(), &f).unwrap_err();
        assert!(
            matches!(err, NnError::UnsafePickle { ref global, .. } if global == "os.system"),
            "{err}"
        );
    }

    #[test]
    fn truncated_pickle_is_an_error() {
        let pkl = b"\x80\x02X\x10\x00\x00\x00abc";
        assert!(matches!(scan(p(), pkl), Err(NnError::Format { .. })));
        assert!(matches!(
            scan(p(), b"\x80\x02}"),
            Err(NnError::Format { .. })
        ));
    }
}
