//! Loading NCCL at run time, as the driver and NVRTC are loaded: the binary
//! builds and runs without it, and only a multi-GPU run asks for it. cudarc
//! looks for `libnccl.so` or `libnccl.so.<CUDA major>` (and a few older
//! names) but not `libnccl.so.2`, the name the `nvidia-nccl-cu13` wheel
//! ships, so a link is needed; the error says how to make one. cudarc
//! panics when a symbol is used with no library, so every entry point here
//! checks [`nccl_available`] first.

use crate::{Error, Result};

/// How to get a loadable NCCL, for every error that lacks one.
pub const INSTALL_HINT: &str = "NCCL not found: pip install nvidia-nccl-cu13, then link its \
     libnccl.so.2 as libnccl.so in a folder on LD_LIBRARY_PATH \
     (d=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], \"lib\"))'); \
     ln -s $d/libnccl.so.2 $d/libnccl.so; export LD_LIBRARY_PATH=$d:$LD_LIBRARY_PATH)";

/// True if libnccl can be loaded.
pub fn nccl_available() -> bool {
    // SAFETY: only tries to dlopen the NCCL library.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

/// An error naming how to install NCCL when it cannot be loaded.
pub fn require_nccl() -> Result<()> {
    match nccl_available() {
        true => Ok(()),
        false => Err(Error::Dist(INSTALL_HINT.into())),
    }
}

/// (major, minor, patch) of the loaded NCCL.
pub fn nccl_version() -> Result<(u32, u32, u32)> {
    require_nccl()?;
    let code = cudarc::nccl::result::get_nccl_version()
        .map_err(|e| Error::Dist(format!("ncclGetVersion: {e:?}")))?;
    Ok(split_version(code as u32))
}

/// NCCL's version code: `major * 10000 + minor * 100 + patch` since 2.9
/// (`major * 1000 + minor * 100 + patch` before).
fn split_version(code: u32) -> (u32, u32, u32) {
    if code >= 20900 {
        (code / 10000, code / 100 % 100, code % 100)
    } else {
        (code / 1000, code / 100 % 10, code % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_codes_split_in_both_schemes() {
        assert_eq!(split_version(23007), (2, 30, 7));
        assert_eq!(split_version(2804), (2, 8, 4));
    }
}
