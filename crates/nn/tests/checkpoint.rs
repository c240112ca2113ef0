//! Checkpoint I/O without shared data: safetensors round trips, small PyTorch checkpoints built
//! here byte by byte (legacy pre-1.6 and ZIP containers), strict/partial loading errors, layout
//! detection, and hostile pickles.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use effcnn_arch::{Layout, Options};
use effcnn_nn::checkpoint::{model_tensors, write_safetensors};
use effcnn_nn::parity::{fill, rel_l2};
use effcnn_nn::{
    apply_tensors, convert, load_weights, read_checkpoint, save_safetensors, EffNet, InitConfig,
    NnError, RawTensor, TensorMap,
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("effcnn-nn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small(classes: usize, seed: u64) -> EffNet {
    let opts = Options::cifar().width(0.35).classes(classes);
    EffNet::from_zoo(
        "mobilenet_v2",
        &opts,
        &effcnn_nn::cpu(),
        InitConfig { seed },
    )
    .unwrap()
}

/// Give BN running statistics non-trivial values so a round trip is a real test.
fn perturb(model: &mut EffNet, seed: u64) {
    let mut map = model_tensors(model, Layout::Canonical).unwrap();
    for (i, t) in map.values_mut().enumerate() {
        let n = t.data.len();
        let noise = fill(seed + i as u64, 0.05, 0.0, n);
        for (v, e) in t.data.iter_mut().zip(noise) {
            *v += e;
        }
    }
    apply_tensors(model, &map, Some(Layout::Canonical), false).unwrap();
}

fn logits(model: &EffNet) -> Vec<f32> {
    let x = Tensor::<4>::from_data(
        TensorData::new(fill(0, 1.0, 0.0, 2 * 3 * 32 * 32), [2, 3, 32, 32]),
        &effcnn_nn::cpu(),
    );
    model
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap()
}

#[test]
fn safetensors_round_trip_in_every_layout() {
    let dir = tmpdir("st");
    let mut a = small(10, 1);
    perturb(&mut a, 100);
    let want = logits(&a);
    for layout in [None, Some(Layout::Torchvision), Some(Layout::Timm)] {
        let path = dir.join("m.safetensors");
        save_safetensors(&a, &path, layout).unwrap();
        let mut b = small(10, 2);
        assert!(rel_l2(&logits(&b), &want) > 1e-3);
        let report = load_weights(&mut b, &path, None, false).unwrap();
        assert_eq!(
            report.loaded,
            a.graph().tensor_keys(Layout::Canonical).len()
        );
        assert_eq!(logits(&b), want, "layout {layout:?}");
        if layout == Some(Layout::Torchvision) {
            assert_eq!(report.layout, Layout::Torchvision);
        }
    }
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- A tiny PyTorch checkpoint writer (protocol-2 pickles, as torch.save writes them). ---

struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, v: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((v.len() as u32).to_le_bytes());
        self.0.extend(v.as_bytes());
        self
    }
    fn int(&mut self, v: usize) -> &mut Self {
        self.0.push(b'J');
        self.0.extend((v as i32).to_le_bytes());
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
        self
    }
    fn done(&mut self) -> Vec<u8> {
        self.0.push(b'.');
        std::mem::take(&mut self.0)
    }
}

/// One tensor of a state dict to write: key, shape, values (f32) or an int64 scalar.
enum Entry {
    F32(Vec<usize>, Vec<f32>),
    I64(i64),
}

/// The state-dict pickle; storages are named "0", "1", … in order.
fn state_dict_pickle(entries: &[(String, Entry)], extra: Option<&[u8]>) -> Vec<u8> {
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").op(b")R(");
    for (i, (key, e)) in entries.iter().enumerate() {
        let (storage, shape, numel) = match e {
            Entry::F32(shape, d) => ("FloatStorage", shape.clone(), d.len()),
            Entry::I64(_) => ("LongStorage", vec![], 1),
        };
        p.s(key)
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"(");
        p.op(b"(")
            .s("storage")
            .global("torch", storage)
            .s(&i.to_string())
            .s("cpu")
            .int(numel)
            .op(b"tQ");
        p.int(0).op(b"(");
        for &d in &shape {
            p.int(d);
        }
        p.op(b"t(");
        let mut stride = 1;
        let mut strides = vec![0; shape.len()];
        for (j, &d) in shape.iter().enumerate().rev() {
            strides[j] = stride;
            stride *= d;
        }
        for s in strides {
            p.int(s);
        }
        p.op(b"t\x89")
            .global("collections", "OrderedDict")
            .op(b")R")
            .op(b"tR");
    }
    if let Some(extra) = extra {
        // A hostile payload stored under one more key.
        p.s("payload").op(extra);
    }
    p.op(b"u").done()
}

fn storage_bytes(e: &Entry) -> Vec<u8> {
    match e {
        Entry::F32(_, d) => d.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Entry::I64(v) => v.to_le_bytes().to_vec(),
    }
}

