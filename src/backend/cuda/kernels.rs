/// One `kernels/<name>.cu` file with `common.cuh` prepended, as NVRTC sees it.
#[derive(Debug)]
pub struct KernelModule {
    pub name: &'static str,
    pub source: &'static str,
    /// FNV-1a of `source`: part of the compile cache key.
    pub hash: u64,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
