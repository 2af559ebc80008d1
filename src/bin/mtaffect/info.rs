//! `mtaffect info`: driver, NVRTC and device facts, kernel compile times,
//! and one kernel run end to end where there is a GPU.

use mtaffect::backend::cuda;
use mtaffect::Result;
use std::time::Instant;

pub fn info(ordinal: usize) -> Result<()> {
    println!("mtaffect {}", env!("CARGO_PKG_VERSION"));
    let device = match cuda::DeviceInfo::query(ordinal) {
        Ok(d) => {
            println!(
                "driver:        CUDA {}.{}",
                d.driver_version / 1000,
                (d.driver_version % 1000) / 10
            );
            println!("device {}:      {}", d.ordinal, d.name);
            println!(
                "compute cap.:  {}.{}",
                d.compute_capability.0, d.compute_capability.1
            );
            println!(
                "memory:        {:.1} GiB",
                d.total_memory as f64 / (1u64 << 30) as f64
            );
            Some(d)
        }
        Err(e) => {
            println!("device:        none ({e})");
            None
        }
    };
    println!("kernel cache:  {}", cuda::cache_dir().display());
    println!("kernel modules: {}", cuda::MODULES.len());
    match cuda::nvrtc_version() {
        Ok((major, minor)) => {
            println!("NVRTC:         {major}.{minor}");
            // Without a GPU, time the compile for the H100/H200 target.
            let arch = device.as_ref().map_or("sm_90".to_string(), |d| d.arch());
            let t = Instant::now();
            cuda::compile_all(&arch, None)?;
            let cold = t.elapsed();
            let dir = cuda::cache_dir();
            cuda::compile_all(&arch, Some(&dir))?;
            let t = Instant::now();
            let again = cuda::compile_all(&arch, Some(&dir))?;
            let cached = t.elapsed();
            let hits = again.iter().filter(|m| m.cached).count();
            println!(
                "compile ({arch}): cold {:.0} ms, cached {:.1} ms ({hits}/{} from cache)",
                cold.as_secs_f64() * 1e3,
                cached.as_secs_f64() * 1e3,
                again.len()
            );
        }
        Err(e) => println!("NVRTC:         none ({e})"),
    }
    if device.is_some() {
        runtime_check(ordinal)?;
    }
    Ok(())
}

/// Opens the device as the ops do (context, stream, modules), runs one
/// kernel on a few values and checks them: the runtime path end to end.
fn runtime_check(ordinal: usize) -> Result<()> {
    use mtaffect::{Device, Tape, Tensor};
    let dev = cuda::CudaDevice::get(ordinal)?;
    let (compiled, cached, took) = dev.startup();
    println!(
        "runtime:       {} modules loaded in {:.0} ms ({compiled} compiled, {cached} from cache)",
        compiled + cached,
        took.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let x = Tensor::from_vec(vec![-1.5f32, 2.0, -3.0, 4.5], [4])?
        .to_device(&Device::Cuda(dev.clone()))?;
    let tape = Tape::no_grad();
    let y = mtaffect::ops::relu(&tape, &tape.constant(x))?
        .into_value()
        .to_cpu()?;
    let got = y.to_vec::<f32>()?;
    if got != [0.0, 2.0, 0.0, 4.5] {
        return Err(mtaffect::Error::Cuda(format!(
            "relu on the device returned {got:?}, expected [0, 2, 0, 4.5]"
        )));
    }
    println!(
        "kernel launch: ok (relu on 4 values, {:.0} us with copies)",
        t.elapsed().as_secs_f64() * 1e6
    );
    let s = dev.pool_stats();
    println!(
        "memory pool:   {} B reserved, {} B in use, {} driver allocations, {} reuses",
        s.reserved_bytes, s.in_use_bytes, s.driver_allocs, s.reuses
    );
    Ok(())
}
