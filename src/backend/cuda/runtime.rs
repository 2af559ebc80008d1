//! One GPU as the ops see it: a context, ONE non-default stream, every
//! kernel module loaded from NVRTC PTX for the device's own architecture,
//! and the pooled allocator. Devices are opened once per process and shared.

use super::driver::driver_err;
use super::pool::{Pool, PoolStats};
use super::profile::{HostCall, HostTime, HostTimer, KernelTime, Profiler};
use super::staging::Staging;
use super::{cache_dir, compile_module, driver_available, DeviceInfo, MODULES};
use crate::{Error, Result};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Shared memory a block may use without opting in (48 KiB on every
/// architecture since Volta).
const STATIC_SHARED_LIMIT: u32 = 48 * 1024;

/// Threads per block of the elementwise (grid-stride) kernels.
pub const BLOCK: u32 = 256;

/// Rows per block of the warp-per-row kernels (`*_WARPS` in their .cu files).
pub const ROWS_PER_BLOCK: usize = 8;

pub struct CudaDevice {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<String, CudaFunction>,
    pool: Mutex<Pool>,
    /// The pinned ring that uploads go through (no stream sync per upload).
    staging: Staging,
    /// Fill every new buffer with NaN (parity tests: an output the kernel
    /// forgot to write cannot pass as a lucky zero).
    poison: AtomicBool,
    /// Per-kernel timing (`set_profiling`), off unless asked for.
    profiler: Profiler,
    /// Host time inside launches, allocations, uploads and waits
    /// (`set_host_timing`), off unless asked for.
    host_timer: HostTimer,
    sm_count: u32,
    /// (modules compiled, modules from cache, time to compile and load).
    startup: (usize, usize, Duration),
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaDevice(cuda:{} {})",
            self.info.ordinal, self.info.name
        )
    }
}

/// Parses "cuda" (device 0) or "cuda:N".
pub fn parse_cuda_ordinal(s: &str) -> Result<usize> {
    match s.strip_prefix("cuda") {
        Some("") => Ok(0),
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                Error::arg(
                    "device",
                    format!("expected cpu, cuda or cuda:N, found '{s}'"),
                )
            }),
        None => Err(Error::arg(
            "device",
            format!("expected cpu, cuda or cuda:N, found '{s}'"),
        )),
    }
}

static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();

