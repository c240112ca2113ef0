//! Results of training runs read back and compared: runs grouped by model and recipe (seeds
//! averaged), mean ± sample std, and the SE-vs-baseline verdict against run-to-run noise — what
//! `effcnn compare --runs` and `effcnn experiment` report.

use std::path::PathBuf;

use crate::error::{Result, TrainError};
use crate::run_folder::RunFolder;

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// A model and its SE twin compared over seeds: means ± std, the difference, its cost, and
/// whether the difference stands out of the run-to-run noise (more than twice the standard error
/// of the difference of the two means). Each side: (model, params, MACs, accuracies).
pub fn se_pair_verdict(base: (&str, u64, u64, &[f64]), se: (&str, u64, u64, &[f64])) -> String {
    let (mb, sb) = mean_std(base.3);
    let (ms, ss) = mean_std(se.3);
    let diff = ms - mb;
    let stderr = (sb * sb / base.3.len() as f64 + ss * ss / se.3.len() as f64).sqrt();
    let verdict = if se.3.len() < 2 || base.3.len() < 2 {
        "one seed each cannot separate the difference from run-to-run noise".to_string()
    } else if diff.abs() > 2.0 * stderr {
        format!(
            "the difference is more than twice its standard error ({:.2} points): SE {} here",
            stderr * 100.0,
            if diff > 0.0 { "helped" } else { "hurt" }
        )
    } else {
        format!(
            "the difference is within twice its standard error ({:.2} points): not distinguishable from noise with these seeds",
            stderr * 100.0
        )
    };
    format!(
        "{} → {}: {:.2}% ± {:.2} vs {:.2}% ± {:.2} ({:+.2} points) for +{} params ({:+.1}%) and +{:.3} M MACs; {verdict}.",
        base.0,
        se.0,
        mb * 100.0,
        sb * 100.0,
        ms * 100.0,
        ss * 100.0,
        diff * 100.0,
        se.1 as i64 - base.1 as i64,
        100.0 * (se.1 as f64 / base.1 as f64 - 1.0),
        (se.2 as f64 - base.2 as f64) / 1e6
    )
}

/// The finished runs of one model with one recipe (they differ only in the seed).
#[derive(Debug, Clone)]
pub struct RunGroup {
    pub model: String,
    pub family: String,
    pub profile: String,
    /// Width multiplier as trained (`--width`, or a fixed-width entry's own).
    pub width: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub data: String,
    /// Parameters and MACs of the model as trained (from the runs' summaries).
    pub params: u64,
    pub macs: u64,
    /// Final test accuracy (fraction) and training wall seconds of each run, by seed.
    pub seeds: Vec<u64>,
    pub accs: Vec<f64>,
    pub wall_seconds: Vec<f64>,
    pub device: String,
}

impl RunGroup {
    pub fn mean_std(&self) -> (f64, f64) {
        mean_std(&self.accs)
    }
}

/// The finished runs under `roots` (run folders or folders holding them), grouped by model and
/// recipe, in the order found; and the folders of the unfinished runs, left out.
pub fn run_groups(roots: &[PathBuf]) -> Result<(Vec<RunGroup>, Vec<PathBuf>)> {
    let mut unfinished = Vec::new();
    let mut groups: Vec<(serde_json::Value, RunGroup)> = Vec::new();
    for root in roots {
        let folders = RunFolder::find(root)?;
        for f in folders {
            let Some(sum) = f.finished() else {
                unfinished.push(f.dir.clone());
                continue;
            };
            let key = f.recipe(&["seed", "device"])?;
            let c = &f.config;
            let i = match groups.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let family = effcnn_arch::entry(&c.model)?.family.to_string();
                    // The width as trained: the multiplier, or a fixed-width entry's own.
                    let classes = c.resolved.as_ref().map_or(10, |r| r.classes.len());
                    let width = effcnn_arch::resolve(
                        &c.model,
                        &c.arch_options(c.image_size.map(|s| s as usize), classes),
                    )?
                    .meta
                    .width;
                    groups.push((
                        key,
                        RunGroup {
                            model: c.model.clone(),
                            family,
                            profile: c.profile.name().to_string(),
                            width,
                            epochs: c.epochs,
                            batch_size: c.batch_size,
                            data: c.data.clone(),
                            params: sum.params,
                            macs: sum.macs,
                            seeds: Vec::new(),
                            accs: Vec::new(),
                            wall_seconds: Vec::new(),
                            device: sum.device.clone(),
                        },
                    ));
                    groups.len() - 1
                }
            };
            let g = &mut groups[i].1;
            if g.seeds.contains(&c.seed) {
                return Err(TrainError::format(
                    &f.dir,
                    format!(
                        "a second run of {} with seed {} and the same recipe",
                        c.model, c.seed
                    ),
                ));
            }
            g.seeds.push(c.seed);
            g.accs.push(sum.final_test_accuracy);
            g.wall_seconds.push(sum.wall_seconds);
        }
    }
    Ok((groups.into_iter().map(|(_, g)| g).collect(), unfinished))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_known() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert_eq!(mean_std(&[0.7]), (0.7, 0.0));
    }

    #[test]
    fn se_verdict_against_the_standard_error_of_the_difference() {
        // Means 81 vs 85.5, stds √2 and √0.5 points: standard error √1.25 = 1.12 points.
        let helped = se_pair_verdict(
            ("resnet20", 100, 1000, &[0.80, 0.82]),
            ("se_resnet20", 110, 1001, &[0.85, 0.86]),
        );
        assert!(
            helped.contains("81.00% ± 1.41 vs 85.50% ± 0.71 (+4.50 points)"),
            "{helped}"
        );
        assert!(helped.contains("+10 params (+10.0%)"), "{helped}");
        assert!(helped.contains("(1.12 points): SE helped here"), "{helped}");
        let noise = se_pair_verdict(
            ("resnet20", 100, 1000, &[0.80, 0.82]),
            ("se_resnet20", 110, 1001, &[0.81, 0.815]),
        );
        assert!(noise.contains("within twice its standard error"), "{noise}");
        let one = se_pair_verdict(("a", 1, 1, &[0.5]), ("se_a", 1, 1, &[0.9]));
        assert!(one.contains("one seed each"), "{one}");
    }
}
