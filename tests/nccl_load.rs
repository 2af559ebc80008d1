//! NCCL loads at run time and reports its version. Needs libnccl (CI
//! installs the `nvidia-nccl-cu13` wheel and links `libnccl.so`). Without
//! it the test prints a skip line, unless MTAFFECT_REQUIRE_NCCL=1, when it
//! fails; either way a missing library is an error naming the fix, never a
//! panic.

use mtaffect::dist::{nccl_available, nccl_version, require_nccl};

#[test]
fn nccl_loads_and_reports_its_version() {
    if !nccl_available() {
        let e = require_nccl().unwrap_err().to_string();
        assert!(e.contains("pip install nvidia-nccl-cu13"), "{e}");
        assert!(nccl_version().is_err(), "a version without the library");
        if std::env::var("MTAFFECT_REQUIRE_NCCL").is_ok_and(|v| v == "1") {
            panic!("NCCL is required (MTAFFECT_REQUIRE_NCCL=1) but could not be loaded: {e}");
        }
        eprintln!("SKIP nccl_loads_and_reports_its_version: {e}");
        return;
    }
    let (major, minor, patch) = nccl_version().unwrap();
    println!("NCCL {major}.{minor}.{patch}");
    assert_eq!(
        major, 2,
        "NCCL {major}.{minor}.{patch}: cudarc binds NCCL 2.x"
    );
}
