//! Chunked data parallelism over `std::thread::scope`.

use crate::error::{DataError, Result};

/// Number of worker threads to use for `n` independent items.
pub(crate) fn workers(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.min(n).max(1)
}

/// Calls `f(i, &items[i], out_i)` for every item, where `out_i` is the `i`-th `item_len`-sized
/// slice of `out`, spreading contiguous chunks of items over the available cores.
///
/// Each worker stops at its first error; of all errors the one with the lowest item index is
/// returned, so the result does not depend on thread timing.
pub(crate) fn fill<T, F>(items: &[T], out: &mut [u8], item_len: usize, f: F) -> Result<()>
where
    T: Sync,
    F: Fn(usize, &T, &mut [u8]) -> Result<()> + Sync,
{
    debug_assert_eq!(out.len(), items.len() * item_len);
    if items.is_empty() {
        return Ok(());
    }
    let per = items.len().div_ceil(workers(items.len()));
    let f = &f;
    let mut first: Option<(usize, DataError)> = None;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .zip(out.chunks_mut(per * item_len.max(1)))
            .enumerate()
            .map(|(c, (chunk, dst))| {
                scope.spawn(move || -> Option<(usize, DataError)> {
                    for (k, item) in chunk.iter().enumerate() {
                        let i = c * per + k;
                        let slot = &mut dst[k * item_len..(k + 1) * item_len];
                        if let Err(e) = f(i, item, slot) {
                            return Some((i, e));
                        }
                    }
                    None
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(Some((i, e))) => {
                    if first.as_ref().is_none_or(|(j, _)| i < *j) {
                        first = Some((i, e));
                    }
                }
                Ok(None) => {}
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    match first {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}
