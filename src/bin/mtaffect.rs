//! The mtaffect command line.

use clap::{Parser, Subcommand};
use mtaffect::backend::cuda;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "mtaffect",
    version,
    about = "Multi-task facial affect training (VA, AUs, expressions)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the multi-task model (default: built-in synthetic data, CPU if no GPU).
    Train,
    /// Driver, NVRTC and device facts, and how long the kernels take to compile.
    Info {
        /// Device ordinal to describe.
        #[arg(long, default_value_t = 0)]
        device: usize,
    },
}

fn info(ordinal: usize) -> mtaffect::Result<()> {
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
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train => {
            println!("mtaffect train: not yet available (the training loop lands with the multi-task SE-ResNet work)");
            Ok(())
        }
        Command::Info { device } => info(device),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
