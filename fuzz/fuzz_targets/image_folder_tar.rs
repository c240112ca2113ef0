//! Image-folder indexing from an archive: a `.tar` built from the fuzz input (entry names from
//! a small set of layout-relevant paths, contents from the input) is loaded as `--data FILE`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Entry {
    split: u8,
    class: u8,
    name: u8,
    dir: bool,
    data: Vec<u8>,
}

const SPLITS: [&str; 6] = ["train", "test", "val", "other", "root/train", "root/test"];
const CLASSES: [&str; 5] = ["a", "b", ".hidden", "a/nested", ""];
const NAMES: [&str; 6] = ["0.png", "1.jpg", "2.JPEG", "notes.txt", ".DS_Store", "x"];
/// A valid 1×1 RGB PNG, so that decoding gets past the signature.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

fuzz_target!(|input: (Vec<Entry>, Option<u8>)| {
    let (entries, size) = input;
    let mut b = tar::Builder::new(Vec::new());
    for e in entries.iter().take(16) {
        let split = SPLITS[e.split as usize % SPLITS.len()];
        let class = CLASSES[e.class as usize % CLASSES.len()];
        let mut h = tar::Header::new_gnu();
        let path = if e.dir {
            h.set_entry_type(tar::EntryType::Directory);
            format!("{split}/{class}/")
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            format!("{split}/{class}/{}", NAMES[e.name as usize % NAMES.len()])
        };
        // A data block starting with 0 is replaced by the valid PNG (then the rest appended).
        let body: Vec<u8> = match e.data.first() {
            Some(0) => PNG.iter().chain(&e.data[1..]).copied().collect(),
            _ => e.data.clone(),
        };
        let body = if e.dir { Vec::new() } else { body };
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        if h.set_path(&path).is_err() {
            continue;
        }
        h.set_cksum();
        b.append(&h, body.as_slice()).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    let path = std::env::temp_dir().join(format!("effcnn-fuzz-imgtar-{}.tar", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let opts = effcnn_data::LoadOptions {
        image_size: size.map(|s| u32::from(s % 16)),
        seed: 0,
    };
    if let Ok(splits) = effcnn_data::load(path.to_str().unwrap(), &opts) {
        assert!(!splits.train.is_empty());
        assert_eq!(splits.train.classes, splits.test.classes);
    }
});
