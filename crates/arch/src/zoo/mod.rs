//! The model zoo: every architecture defined once, as data, resolved into a [`Graph`] for a given
//! width, depth, resolution, number of classes and profile.

use crate::error::ArchError;
use crate::graph::{Graph, Profile};

pub mod cifar_resnet;
pub mod efficientnet;
pub mod mobilenet_v1;
pub mod mobilenet_v2;
pub mod mobilenet_v3;
pub mod resnet;
pub mod shufflenet_v1;
pub mod shufflenet_v2;
pub mod study;

/// ImageNet mean/std in [0,1] units (torchvision and most timm weights).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// (x − 127)/128 in 0..255 units, i.e. mean 127/255 and std 128/255 (TF EfficientNet-Lite weights).
pub const TF127_MEAN: [f32; 3] = [127.0 / 255.0; 3];
pub const TF127_STD: [f32; 3] = [128.0 / 255.0; 3];

/// What a user can vary when resolving a zoo entry. `None` means the entry's default.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub width: Option<f64>,
    pub depth: Option<f64>,
    pub resolution: Option<usize>,
    pub classes: Option<usize>,
    pub profile: Profile,
    pub dropout: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: None,
            depth: None,
            resolution: None,
            classes: None,
            profile: Profile::Imagenet,
            dropout: None,
        }
    }
}

impl Options {
    pub fn imagenet() -> Self {
        Options::default()
    }
    pub fn cifar() -> Self {
        Options {
            profile: Profile::Cifar,
            ..Options::default()
        }
    }
    pub fn width(mut self, w: f64) -> Self {
        self.width = Some(w);
        self
    }
    pub fn resolution(mut self, r: usize) -> Self {
        self.resolution = Some(r);
        self
    }
    pub fn classes(mut self, c: usize) -> Self {
        self.classes = Some(c);
        self
    }
    /// Resolution used when none is given: the entry's own for ImageNet, 32 for CIFAR.
    pub fn resolution_or(&self, imagenet_default: usize) -> usize {
        self.resolution.unwrap_or(match self.profile {
            Profile::Imagenet => imagenet_default,
            Profile::Cifar => 32,
        })
    }
    /// Classes used when none is given: 1000 for ImageNet, 10 for CIFAR.
    pub fn classes_or_default(&self) -> usize {
        self.classes.unwrap_or(match self.profile {
            Profile::Imagenet => 1000,
            Profile::Cifar => 10,
        })
    }
}

/// A published accuracy with its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reported {
    pub top1: f64,
    pub source: &'static str,
}

/// One zoo entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: &'static str,
    pub family: &'static str,
    pub paper: &'static str,
    /// ImageNet top-1 (%) at the default width and resolution, where published.
    pub reported: Option<Reported>,
    /// CIFAR-native study networks have no ImageNet profile.
    pub cifar_native: bool,
    pub build: fn(&Options) -> Result<Graph, ArchError>,
    /// Whether the width multiplier may be changed.
    pub has_width: bool,
}

/// Every zoo entry, in display order.
pub fn entries() -> Vec<Entry> {
    let mut v = Vec::new();
    v.extend(study::entries());
    v.extend(mobilenet_v1::entries());
    v.extend(mobilenet_v2::entries());
    v.extend(mobilenet_v3::entries());
    v.extend(shufflenet_v1::entries());
    v.extend(shufflenet_v2::entries());
    v.extend(efficientnet::entries());
    v.extend(resnet::entries());
    v.extend(cifar_resnet::entries());
    v
}

/// Look a zoo entry up by name.
/// The zoo model that `name` adds squeeze-and-excitation to (`se_resnet20` → `resnet20`,
/// `legacy_se_resnet50` → `resnet50`): the name without its SE prefix, when that model exists,
/// has no SE blocks, and `name` has them.
pub fn se_baseline(name: &str) -> Option<&'static str> {
    let rest = name
        .strip_prefix("se_")
        .or_else(|| name.strip_prefix("legacy_se_"))?;
    let base = entries().into_iter().find(|e| e.name == rest)?;
    let has_se = |n: &str| {
        let o = Options::default();
        resolve(n, &o).is_ok_and(|g| g.blocks.iter().any(|b| b.kind.se().is_some()))
    };
    (has_se(name) && !has_se(base.name)).then_some(base.name)
}

pub fn entry(name: &str) -> Result<Entry, ArchError> {
    let all = entries();
    if let Some(e) = all.iter().find(|e| e.name == name) {
        return Ok(e.clone());
    }
    let mut scored: Vec<(usize, &str)> = all
        .iter()
        .map(|e| (edit_distance(name, e.name), e.name))
        .filter(|(d, n)| *d <= 3.max(name.len() / 3) || n.contains(name))
        .collect();
    scored.sort();
    Err(ArchError::UnknownModel {
        name: name.to_string(),
        suggestions: scored.iter().take(3).map(|(_, n)| n.to_string()).collect(),
    })
}

/// Largest `--width` / `--depth` multiplier accepted (the papers go up to 2–3.1).
pub const MAX_MULTIPLIER: f64 = 8.0;
/// Largest `--resolution` accepted.
pub const MAX_RESOLUTION: usize = 4096;
/// Largest `--classes` accepted.
pub const MAX_CLASSES: usize = 100_000;

/// Resolve a zoo entry into a concrete graph.
///
/// Options are bounded (see [`MAX_MULTIPLIER`], [`MAX_RESOLUTION`], [`MAX_CLASSES`]) so that
/// every channel count, parameter count and MAC total of every zoo model fits in 64 bits.
pub fn resolve(name: &str, opts: &Options) -> Result<Graph, ArchError> {
    let e = entry(name)?;
    if let Some(w) = opts.width {
        if !(w.is_finite() && w > 0.0) {
            return Err(ArchError::BadOption(format!(
                "--width must be a positive number, got {w}"
            )));
        }
        if w > MAX_MULTIPLIER {
            return Err(ArchError::BadOption(format!(
                "--width {w} is larger than the supported {MAX_MULTIPLIER}"
            )));
        }
        if !e.has_width && (w - 1.0).abs() > 1e-12 {
            return Err(ArchError::BadOption(format!(
                "{name} has a fixed width; pick a sibling entry instead of --width"
            )));
        }
    }
    if let Some(d) = opts.depth {
        if !(d.is_finite() && d > 0.0) {
            return Err(ArchError::BadOption(format!(
                "--depth must be a positive number, got {d}"
            )));
        }
        if d > MAX_MULTIPLIER {
            return Err(ArchError::BadOption(format!(
                "--depth {d} is larger than the supported {MAX_MULTIPLIER}"
            )));
        }
    }
    if opts.resolution == Some(0) {
        return Err(ArchError::BadOption(
            "--resolution must be at least 1".into(),
        ));
    }
    if let Some(r) = opts.resolution.filter(|&r| r > MAX_RESOLUTION) {
        return Err(ArchError::BadOption(format!(
            "--resolution {r} is larger than the supported {MAX_RESOLUTION}"
        )));
    }
    if opts.classes == Some(0) {
        return Err(ArchError::BadOption("--classes must be at least 1".into()));
    }
    if let Some(c) = opts.classes.filter(|&c| c > MAX_CLASSES) {
        return Err(ArchError::BadOption(format!(
            "--classes {c} is larger than the supported {MAX_CLASSES}"
        )));
    }
    if let Some(p) = opts.dropout {
        if !(0.0..1.0).contains(&p) {
            return Err(ArchError::BadOption(format!(
                "--dropout must be in [0, 1), got {p}"
            )));
        }
    }
    (e.build)(opts)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}
