//! Where a model runs: `cpu` (burn's flex backend, always built) or `cuda[:N]` (burn's CUDA
//! backend, built with the `cuda` feature).
//!
//! burn reports a missing driver or GPU by panicking on the first tensor operation.
//! [`ComputeDevice::open`] turns that into a [`DeviceError`]: it loads the CUDA driver and checks
//! the GPU index itself, then runs one small operation on the device with the panic caught.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// The command that builds effcnn with CUDA support.
pub const CUDA_BUILD: &str = "cargo build -p effcnn --features cuda";

/// A compute device, as `--device` spells it: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ComputeDevice {
    /// burn's flex backend (pure-Rust CPU).
    #[default]
    Cpu,
    /// burn's CUDA backend on the GPU with this index (0 is the first).
    Cuda(usize),
}

/// Why a device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not a device name.
    #[error("unknown device '{0}': expected cpu, cuda or cuda:N (N = GPU index, 0 = the first)")]
    Unknown(String),
    /// A CUDA device in a build without the `cuda` feature.
    #[error(
        "device {0}: this effcnn was built without CUDA support (the `cuda` feature); build it \
         with `{CUDA_BUILD}`"
    )]
    NotBuilt(ComputeDevice),
    /// The device is built in but cannot be used here (no driver, no such GPU, …).
    #[error("device {device}: {reason}")]
    Unavailable {
        /// The device asked for.
        device: ComputeDevice,
        /// What is missing, in one line.
        reason: String,
    },
}

impl FromStr for ComputeDevice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let unknown = || DeviceError::Unknown(s.to_string());
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(ComputeDevice::Cpu),
            "cuda" => Ok(ComputeDevice::Cuda(0)),
            other => {
                let index = other.strip_prefix("cuda:").ok_or_else(unknown)?;
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unknown());
                }
                index
                    .parse()
                    .map(ComputeDevice::Cuda)
                    .map_err(|_| unknown())
            }
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeDevice::Cpu => f.write_str("cpu"),
            ComputeDevice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl ComputeDevice {
    /// Whether this is the CPU.
    pub fn is_cpu(self) -> bool {
        self == ComputeDevice::Cpu
    }

    /// Whether this build can run on CUDA devices (the `cuda` feature).
    pub fn cuda_built() -> bool {
        cfg!(feature = "cuda")
    }

    /// The burn device, checked to work: a CUDA device must have a loadable driver, the GPU
    /// must exist, and one small operation must run on it (which also loads NVRTC and
    /// compiles a kernel). Errors instead of burn's panics.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            ComputeDevice::Cpu => Ok(crate::cpu()),
            ComputeDevice::Cuda(index) => cuda::open(index),
        }
    }

    /// For reports: `cpu (burn flex)`, `cuda:0 (NVIDIA H200, burn cuda)`.
    pub fn describe(self) -> String {
        match self {
            ComputeDevice::Cpu => "cpu (burn flex)".to_string(),
            ComputeDevice::Cuda(index) => match cuda::gpu_name(index) {
                Some(name) => format!("{self} ({name}, burn cuda)"),
                None => format!("{self} (burn cuda)"),
            },
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::{ComputeDevice, DeviceError};
    use burn::tensor::Device;

    pub(super) fn open(index: usize) -> Result<Device, DeviceError> {
        Err(DeviceError::NotBuilt(ComputeDevice::Cuda(index)))
    }

    pub(super) fn gpu_name(_index: usize) -> Option<String> {
        None
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{ComputeDevice, DeviceError};
    use burn::tensor::{Device, Tensor, TensorData};
    use cudarc::driver::result;

    /// Loads the driver and initialises it; the number of GPUs it sees.
    fn driver_gpus() -> Result<usize, String> {
        // SAFETY: only tries to load the driver library (libcuda / nvcuda); nothing is called.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(
                "no CUDA driver: the NVIDIA driver library (libcuda) could not be \
                        loaded; is an NVIDIA GPU with its driver installed, and on the library \
                        path?"
                    .to_string(),
            );
        }
        result::init().map_err(|e| format!("the CUDA driver did not initialise: {e}"))?;
        let n = result::device::get_count()
            .map_err(|e| format!("the CUDA driver cannot count its GPUs: {e}"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub(super) fn open(index: usize) -> Result<Device, DeviceError> {
        let fail = |reason: String| DeviceError::Unavailable {
            device: ComputeDevice::Cuda(index),
            reason,
        };
        let gpus = driver_gpus().map_err(fail)?;
        if gpus == 0 {
            return Err(fail("the CUDA driver sees no GPU".to_string()));
        }
        if index >= gpus {
            return Err(fail(format!(
                "there is no GPU {index}: the CUDA driver sees {gpus} (cuda:0 to cuda:{})",
                gpus - 1
            )));
        }
        let device = Device::cuda(index);
        smoke_test(&device).map_err(|m| fail(format!("burn's CUDA backend failed: {m}")))?;
        Ok(device)
    }

    /// One elementwise kernel, compiled by NVRTC and read back, with burn's panics caught (and
    /// the panic message kept off stderr: it becomes the error).
    fn smoke_test(device: &Device) -> Result<(), String> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), device);
            (x.clone() + x).into_data().try_to_vec::<f32>()
        }));
        std::panic::set_hook(hook);
        match run {
            Ok(Ok(v)) if v == [2.0, 4.0] => Ok(()),
            Ok(Ok(v)) => Err(format!("1+1, 2+2 gave {v:?}")),
            Ok(Err(e)) => Err(format!("cannot read a tensor back: {e:?}")),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string());
                Err(msg.lines().next().unwrap_or_default().to_string())
            }
        }
    }

    pub(super) fn gpu_name(index: usize) -> Option<String> {
        driver_gpus().ok().filter(|&n| index < n)?;
        let dev = result::device::get(i32::try_from(index).ok()?).ok()?;
        result::device::get_name(dev).ok()
    }
}

