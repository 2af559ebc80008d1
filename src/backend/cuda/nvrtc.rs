//! Run-time compilation of the embedded kernels with NVRTC, cached on disk
//! by (source hash, arch, NVRTC version) so a second start compiles nothing.

use super::{KernelModule, MODULES};
use crate::{Error, Result};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};
use std::path::{Path, PathBuf};

/// True if libnvrtc can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the NVRTC library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// (major, minor) of the loaded NVRTC.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_available() {
        return Err(Error::Cuda(
            "NVRTC not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc` and add its lib folder to LD_LIBRARY_PATH".into(),
        ));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: writes two ints.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::Cuda(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// `$MTAFFECT_KERNEL_CACHE`, else `$XDG_CACHE_HOME/mtaffect/kernels`, else `~/.cache/mtaffect/kernels`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MTAFFECT_KERNEL_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mtaffect").join("kernels")
}

/// PTX of one module for one arch.
#[derive(Debug)]
pub struct CompiledModule {
    pub name: &'static str,
    pub ptx: String,
    /// True when the PTX came from the disk cache.
    pub cached: bool,
}

/// Architectures NVRTC is asked for; `'static` because cudarc's options want it.
fn static_arch(arch: &str) -> Result<&'static str> {
    const KNOWN: [&str; 6] = ["sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100"];
    KNOWN.iter().copied().find(|a| *a == arch).ok_or_else(|| {
        Error::Cuda(format!(
            "unsupported GPU architecture {arch}; known: {KNOWN:?}"
        ))
    })
}

/// Compiles `module` for `arch` (e.g. "sm_90"), reading and filling the disk
/// cache in `cache` (normally [`cache_dir`]) when given. A compile error
/// carries NVRTC's log.
pub fn compile_module(
    module: &KernelModule,
    arch: &str,
    cache: Option<&Path>,
) -> Result<CompiledModule> {
    let arch = static_arch(arch)?;
    if !nvrtc_available() {
        // A host with a driver but no NVRTC (a GPU box given a prebuilt
        // bundle) may still run PTX that NVRTC made elsewhere for these exact sources.
        if let Some(ptx) = cache.and_then(|d| cached_from_any_nvrtc(d, module, arch)) {
            return Ok(CompiledModule {
                name: module.name,
                ptx,
                cached: true,
            });
        }
    }
    let (major, minor) = nvrtc_version()?;
    let path = cache.map(|d| {
        d.join(format!(
            "{}-{:016x}-{arch}-nvrtc{major}.{minor}.ptx",
            module.name, module.hash
        ))
    });
    if let Some(path) = &path {
        if let Ok(ptx) = std::fs::read_to_string(path) {
            return Ok(CompiledModule {
                name: module.name,
                ptx,
                cached: true,
            });
        }
    }
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(format!("{}.cu", module.name)),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(module.source, opts)
        .map_err(|e| match e {
            CompileError::CompileError { log, .. } => Error::Cuda(format!(
                "NVRTC failed on kernels/{}.cu for {arch}:\n{}",
                module.name,
                log.to_string_lossy()
            )),
            other => Error::Cuda(format!(
                "NVRTC failed on kernels/{}.cu for {arch}: {other}",
                module.name
            )),
        })?
        .to_src();
    if let Some(path) = &path {
        crate::io::write_atomic_creating_dir(path, ptx.as_bytes())?;
    }
    Ok(CompiledModule {
        name: module.name,
        ptx,
        cached: false,
    })
}

/// PTX for `module`'s exact source and `arch` from any NVRTC version in `dir`.
fn cached_from_any_nvrtc(dir: &Path, module: &KernelModule, arch: &str) -> Option<String> {
    let prefix = format!("{}-{:016x}-{arch}-nvrtc", module.name, module.hash);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".ptx")
        })
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
}

/// Every embedded module for `arch`.
pub fn compile_all(arch: &str, cache: Option<&Path>) -> Result<Vec<CompiledModule>> {
    MODULES
        .iter()
        .map(|m| compile_module(m, arch, cache))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_ptx_is_found_for_the_exact_source_and_arch_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = &MODULES[0];
        let file = format!("{}-{:016x}-sm_90-nvrtc12.9.ptx", m.name, m.hash);
        std::fs::write(dir.path().join(file), "// ptx").unwrap();
        assert_eq!(
            cached_from_any_nvrtc(dir.path(), m, "sm_90").as_deref(),
            Some("// ptx")
        );
        assert!(cached_from_any_nvrtc(dir.path(), m, "sm_80").is_none());
        let other = KernelModule {
            name: m.name,
            source: m.source,
            hash: m.hash ^ 1,
        };
        assert!(cached_from_any_nvrtc(dir.path(), &other, "sm_90").is_none());
    }
}
