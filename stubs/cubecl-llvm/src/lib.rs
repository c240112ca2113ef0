//! Stand-in for `cubecl-llvm` 0.11.3 with no LLVM in it (see this crate's Cargo.toml).
//!
//! cubecl-cuda always compiles both of its kernel backends and picks one at run time: CUDA C++
//! through NVRTC when its `cpp` feature is on (effcnn's `cuda` feature turns it on), the LLVM
//! backend otherwise. This crate supplies the items cubecl-cuda names from the LLVM side, with
//! the same paths and shapes; [`PlironCompiler::compile`] answers every kernel with a
//! compilation error, so a build that reached the LLVM path by mistake fails loudly instead of
//! running something else.

use core::fmt;

use cubecl_environment::backtrace::BackTrace;
use cubecl_ir::nvidia::SmArch;
use cubecl_runtime::compiler::CompilationError;
use cubecl_runtime::kernel::BufferIOAttr;

/// The LLVM targets; only the NVPTX one is named by cubecl-cuda.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    /// NVIDIA PTX.
    #[default]
    Nvptx,
}

/// A compiled PTX module (never produced here).
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX assembly.
    pub ptx: Vec<core::ffi::c_char>,
    /// Kernel entry point symbol.
    pub entrypoint: String,
    /// IR for logging and cache keys.
    pub ir: String,
    /// Shared memory required per launch, in bytes.
    pub shared_memory_size: usize,
    /// Buffer access modes in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM backend compiles a kernel to.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    /// A PTX module.
    NvptxCode(NvptxModule),
}

/// The AMD architecture slot of [`PlironOptions`] (unused by the NVPTX target).
#[derive(Clone, Debug)]
pub enum GfxArch {}

/// Options of the LLVM backend, with the fields cubecl-cuda sets.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMDGPU architecture (always `None` here).
    pub arch: Option<GfxArch>,
    /// NVPTX architecture.
    pub sm_arch: Option<SmArch>,
    /// PTX version to emit.
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    /// Pass scalars and static metadata in the kernel parameter block.
    pub grid_constants: bool,
}

/// The LLVM backend's compiler: it has no LLVM, so it compiles nothing.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    /// The target it would compile for.
    pub target: LlvmTarget,
}

impl PlironCompiler {
    /// Always an error: this build has no LLVM backend (use the CUDA C++ one, cubecl-cuda's
    /// `cpp` feature).
    pub fn compile<K>(
        &mut self,
        _kernel: K,
        _options: &PlironOptions,
    ) -> Result<PlironArtifact, CompilationError> {
        Err(CompilationError::Generic {
            reason: "this build has no LLVM kernel backend (cubecl-llvm is a stand-in); \
                     enable cubecl-cuda's `cpp` feature to compile kernels with NVRTC"
                .to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    /// The language tag of the LLVM backend's output.
    pub fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

/// NVPTX-specific items.
pub mod nvptx {
    /// The PTX ISA version for a driver.
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version, as the NVPTX target feature spells it: 8.7 is `87`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(u32);

        impl PtxVersion {
            /// The PTX version the LLVM backend would emit for a driver. Always `None` here:
            /// with no LLVM backend nothing emits PTX (cubecl-cuda only puts the answer into the
            /// LLVM backend's cache keys).
            pub fn for_driver(_driver: i32) -> Option<Self> {
                None
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }
    }
}

/// Items shared between the LLVM targets.
pub mod shared {
    /// Narrowing a device's advertised features to what the LLVM backend lowers.
    pub mod lowered_features {
        /// The GPU target a device's features are narrowed for.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            /// NVIDIA PTX.
            Nvptx,
        }

        /// cubecl-cuda calls this only when the LLVM backend is the one selected, which the
        /// `cpp` feature rules out; the LLVM backend refuses every kernel anyway, so nothing
        /// is narrowed.
        pub fn restrict_features<P>(_props: &mut P, _target: GpuTarget) {}
    }
}

impl fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}
