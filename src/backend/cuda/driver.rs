//! Driver errors as the crate reports them. Every module of the CUDA backend
//! maps a failed driver call through [`driver_err`], so this sits below all
//! of them and imports none.

use crate::Error;
use cudarc::driver::DriverError;

/// Turns a failed driver call into `Error::Cuda("{what}: {driver message}")`,
/// `what` naming the call (`cuStreamSynchronize`, "device-to-host copy").
pub(crate) fn driver_err(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}
