//! Progress display: a bar per epoch on a terminal, one line per epoch otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run_folder::EpochMetrics;

/// How training reports progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, otherwise one line per epoch.
    #[default]
    Auto,
    /// Always a bar (drawn only on a terminal).
    Bar,
    /// One summary line per epoch.
    Lines,
    /// Nothing.
    Quiet,
}

pub(crate) struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode, epochs: usize) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        };
        Progress {
            mode,
            bar: None,
            epochs,
        }
    }

    pub(crate) fn start_epoch(&mut self, epoch: usize, steps: usize) {
        if self.mode != ProgressMode::Bar {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:28}] {pos}/{len} {msg} (ETA {eta}, {elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
    }

    pub(crate) fn step(&self, loss: f64, acc: f64, img_per_s: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {loss:.4} acc {:.2}% {img_per_s:.0} img/s",
                acc * 100.0
            ));
            bar.inc(1);
        }
    }

    pub(crate) fn evaluating(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message("evaluating…");
        }
    }

    pub(crate) fn end_epoch(&mut self, m: &EpochMetrics) {
        let line = format!(
            "epoch {}/{}  loss {:.4}  train {:.2}%  test {:.2}%{}  lr {:.5}  {:.0} img/s  {:.1} s",
            m.epoch + 1,
            self.epochs,
            m.loss,
            m.train_acc * 100.0,
            m.test_acc * 100.0,
            m.val_acc
                .map(|v| format!("  val {:.2}%", v * 100.0))
                .unwrap_or_default(),
            m.lr,
            m.img_per_s,
            m.seconds
        );
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("{line}");
            }
            ProgressMode::Lines => eprintln!("{line}"),
            _ => {}
        }
    }

    pub(crate) fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }

    pub(crate) fn note(&self, s: &str) {
        if self.mode != ProgressMode::Quiet {
            match &self.bar {
                Some(bar) => bar.println(s),
                None => eprintln!("{s}"),
            }
        }
    }
}
