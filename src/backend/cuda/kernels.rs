/// One `kernels/<name>.cu` file with `common.cuh` prepended, as NVRTC sees it.
#[derive(Debug)]
pub struct KernelModule {
    pub name: &'static str,
    pub source: &'static str,
    /// FNV-1a of `source`: part of the compile cache key.
    pub hash: u64,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Names of the `extern "C" __global__` functions in a kernel source: the
/// PTX entries the runtime loads and the compile test looks for.
pub fn kernel_names(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("__global__") {
        rest = &rest[i + "__global__".len()..];
        let head = &rest[..rest.find('(').unwrap_or(rest.len())];
        if let Some(name) = head.split_whitespace().last() {
            names.push(name.to_string());
        }
    }
    names
}
