use crate::backend::cuda::{parse_cuda_ordinal, CudaDevice};
use crate::Result;
use std::fmt;
use std::sync::Arc;

/// Where a tensor's elements live.
#[derive(Clone, Debug)]
pub enum Device {
    Cpu,
    Cuda(Arc<CudaDevice>),
}

impl Device {
    /// "cpu", "cuda" or "cuda:N"; opening a GPU fails cleanly without a
    /// driver. "auto" is GPU 0 where one can be opened, else the CPU (the
    /// built-in default job, and inference from a checkpoint).
    pub fn parse(s: &str) -> Result<Device> {
        match s {
            "cpu" => return Ok(Device::Cpu),
            "auto" => return Ok(CudaDevice::get(0).map_or(Device::Cpu, Device::Cuda)),
            _ => {}
        }
        Ok(Device::Cuda(CudaDevice::get(parse_cuda_ordinal(s)?)?))
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Cuda(a), Device::Cuda(b)) => a.ordinal() == b.ordinal(),
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(d) => write!(f, "cuda:{}", d.ordinal()),
        }
    }
}
