//! Model spec and flags: `effcnn_arch::resolve` with fuzzed names, width, depth, resolution and
//! classes, then the cost analysis `effcnn show` runs on whatever resolves.
#![no_main]

use arbitrary::Arbitrary;
use effcnn_arch::{cost, resolve, Options, Profile};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Spec {
    /// Index into the zoo, or (when out of range) `name` as typed.
    model: u8,
    name: String,
    width: Option<f64>,
    depth: Option<f64>,
    resolution: Option<u16>,
    classes: Option<u16>,
    cifar: bool,
    dropout: Option<f64>,
}

fuzz_target!(|s: Spec| {
    let zoo = effcnn_arch::entries();
    let name = match zoo.get(s.model as usize) {
        Some(e) => e.name.to_string(),
        None => s.name.clone(),
    };
    let opts = Options {
        width: s.width,
        depth: s.depth,
        resolution: s.resolution.map(usize::from),
        classes: s.classes.map(usize::from),
        profile: if s.cifar {
            Profile::Cifar
        } else {
            Profile::Imagenet
        },
        dropout: s.dropout,
    };
    if let Ok(g) = resolve(&name, &opts) {
        let c = cost::analyze(&g);
        assert!(c.params > 0);
    }
});
