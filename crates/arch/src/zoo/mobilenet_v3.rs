//! (family spec to be written)

use crate::zoo::Entry;

pub fn entries() -> Vec<Entry> {
    vec![]
}
