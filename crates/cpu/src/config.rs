//! The backend's configuration: every choice the CPU kernels make that a user or a benchmark may
//! want to change, as typed data. A session carries one ([`CpuConfig`] inside its options) and hands
//! it to every kernel through the [`crate::Context`]; nothing here reads the environment.
//!
//! No setting changes a result: every alternative computes the same values in the same order (each
//! one's tests check it bit for bit). They exist to compare the alternatives against each other.

use crate::simd::Isa;

/// The CPU backend's settings. [`CpuConfig::default`] is what the benchmarks measure as fastest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuConfig {
    /// The widest instruction set the elementwise loops and the packing of transposed operands may
    /// use (capped by what the CPU has). Default: AVX-512.
    pub simd: Isa,
    /// Multi-threaded products split their output into one band of rows (or one half of the
    /// columns) per thread; off, they run on the `gemm` crate's own parallel loop. Default: on.
    pub gemm_split: bool,
    /// Products run our blocked loop around the `gemm` crate's microkernels, with packing buffers
    /// kept in the context's workspaces; off, the crate's driver, which allocates its packing
    /// workspace in every call. Default: on.
    pub gemm_own: bool,
    /// Few-row products with a transposed right operand run without the crate's transposition.
    /// Default: on.
    pub gemm_swap: bool,
    /// The transposed left operand of a weight gradient `Xᵀ·dY` is brought into L2 and read in place
    /// instead of packed. Default: on.
    pub gemm_in_place: bool,
    /// Products of fewer multiply-adds run on one thread: below it, waking a second thread and
    /// packing the shared operand twice cost more than they save. Default: 2^21 (the hidden-layer
    /// products of a batch of 32, 32×300·300×300, run on two threads).
    pub gemm_parallel_min_macs: usize,
    /// Multi-threaded products of at least this many rows split into row bands, one per thread;
    /// fewer rows split into column halves. Default: 64.
    pub gemm_band_min_rows: usize,
    /// Multi-threaded products of many rows split into this many row bands per thread (each at
    /// least 256 rows), handed out to the threads as they come free, so that a thread whose core
    /// is taken by another process leaves its bands to the others. Default: 1 (one band per
    /// thread).
    pub gemm_tiles_per_thread: usize,
    /// Elementwise kernels, reductions and optimizer updates split across threads from this many
    /// elements. Default: 2^16.
    pub parallel_min_elements: usize,
    /// Two adjacent independent products of a step (a layer's `dW` and `dX`) run at the same time,
    /// one per thread, when each is below [`CpuConfig::pair_max_macs`]. Default: on.
    pub pair_products: bool,
    /// The largest product (in multiply-adds) that runs paired. Default: 2^26 (a layer's `dW` and
    /// `dX` at batch 256 pair; batch 2048's split across threads instead).
    pub pair_max_macs: usize,
}

impl CpuConfig {
    /// The defaults, as a constant.
    pub const DEFAULT: CpuConfig = CpuConfig {
        simd: Isa::Avx512,
        gemm_split: true,
        gemm_own: true,
        gemm_swap: true,
        gemm_in_place: true,
        gemm_parallel_min_macs: 1 << 21,
        gemm_band_min_rows: 64,
        gemm_tiles_per_thread: 1,
        parallel_min_elements: 1 << 16,
        pair_products: true,
        pair_max_macs: 1 << 26,
    };

    /// The names [`CpuConfig::set`] accepts, one per field.
    pub const KEYS: [&'static str; 11] = [
        "simd",
        "gemm_split",
        "gemm_own",
        "gemm_swap",
        "gemm_in_place",
        "gemm_parallel_min_macs",
        "gemm_band_min_rows",
        "gemm_tiles_per_thread",
        "parallel_min_elements",
        "pair_products",
        "pair_max_macs",
    ];

    /// Sets the field named `key` from text: `baseline`, `avx2` or `avx512` for `simd`, `0`/`1`
    /// (or `false`/`true`) for the switches, a whole number for the thresholds.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |expected: &'static str| ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let flag = || match value {
            "0" | "false" | "off" => Ok(false),
            "1" | "true" | "on" => Ok(true),
            _ => Err(bad("0 or 1")),
        };
        let number = || value.parse::<usize>().map_err(|_| bad("a whole number"));
        match key {
            "simd" => {
                self.simd = match value {
                    "baseline" => Isa::Baseline,
                    "avx2" => Isa::Avx2,
                    "avx512" => Isa::Avx512,
                    _ => return Err(bad("baseline, avx2 or avx512")),
                }
            }
            "gemm_split" => self.gemm_split = flag()?,
            "gemm_own" => self.gemm_own = flag()?,
            "gemm_swap" => self.gemm_swap = flag()?,
            "gemm_in_place" => self.gemm_in_place = flag()?,
            "gemm_parallel_min_macs" => self.gemm_parallel_min_macs = number()?,
            "gemm_band_min_rows" => self.gemm_band_min_rows = number()?,
            "gemm_tiles_per_thread" => self.gemm_tiles_per_thread = number()?.max(1),
            "parallel_min_elements" => self.parallel_min_elements = number()?,
            "pair_products" => self.pair_products = flag()?,
            "pair_max_macs" => self.pair_max_macs = number()?,
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// Applies a `key=value` setting (see [`CpuConfig::set`]).
    pub fn apply(&mut self, setting: &str) -> Result<(), ConfigError> {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| ConfigError::NotKeyValue(setting.to_string()))?;
        self.set(key.trim(), value.trim())
    }
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig::DEFAULT
    }
}

/// Why a setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No field has this name.
    #[error("{0:?} is not a CPU setting (one of: {keys})", keys = CpuConfig::KEYS.join(", "))]
    UnknownKey(String),
    /// The text is not `key=value`.
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    /// The value does not parse for its field.
    #[error("{key}={value:?}: expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_into_their_fields_and_bad_ones_name_the_key() {
        let mut c = CpuConfig::default();
        c.apply("gemm_swap=0").unwrap();
        c.apply("parallel_min_elements=131072").unwrap();
        c.apply("simd=avx2").unwrap();
        assert!(!c.gemm_swap);
        assert_eq!(c.parallel_min_elements, 131072);
        assert_eq!(c.simd, Isa::Avx2);
        let e = c.apply("parallel_min_elements=lots").unwrap_err();
        assert!(e.to_string().contains("parallel_min_elements") && e.to_string().contains("lots"));
        let e = c.apply("nope=1").unwrap_err();
        assert!(
            e.to_string().contains("nope") && e.to_string().contains("gemm_own"),
            "{e}"
        );
        assert_eq!(
            c.apply("gemm_own"),
            Err(ConfigError::NotKeyValue("gemm_own".into()))
        );
        // Every key is accepted by `set`.
        for key in CpuConfig::KEYS {
            let value = if key == "simd" { "baseline" } else { "1" };
            CpuConfig::default().set(key, value).unwrap();
        }
    }
}
