//! The user's choice of backend (`--backend`, `STRATA_BACKEND`) and its mapping to burn devices.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::{Device, DeviceKind, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variable that picks the backend when no flag does.
pub const BACKEND_ENV: &str = "STRATA_BACKEND";

/// A compute backend this build of Strata can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `flex` CPU backend: the default, fastest CPU backend for convolutions.
    #[default]
    Flex,
    /// burn's `ndarray` CPU backend: good for small dense models (MLPs), very slow for
    /// convolution backward passes.
    Ndarray,
    /// burn's `wgpu` backend: a GPU through Vulkan/Metal/DX12, or lavapipe's software Vulkan.
    Wgpu,
}

impl Backend {
    /// Every backend this build has, in the order `strata list` shows them.
    pub const ALL: [Backend; 3] = [Backend::Flex, Backend::Ndarray, Backend::Wgpu];

    /// The lower-case name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// One line on what the backend is good for.
    pub fn description(self) -> &'static str {
        match self {
            Backend::Flex => "CPU, pure Rust, SIMD + threads; the default and the fast CPU path",
            Backend::Ndarray => {
                "CPU, ndarray; fine for MLPs, convolution backward is very slow (avoid for CNNs)"
            }
            Backend::Wgpu => {
                "GPU via wgpu (Vulkan/Metal/DX12); on lavapipe it runs, slowly, on the CPU"
            }
        }
    }

    /// The backend named by `STRATA_BACKEND`, or `None` when the variable is unset or empty.
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] when the variable holds an unknown name.
    pub fn from_env() -> Result<Option<Backend>> {
        match std::env::var(BACKEND_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// The plain (inference) device of this backend. Nothing is allocated until first use.
    #[allow(deprecated)] // burn deprecates ndarray in favour of flex; users still ask for it.
    pub fn device(self) -> Device {
        match self {
            Backend::Flex => Device::flex(),
            Backend::Ndarray => Device::ndarray(),
            Backend::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }

    /// The device after checking that the backend can run here.
    ///
    /// # Errors
    /// [`Error::Unusable`] when, for example, wgpu finds no adapter.
    pub fn usable_device(self) -> Result<Device> {
        self.check_usable()?;
        Ok(self.device())
    }

    /// Checks that the backend runs a tiny computation on this machine. The answer is cached for
    /// the life of the process. CPU backends always succeed; wgpu may find no adapter, which is
    /// reported as an error rather than a panic.
    ///
    /// # Errors
    /// [`Error::Unusable`] with the reason burn gave.
    pub fn check_usable(self) -> Result<()> {
        static WGPU: OnceLock<std::result::Result<(), String>> = OnceLock::new();
        let outcome = match self {
            Backend::Flex | Backend::Ndarray => return Ok(()),
            Backend::Wgpu => WGPU.get_or_init(|| probe(self)),
        };
        outcome.clone().map_err(|reason| Error::Unusable {
            backend: self.name().to_string(),
            reason,
        })
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// The name of the thread that probes a backend; its panics are not printed.
const PROBE_THREAD: &str = "strata-backend-probe";

/// cubecl starts a device-server thread (named `DSD-...`) when a device is first used; a
/// missing adapter panics there, not in the probe thread.
const DEVICE_SERVER_PREFIX: &str = "DSD-";

/// Whether a probe is running, and the first panic message a probe's threads gave.
static PROBING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PROBE_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Installs, once per process, a panic hook that records, without printing, the panics of the
/// probe thread and, while a probe runs, of cubecl's device-server threads; every other
/// thread's panic goes to the hook that was there before. The hook is never swapped back and
/// forth, so a test thread that panics while a probe runs is reported as usual.
fn quiet_probe_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let current = std::thread::current();
            let name = current.name().unwrap_or("");
            let probing = PROBING.load(std::sync::atomic::Ordering::SeqCst);
            if name == PROBE_THREAD || (probing && name.starts_with(DEVICE_SERVER_PREFIX)) {
                let mut slot = PROBE_PANIC.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert_with(|| panic_message(info.payload()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `1 + 1` on the backend in a separate, named thread, so a missing adapter (a panic in
/// burn or cubecl) becomes an error value carrying the panic's message.
fn probe(backend: Backend) -> std::result::Result<(), String> {
    quiet_probe_panics();
    PROBING.store(true, std::sync::atomic::Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name(PROBE_THREAD.into())
        .spawn(move || {
            let device = backend.device();
            let t = Tensor::<1>::from_floats([1.0f32], &device);
            let v: Vec<f32> = (t.clone() + t)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            if (v[0] - 2.0).abs() > 1e-6 {
                return Err(format!("wrong result {}", v[0]));
            }
            Ok(())
        });
    let joined = match spawned {
        Ok(handle) => handle.join(),
        Err(e) => Ok(Err(format!("cannot start the probe thread: {e}"))),
    };
    PROBING.store(false, std::sync::atomic::Ordering::SeqCst);
    // The first panic of the probe's threads says why (the device server's, when the probe
    // thread only saw its channel close).
    let recorded = PROBE_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
    let first_line = |text: &str| text.lines().next().unwrap_or("").trim().to_string();
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(recorded.map_or(e, |r| first_line(&r))),
        Err(payload) => {
            let text = recorded.unwrap_or_else(|| panic_message(payload.as_ref()));
            let first = first_line(&text);
            Err(if first.is_empty() {
                "initialisation panicked".to_string()
            } else {
                first
            })
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::Ndarray),
            "wgpu" => Ok(Backend::Wgpu),
            other => Err(Error::UnknownBackend(other.to_string())),
        }
    }
}

/// What `strata list` reports for one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    /// The backend.
    pub backend: Backend,
    /// `Ok` when it ran a test computation here, else the reason it cannot.
    pub usable: std::result::Result<(), String>,
}

/// Every backend this build has and whether each is usable on this machine.
pub fn backends() -> Vec<BackendStatus> {
    Backend::ALL
        .iter()
        .map(|&backend| BackendStatus {
            backend,
            usable: backend.check_usable().map_err(|e| match e {
                Error::Unusable { reason, .. } => reason,
                other => other.to_string(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.to_string().to_uppercase().parse::<Backend>().unwrap(), b);
        }
    }

    #[test]
    fn unknown_backend_is_an_error() {
        let err = "cuda9".parse::<Backend>().unwrap_err();
        assert_eq!(err, Error::UnknownBackend("cuda9".into()));
        assert!(err.to_string().contains("flex, ndarray, wgpu"));
    }

    #[test]
    fn cpu_backends_are_usable() {
        assert!(Backend::Flex.check_usable().is_ok());
        assert!(Backend::Ndarray.check_usable().is_ok());
    }

    #[test]
    fn listing_has_every_backend() {
        let list = backends();
        assert_eq!(list.len(), 3);
        assert!(list[0].usable.is_ok());
    }
}
