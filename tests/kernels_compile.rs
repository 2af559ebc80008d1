//! Every kernel module compiles with NVRTC for sm_80 and sm_90, and every
//! `extern "C" __global__` function in it comes out as a PTX entry.
//!
//! Needs libnvrtc (CI installs the `nvidia-cuda-nvrtc` wheel). Without it the
//! tests print a skip line, unless MTAFFECT_REQUIRE_NVRTC=1, when they fail.

use mtaffect::backend::cuda::{
    compile_module, kernel_names, nvrtc_available, nvrtc_version, MODULES,
};

fn nvrtc_or_skip(test: &str) -> bool {
    if nvrtc_available() {
        return true;
    }
    if std::env::var("MTAFFECT_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: NVRTC is required (MTAFFECT_REQUIRE_NVRTC=1) but libnvrtc could not be loaded"
        );
    }
    eprintln!("SKIP {test}: libnvrtc not found (pip install nvidia-cuda-nvrtc; add its lib folder to LD_LIBRARY_PATH)");
    false
}

#[test]
fn every_module_compiles_for_sm80_and_sm90() {
    if !nvrtc_or_skip("every_module_compiles_for_sm80_and_sm90") {
        return;
    }
    println!(
        "NVRTC {:?}, {} modules",
        nvrtc_version().unwrap(),
        MODULES.len()
    );
    assert!(!MODULES.is_empty(), "build.rs embedded no kernels");
    for m in MODULES {
        let names = kernel_names(m.source);
        assert!(
            !names.is_empty(),
            "kernels/{}.cu declares no kernels",
            m.name
        );
        for arch in ["sm_80", "sm_90"] {
            let c = compile_module(m, arch, None).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                c.ptx.contains(&format!(".target {arch}")),
                "{} {arch}: wrong target",
                m.name
            );
            for n in &names {
                assert!(
                    c.ptx.contains(&format!(".entry {n}(")),
                    "{} {arch}: no PTX entry for {n}",
                    m.name
                );
            }
        }
    }
}

#[test]
fn compile_errors_carry_the_nvrtc_log_and_the_cache_is_reused() {
    if !nvrtc_or_skip("compile_errors_carry_the_nvrtc_log_and_the_cache_is_reused") {
        return;
    }
    let broken = mtaffect::backend::cuda::KernelModule {
        name: "broken",
        source: "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }",
        hash: 1,
    };
    let e = compile_module(&broken, "sm_90", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kernels/broken.cu") && e.contains("undefined_name"),
        "{e}"
    );

    let dir = std::env::temp_dir().join(format!("mtaffect-kcache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = compile_module(&MODULES[0], "sm_90", Some(&dir)).unwrap();
    let second = compile_module(&MODULES[0], "sm_90", Some(&dir)).unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.ptx, second.ptx);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_driver_is_a_clean_error() {
    if mtaffect::backend::cuda::driver_available() {
        eprintln!("SKIP a_missing_driver_is_a_clean_error: this machine has a CUDA driver");
        return;
    }
    let e = mtaffect::backend::cuda::DeviceInfo::query(0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no CUDA driver found; use --device cpu"), "{e}");
}
