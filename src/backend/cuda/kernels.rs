//! The kernel sources build.rs embeds (each `kernels/<name>.cu` with
//! `common.cuh` prepended, and its content hash for the compile cache), and
//! the names of the kernels each one defines.

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
        // The name is the last word before the parameter list's '(';
        // `__launch_bounds__(..)` may come first and is skipped.
        let mut head = rest;
        while let Some(open) = head.find('(') {
            let word = head[..open].split_whitespace().last().unwrap_or("");
            if word == "__launch_bounds__" {
                head = &head[head[open..].find(')').map_or(head.len(), |c| open + c + 1)..];
                continue;
            }
            if !word.is_empty() {
                names.push(word.to_string());
            }
            break;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_names_skip_launch_bounds() {
        let src = "extern \"C\" __global__ void a(int x) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(256) b(float* y) {}";
        assert_eq!(super::kernel_names(src), ["a", "b"]);
    }
}