impl CudaDevice {
    /// The process-wide handle of GPU `ordinal`, opened (and its kernels
    /// compiled or read from the cache) on first use. Without a driver this
    /// is `Error::Cuda("no CUDA driver found; use --device cpu")`.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>> {
        if !driver_available() {
            return Err(Error::Cuda("no CUDA driver found; use --device cpu".into()));
        }
        let mut map = DEVICES
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| Error::Cuda("device table poisoned by an earlier panic".into()))?;
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(CudaDevice::open(ordinal)?);
        map.insert(ordinal, d.clone());
        Ok(d)
    }

    fn open(ordinal: usize) -> Result<CudaDevice> {
        let info = DeviceInfo::query(ordinal)?;
        let ctx = CudaContext::new(ordinal).map_err(driver_err("cuCtxCreate"))?;
        // One stream orders everything, so cudarc's per-buffer events would
        // only cost time. SAFETY: no buffer is created before this call.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver_err("cuStreamCreate"))?;
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(driver_err("device attribute"))? as u32;

        let start = Instant::now();
        let arch = info.arch();
        let dir = cache_dir();
        let (mut compiled, mut cached) = (0, 0);
        let mut functions = HashMap::new();
        for m in MODULES {
            let c = compile_module(m, &arch, Some(&dir))?;
            if c.cached {
                cached += 1;
            } else {
                compiled += 1;
            }
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(c.ptx))
                .map_err(|e| {
                    Error::Cuda(format!("loading kernels/{}.cu for {arch}: {e}", m.name))
                })?;
            for name in super::kernel_names(m.source) {
                let f = module.load_function(&name).map_err(|e| {
                    Error::Cuda(format!("kernels/{}.cu: function {name}: {e}", m.name))
                })?;
                functions.insert(name, f);
            }
        }
        let staging = Staging::new(ctx.clone());
        Ok(CudaDevice {
            info,
            ctx,
            stream,
            functions,
            pool: Mutex::new(Pool::default()),
            staging,
            poison: AtomicBool::new(false),
            profiler: Profiler::default(),
            host_timer: HostTimer::default(),
            sm_count,
            startup: (compiled, cached, start.elapsed()),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.info.ordinal
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// (modules compiled, modules read from the cache, time spent) when the device was opened.
    pub fn startup(&self) -> (usize, usize, Duration) {
        self.startup
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.lock().map(|p| p.stats()).unwrap_or_default()
    }

    /// Bytes new buffers can take: what the driver reports free plus what
    /// the pool holds cached and unused (the memory checks of a run's
    /// settings compare their needs with this).
    pub fn free_memory(&self) -> Result<usize> {
        let (free, _total) = self
            .ctx
            .mem_get_info()
            .map_err(driver_err("cuMemGetInfo"))?;
        let s = self.pool_stats();
        Ok(free.saturating_add(s.reserved_bytes.saturating_sub(s.in_use_bytes)))
    }

    /// Frees the pool's cached buffers back to the driver.
    pub fn trim_pool(&self) {
        if let Ok(mut p) = self.pool.lock() {
            p.trim();
        }
    }

    /// Parity tests turn this on: new buffers come back filled with NaN.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    /// Waits for everything queued on the stream (benches and read-backs only).
    pub fn synchronize(&self) -> Result<()> {
        self.host_timer.time(HostCall::Wait, || {
            self.stream
                .synchronize()
                .map_err(driver_err("cuStreamSynchronize"))
        })
    }

    /// A pooled buffer of at least `n` f32, uninitialised (NaN when poisoning).
    pub(crate) fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        let taken = self.host_timer.time(HostCall::Alloc, || {
            self.pool.lock().map(|mut p| p.take(&self.stream, n))
        });
        let mut buf = taken
            .map_err(|_| Error::Cuda("allocator poisoned by an earlier panic".into()))?
            .map_err(|e| {
                let hint = if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                    "; the GPU is out of memory: try a smaller data.batch_size"
                } else {
                    ""
                };
                Error::Cuda(format!(
                    "allocating {} bytes on cuda:{}: {e}{hint}",
                    n * 4,
                    self.ordinal()
                ))
            })?;
        if self.poison.load(Ordering::Relaxed) {
            self.memset_bytes(&mut buf, 0xff)?; // all-ones f32 is a NaN
        }
        Ok(buf)
    }

    /// Queues a copy of `src` into the device buffer at `dst` (at least
    /// `src.len()` bytes) through the pinned upload ring; Ok(false), having
    /// done nothing, when `src` is too large for the ring.
    pub(crate) fn upload_staged(&self, src: &[u8], dst: u64) -> Result<bool> {
        self.staging.upload(&self.stream, src, dst)
    }

    /// Runs `f`, adding its wall time to `call`'s host total when host
    /// timing is on.
    pub(crate) fn host_timed<T>(&self, call: HostCall, f: impl FnOnce() -> T) -> T {
        self.host_timer.time(call, f)
    }

    pub(crate) fn release(&self, buf: CudaSlice<f32>) {
        if let Ok(mut p) = self.pool.lock() {
            p.give(buf);
        }
    }

    pub(crate) fn memset_bytes(&self, buf: &mut CudaSlice<f32>, byte: u8) -> Result<()> {
        let ptr = raw_ptr(buf, &self.stream);
        // SAFETY: ptr addresses buf.len() f32 owned by `buf`.
        unsafe { self.memset_ptr_bytes(ptr, buf.len() * 4, byte) }
    }

    /// Queues zeroing `bytes` bytes at device address `ptr`.
    ///
    /// # Safety
    /// `ptr` must address at least `bytes` bytes of a live buffer.
    pub(crate) unsafe fn memset_ptr(&self, ptr: u64, bytes: usize) -> Result<()> {
        // SAFETY: the caller's promise.
        unsafe { self.memset_ptr_bytes(ptr, bytes, 0) }
    }

    /// # Safety
    /// As for [`CudaDevice::memset_ptr`].
    unsafe fn memset_ptr_bytes(&self, ptr: u64, bytes: usize, byte: u8) -> Result<()> {
        // A raw driver call: the context must be current on this thread
        // (cudarc's own calls bind it; tests call from many threads).
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("binding the context"))?;
        self.host_timed(HostCall::Launch, || {
            self.timed("(memset)", || {
                // SAFETY: the caller's promise.
                unsafe {
                    cudarc::driver::result::memset_d8_async(
                        ptr,
                        byte,
                        bytes,
                        self.stream.cu_stream(),
                    )
                }
                .map_err(driver_err("cuMemsetD8Async"))
            })
        })
    }

    /// Switches per-kernel timing on or off (see [`CudaDevice::kernel_times`]).
    pub fn set_profiling(&self, on: bool) {
        self.profiler.set(on);
    }

    /// Switches the host-call timer on or off (see [`CudaDevice::host_times`]).
    pub fn set_host_timing(&self, on: bool) {
        self.host_timer.set(on);
    }

    /// Host time per kind of driver-facing call since host timing was
    /// switched on or last read; clears the totals.
    pub fn host_times(&self) -> Vec<HostTime> {
        self.host_timer.take()
    }

    /// Runs `f` (which puts work named `name` on the stream) between two
    /// timing events when profiling is on.
    pub(crate) fn timed<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if !self.profiler.is_on() {
            return f();
        }
        let start = Profiler::mark(&self.stream)?;
        let out = f()?;
        self.profiler
            .push(name, start, Profiler::mark(&self.stream)?);
        Ok(out)
    }

    /// GPU time per kernel (and per copy or memset kind) since profiling was switched on or last reported,
    /// slowest first; waits for the GPU and clears the record.
    pub fn kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.profiler.report()
    }

    pub fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| Error::Cuda(format!("no kernel named {name} in kernels/*.cu")))
    }

    /// A grid-stride launch over `n` elements: enough blocks to fill the GPU
    /// a few times over, never more than `n` needs.
    pub fn elementwise_config(&self, n: usize) -> LaunchConfig {
        let need = n.div_ceil(BLOCK as usize).max(1);
        let cap = (self.sm_count * 16) as usize;
        LaunchConfig {
            grid_dim: (need.min(cap) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// One warp per row, `ROWS_PER_BLOCK` rows per block, rows grid-strided
    /// (the row kernels: softmax, cross-entropy, layer norm).
    pub fn warp_rows_config(&self, rows: usize) -> LaunchConfig {
        let blocks = rows
            .div_ceil(ROWS_PER_BLOCK)
            .clamp(1, self.sm_count as usize * 32);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// How many slices to split `rows` into for a per-column reduction over
    /// `cols` columns in (32, 8) blocks: a few blocks per SM, each thread
    /// summing at least 16 rows.
    pub fn column_splits(&self, cols: usize, rows: usize) -> u64 {
        let want = (self.sm_count as u64 * 8).div_ceil(cols.div_ceil(32).max(1) as u64);
        want.min((rows as u64).div_ceil(8 * 16)).clamp(1, 65_535)
    }

    /// (32, 8) blocks: 32 columns per block in x, `splits` row slices in y.
    pub fn column_reduce_config(&self, cols: usize, splits: u64) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (cols.div_ceil(32).max(1) as u32, splits as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Launches `kernel(params, ptrs...)` on the stream: `params` is the
    /// kernel's `#[repr(C)]` struct passed by value, `ptrs` the device
    /// addresses that follow it in the kernel's signature.
    ///
    /// # Safety
    /// `P` must match the kernel's parameter struct field for field, and the
    /// pointers must address buffers at least as large as the kernel indexes.
    pub(crate) unsafe fn launch<P: DeviceRepr>(
        &self,
        kernel: &str,
        cfg: LaunchConfig,
        params: &P,
        ptrs: &[u64],
    ) -> Result<()> {
        self.launch_with(kernel, cfg, params, ptrs, false)
    }

    /// Like [`CudaDevice::launch`], with every block resident at once (the
    /// driver refuses a grid that cannot be), for kernels with grid barriers.
    ///
    /// # Safety
    /// As for [`CudaDevice::launch`].
    pub(crate) unsafe fn launch_cooperative<P: DeviceRepr>(
        &self,
        kernel: &str,
        cfg: LaunchConfig,
        params: &P,
        ptrs: &[u64],
    ) -> Result<()> {
        self.launch_with(kernel, cfg, params, ptrs, true)
    }

    unsafe fn launch_with<P: DeviceRepr>(
        &self,
        kernel: &str,
        cfg: LaunchConfig,
        params: &P,
        ptrs: &[u64],
        cooperative: bool,
    ) -> Result<()> {
        self.host_timed(HostCall::Launch, || {
            self.timed(kernel, || {
                let f = self.function(kernel)?;
                if cfg.shared_mem_bytes > STATIC_SHARED_LIMIT {
                    // Beyond 48 KiB a kernel must opt in to its dynamic
                    // shared memory (once would do; the call is cheap).
                    f.set_attribute(
                        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        cfg.shared_mem_bytes as i32,
                    )
                    .map_err(|e| {
                        Error::Cuda(format!(
                            "{kernel}: {} bytes of shared memory: {e}",
                            cfg.shared_mem_bytes
                        ))
                    })?;
                }
                let mut b = self.stream.launch_builder(f);
                b.arg(params);
                for p in ptrs {
                    b.arg(p);
                }
                let r = if cooperative {
                    b.launch_cooperative(cfg)
                } else {
                    b.launch(cfg)
                };
                r.map(|_| ())
                    .map_err(|e| Error::Cuda(format!("launching {kernel} with {cfg:?}: {e}")))
            })
        })
    }

    /// How many blocks of `threads` threads of `kernel` fit on one SM at once.
    pub(crate) fn resident_blocks_per_sm(&self, kernel: &str, threads: u32) -> Result<u32> {
        let f = self.function(kernel)?;
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("binding the context"))?;
        let n = f
            .occupancy_max_active_blocks_per_multiprocessor(threads, 0, None)
            .map_err(driver_err("occupancy query"))?;
        Ok(n)
    }
}

/// The device address of a buffer, for [`CudaDevice::launch`].
pub(crate) fn raw_ptr(buf: &CudaSlice<f32>, stream: &CudaStream) -> u64 {
    use cudarc::driver::DevicePtr;
    // Event tracking is off, so the guard records nothing when dropped.
    let (ptr, _guard) = buf.device_ptr(stream);
    ptr
}