/// Sizes the process's compute pool (rayon's global pool, which burn's flex backend and
/// effcnn's kernels share) and returns the number of threads in use. `None` keeps rayon's
/// default (all cores, or `RAYON_NUM_THREADS`). The pool can be built once per process: a later
/// call keeps the first setting and reports it.
pub fn configure_threads(threads: Option<usize>) -> Result<usize, crate::NnError> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(crate::NnError::BadInput(
                "--threads must be at least 1".to_string(),
            ));
        }
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    Ok(rayon::current_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_devices() {
        for (s, d) in [
            ("cpu", ComputeDevice::Cpu),
            ("CPU", ComputeDevice::Cpu),
            ("cuda", ComputeDevice::Cuda(0)),
            ("cuda:0", ComputeDevice::Cuda(0)),
            ("cuda:3", ComputeDevice::Cuda(3)),
        ] {
            assert_eq!(s.parse::<ComputeDevice>().unwrap(), d, "{s}");
        }
        assert_eq!(ComputeDevice::Cuda(2).to_string(), "cuda:2");
        assert_eq!(ComputeDevice::Cpu.to_string(), "cpu");
        for bad in [
            "", "tpu", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda0", "cpu:0",
        ] {
            let e = bad.parse::<ComputeDevice>().unwrap_err();
            assert!(matches!(e, DeviceError::Unknown(_)), "{bad}");
            assert!(
                e.to_string().contains("expected cpu, cuda or cuda:N"),
                "{e}"
            );
        }
    }

    #[test]
    fn cpu_opens() {
        assert!(ComputeDevice::Cpu.open().is_ok());
        assert_eq!(ComputeDevice::Cpu.describe(), "cpu (burn flex)");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        let e = ComputeDevice::Cuda(0).open().unwrap_err();
        assert_eq!(e, DeviceError::NotBuilt(ComputeDevice::Cuda(0)));
        assert!(e.to_string().contains("--features cuda"), "{e}");
        assert!(!ComputeDevice::cuda_built());
    }
}