fn write_legacy(path: &Path, entries: &[(String, Entry)], extra: Option<&[u8]>) {
    let mut out = Vec::new();
    out.extend(
        Pickle::new()
            .op(b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19")
            .done(),
    );
    out.extend(Pickle::new().op(b"M\xe9\x03").done());
    out.extend(
        Pickle::new()
            .op(b"}(")
            .s("protocol_version")
            .op(b"M\xe9\x03")
            .s("little_endian")
            .op(b"\x88")
            .s("type_sizes")
            .op(b"}(")
            .s("short")
            .int(2)
            .s("int")
            .int(4)
            .s("long")
            .int(4)
            .op(b"uu")
            .done(),
    );
    out.extend(state_dict_pickle(entries, extra));
    let mut keys = Pickle::new();
    keys.op(b"](");
    for i in 0..entries.len() {
        keys.s(&i.to_string());
    }
    out.extend(keys.op(b"e").done());
    for (_, e) in entries {
        let n = match e {
            Entry::F32(_, d) => d.len() as i64,
            Entry::I64(_) => 1,
        };
        out.extend(n.to_le_bytes());
        out.extend(storage_bytes(e));
    }
    std::fs::write(path, out).unwrap();
}

fn write_zip(path: &Path, entries: &[(String, Entry)], extra: Option<&[u8]>) {
    let file = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(&state_dict_pickle(entries, extra)).unwrap();
    z.start_file("archive/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for (i, (_, e)) in entries.iter().enumerate() {
        z.start_file(format!("archive/data/{i}"), opts).unwrap();
        z.write_all(&storage_bytes(e)).unwrap();
    }
    z.start_file("archive/version", opts).unwrap();
    z.write_all(b"3\n").unwrap();
    z.finish().unwrap();
}

/// The model's tensors under `layout`, plus a `num_batches_tracked` per batch norm.
fn entries_of(model: &EffNet, layout: Layout) -> Vec<(String, Entry)> {
    let map = model_tensors(model, layout).unwrap();
    let mut out = Vec::new();
    for (k, t) in map {
        if let Some(bn) = k.strip_suffix(".running_var") {
            out.push((format!("{bn}.num_batches_tracked"), Entry::I64(7)));
        }
        out.push((k, Entry::F32(t.shape, t.data)));
    }
    out
}

#[test]
fn pth_legacy_and_zip_load_and_convert() {
    let dir = tmpdir("pth");
    let mut a = small(10, 3);
    perturb(&mut a, 200);
    let want = logits(&a);
    let entries = entries_of(&a, Layout::Torchvision);
    let legacy = dir.join("legacy.pth");
    let zipped = dir.join("zip.pth");
    write_legacy(&legacy, &entries, None);
    write_zip(&zipped, &entries, None);
    for path in [&legacy, &zipped] {
        let mut b = small(10, 4);
        let report = load_weights(&mut b, path, None, false)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(report.layout, Layout::Torchvision);
        assert_eq!(report.ignored, a.bns.len());
        assert_eq!(logits(&b), want, "{}", path.display());
    }
    // .pth → .safetensors with canonical keys, then load that.
    let st = dir.join("converted.safetensors");
    let rep = convert(&legacy, &st, Some(a.graph())).unwrap();
    assert_eq!(rep.layout, Some(Layout::Torchvision));
    let map = read_checkpoint(&st).unwrap();
    assert!(map.contains_key("conv_stem.weight"), "canonical keys");
    let mut c = small(10, 5);
    let report = load_weights(&mut c, &st, Some(Layout::Canonical), false).unwrap();
    assert_eq!(report.layout, Layout::Canonical);
    assert_eq!(logits(&c), want);
    // Keys kept as they are.
    let kept = dir.join("kept.safetensors");
    let rep = convert(&zipped, &kept, None).unwrap();
    assert_eq!(rep.skipped.len(), a.bns.len());
    assert!(read_checkpoint(&kept)
        .unwrap()
        .contains_key("features.0.0.weight"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_pickles_are_refused() {
    let dir = tmpdir("hostile");
    let a = small(10, 6);
    let entries = entries_of(&a, Layout::Torchvision);
    // os.system("…") next to the real weights, in both containers and as a bare pickle.
    let payload = b"cos\nsystem\n(X\x0a\x00\x00\x00touch pwndtR";
    let cases = [
        ("legacy.pth", 0),
        ("zip.pth", 1),
        ("plain.pkl", 2),
        ("stack_global.pth", 3),
    ];
    for (name, kind) in cases {
        let path = dir.join(name);
        match kind {
            0 => write_legacy(&path, &entries, Some(payload)),
            1 => write_zip(&path, &entries, Some(payload)),
            2 => std::fs::write(&path, state_dict_pickle(&[], Some(payload))).unwrap(),
            _ => {
                // Protocol 4: STACK_GLOBAL builtins.eval.
                let pk =
                    b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x051+1\x94\x85R.";
                std::fs::write(&path, pk).unwrap();
            }
        }
        let mut b = small(10, 7);
        let err = load_weights(&mut b, &path, None, true).unwrap_err();
        match &err {
            NnError::UnsafePickle { global, .. } => {
                assert!(
                    global == "os.system" || global == "builtins.eval",
                    "{global}"
                )
            }
            other => panic!("{name}: expected UnsafePickle, got {other}"),
        }
        eprintln!("{name}: {err}");
        assert!(!dir.join("pwnd").exists() && !Path::new("pwnd").exists());
    }
    // For the record: burn-store's reader by itself never runs the payload either (a GLOBAL
    // only names a class, an unknown REDUCE becomes an opaque value), but it accepts the file
    // and returns the tensors beside the payload. The refusal above is effcnn's guard.
    let raw = burn_store::pytorch_reader::PytorchReader::new(dir.join("legacy.pth")).unwrap();
    assert_eq!(raw.len(), entries.len());
    assert!(raw.get("payload").is_none());
    assert!(!dir.join("pwnd").exists() && !Path::new("pwnd").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatches_are_listed_and_partial_loading_works() {
    let a = small(10, 8);
    let mut map = model_tensors(&a, Layout::Torchvision).unwrap();
    map.remove("features.0.0.weight");
    map.insert("extra.weight".into(), RawTensor::new(vec![1], vec![0.0]));
    let w = map.get_mut("features.0.1.weight").unwrap();
    w.shape = vec![w.data.len() - 1];
    w.data.pop();
    let mut b = small(10, 9);
    let err = apply_tensors(&mut b, &map, None, false).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("1 missing: features.0.0.weight"), "{msg}");
    assert!(msg.contains("1 unexpected: extra.weight"), "{msg}");
    assert!(msg.contains("features.0.1.weight: expected"), "{msg}");
    let report = apply_tensors(&mut b, &map, None, true).unwrap();
    assert_eq!(
        report.skipped.missing.len() + report.skipped.mismatched.len(),
        2
    );
    assert_eq!(
        report.loaded,
        a.graph().tensor_keys(Layout::Torchvision).len() - 2
    );

    // Fine-tuning: a 100-class checkpoint into a 10-class model.
    let big = small(100, 10);
    let map = model_tensors(&big, Layout::Canonical).unwrap();
    let mut c = small(10, 11);
    let err = apply_tensors(&mut c, &map, None, false).unwrap_err();
    assert!(err.to_string().contains("classifier.weight"), "{err}");
    let report = apply_tensors(&mut c, &map, None, true).unwrap();
    assert_eq!(
        report.skipped.mismatched.len(),
        2,
        "classifier weight and bias"
    );

    // Many missing keys: the message lists a few and the count.
    let mut empty = TensorMap::new();
    empty.insert(
        "features.0.0.weight".into(),
        map["conv_stem.weight"].clone(),
    );
    let err = apply_tensors(&mut c, &empty, None, false).unwrap_err();
    assert!(err.to_string().contains("in all)"), "{err}");
}

#[test]
fn layout_detection_refuses_ties() {
    let a = small(10, 12);
    let tv = model_tensors(&a, Layout::Torchvision).unwrap();
    let canon = model_tensors(&a, Layout::Canonical).unwrap();
    // Stem in torchvision names, head in canonical (= timm) names: equally good matches.
    let mut map = TensorMap::new();
    for (k, t) in tv.iter().filter(|(k, _)| k.starts_with("features.0.")) {
        map.insert(k.clone(), t.clone());
    }
    for (k, t) in canon
        .iter()
        .filter(|(k, _)| k.starts_with("conv_head") || k.starts_with("bn2."))
    {
        map.insert(k.clone(), t.clone());
    }
    let mut b = small(10, 13);
    let err = apply_tensors(&mut b, &map, None, true).unwrap_err();
    assert!(
        matches!(err, NnError::AmbiguousLayout { .. }),
        "expected a tie, got {err}"
    );
    assert!(err.to_string().contains("--layout"));
    // An explicit layout resolves it.
    apply_tensors(&mut b, &map, Some(Layout::Torchvision), true).unwrap();
    // A layout the model has no names for.
    let err = apply_tensors(&mut b, &map, Some(Layout::Lukemelas), true).unwrap_err();
    assert!(matches!(err, NnError::NoSuchLayout { .. }), "{err}");
    // A DataParallel prefix is recognised.
    let wrapped: TensorMap = tv
        .iter()
        .map(|(k, t)| (format!("module.{k}"), t.clone()))
        .collect();
    let report = apply_tensors(&mut b, &wrapped, None, false).unwrap();
    assert_eq!(report.prefix, "module.");
}

#[test]
fn unreadable_files_are_errors() {
    let dir = tmpdir("bad");
    let p = dir.join("junk.pth");
    std::fs::write(&p, b"not a checkpoint at all").unwrap();
    let mut b = small(10, 14);
    assert!(load_weights(&mut b, &p, None, false).is_err());
    let p = dir.join("missing.safetensors");
    assert!(matches!(
        load_weights(&mut b, &p, None, false),
        Err(NnError::Io { .. })
    ));
    // A truncated safetensors file.
    let good = dir.join("good.safetensors");
    let mut m = TensorMap::new();
    m.insert("a".into(), RawTensor::new(vec![4], vec![1.0; 4]));
    write_safetensors(&m, &good, None).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() - 3);
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, bytes).unwrap();
    assert!(read_checkpoint(&bad).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
