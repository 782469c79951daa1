//! Switches for benchmarking the executor's choices against each other. Each has an environment
//! variable, read the first time the switch is used, and can also be changed while a process runs
//! ([`set`]): `ferroflow bench --ab NAME=VALUE` alternates the default and a setting every few steps
//! inside one process, which on a machine whose speed drifts from minute to minute is the only
//! comparison that holds still (docs/performance.md).
//!
//! None of them changes a result: every alternative computes the same values in the same order
//! (each one's tests check it bit for bit). A change takes effect at the next kernel that reads it;
//! a product or kernel already running finishes as it started.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One switch; its value is a `usize` (`0`/`1` for the on/off ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// `FERROFLOW_SIMD=baseline|avx2|avx512`: the widest instruction set the elementwise loops and
    /// the packing of transposed operands may use (values 0, 1, 2; default 2, capped by the CPU).
    Simd,
    /// `FERROFLOW_GEMM_SPLIT=0`: multi-threaded products on the `gemm` crate's own parallel loop
    /// instead of one band of rows per thread (default 1).
    GemmSplit,
    /// `FERROFLOW_GEMM_OWN=0`: products on the crate's driver, which allocates its packing workspace
    /// in every call, instead of ours around its microkernels (default 1).
    GemmOwn,
    /// `FERROFLOW_GEMM_SWAP=0`: few-row products with a transposed `b` run transposed as in the
    /// crate (default 1).
    GemmSwap,
    /// `FERROFLOW_GEMM_PAR_MIN=N`: products of fewer multiply-adds run on one thread (default 2^21).
    GemmParMin,
    /// `FERROFLOW_PAR_MIN=N`: elementwise kernels, reductions and optimizer updates split across
    /// threads from this many elements (default 2^16).
    ParMin,
    /// `FERROFLOW_PAIR_PRODUCTS=0`: two independent small products of a step do not run side by
    /// side, one per thread (default 1).
    PairProducts,
    /// `FERROFLOW_PAIR_MAX_MACS=N`: products run side by side only below this many multiply-adds
    /// each (default 2^26).
    PairMaxMacs,
    /// `FERROFLOW_GEMM_BAND_MIN_ROWS=N`: multi-threaded products of fewer rows split their columns
    /// in halves instead of their rows in bands (default 64).
    GemmBandMinRows,
    /// `FERROFLOW_FUSE_PRODUCTS=0`: plans compiled from then on keep a product and the bias add or
    /// activation gradient that alone reads it as two steps, instead of one that runs the second op
    /// over each band of rows of the product as soon as the band is done (default 1).
    FuseProducts,
    /// `FERROFLOW_HUGE_PAGES=0`: the large buffers of [`crate::alloc::HugePageAlloc`] (where a
    /// program installs it) are not marked for transparent huge pages (default 1).
    HugePages,
    /// `FERROFLOW_GEMM_IN_PLACE=0`: the transposed left operand of a weight gradient `Xᵀ·dY` is
    /// packed as the crate packs it, instead of brought into L2 and read in place (default 1).
    GemmInPlace,
}

impl Switch {
    /// Every switch, in the order of [`VALUES`].
    pub const ALL: [Switch; 12] = [
        Switch::Simd,
        Switch::GemmSplit,
        Switch::GemmOwn,
        Switch::GemmSwap,
        Switch::GemmParMin,
        Switch::ParMin,
        Switch::PairProducts,
        Switch::PairMaxMacs,
        Switch::GemmBandMinRows,
        Switch::FuseProducts,
        Switch::HugePages,
        Switch::GemmInPlace,
    ];

    /// Its environment variable.
    pub fn env_name(self) -> &'static str {
        match self {
            Switch::Simd => "FERROFLOW_SIMD",
            Switch::GemmSplit => "FERROFLOW_GEMM_SPLIT",
            Switch::GemmOwn => "FERROFLOW_GEMM_OWN",
            Switch::GemmSwap => "FERROFLOW_GEMM_SWAP",
            Switch::GemmParMin => "FERROFLOW_GEMM_PAR_MIN",
            Switch::ParMin => "FERROFLOW_PAR_MIN",
            Switch::PairProducts => "FERROFLOW_PAIR_PRODUCTS",
            Switch::PairMaxMacs => "FERROFLOW_PAIR_MAX_MACS",
            Switch::GemmBandMinRows => "FERROFLOW_GEMM_BAND_MIN_ROWS",
            Switch::FuseProducts => "FERROFLOW_FUSE_PRODUCTS",
            Switch::HugePages => "FERROFLOW_HUGE_PAGES",
            Switch::GemmInPlace => "FERROFLOW_GEMM_IN_PLACE",
        }
    }

    /// Its value when nothing sets it.
    pub fn default_value(self) -> usize {
        match self {
            Switch::Simd => SIMD_AVX512,
            Switch::GemmParMin => crate::ops::gemm::DEFAULT_PARALLEL_MIN_MACS,
            Switch::ParMin => crate::ops::kernels::PARALLEL_MIN_ELEMENTS,
            Switch::PairMaxMacs => crate::ops::gemm::PAIR_MAX_MACS,
            Switch::GemmBandMinRows => crate::ops::gemm::ROW_BAND_MIN_ROWS,
            _ => 1,
        }
    }

    /// The value a text gives it: for the on/off switches `0` is off and anything else on (as the
    /// environment variables have always been read); the thresholds take a number; `FERROFLOW_SIMD`
    /// a name.
    pub fn parse(self, text: &str) -> Result<usize, String> {
        match self {
            Switch::Simd => match text {
                "baseline" => Ok(0),
                "avx2" => Ok(1),
                "avx512" => Ok(SIMD_AVX512),
                _ => Err(format!(
                    "{}: {text:?} is not baseline, avx2 or avx512",
                    self.env_name()
                )),
            },
            Switch::GemmParMin
            | Switch::ParMin
            | Switch::PairMaxMacs
            | Switch::GemmBandMinRows
            | Switch::FuseProducts => text
                .parse()
                .map_err(|_| format!("{}: {text:?} is not a whole number", self.env_name())),
            _ => Ok(usize::from(text != "0")),
        }
    }

    /// The switch whose environment variable is `name`.
    pub fn named(name: &str) -> Option<Switch> {
        Switch::ALL.into_iter().find(|s| s.env_name() == name)
    }
}

/// `FERROFLOW_SIMD`'s value for AVX-512 (the widest).
const SIMD_AVX512: usize = 2;

/// Not read from the environment yet.
const UNREAD: usize = usize::MAX;

static VALUES: [AtomicUsize; Switch::ALL.len()] =
    [const { AtomicUsize::new(UNREAD) }; Switch::ALL.len()];

/// The switch's value: [`set`]'s last, else its environment variable's (a text it cannot parse
/// counts as unset), else the default.
#[inline]
pub fn get(switch: Switch) -> usize {
    let slot = &VALUES[switch as usize];
    let v = slot.load(Ordering::Relaxed);
    if v != UNREAD {
        return v;
    }
    let from_env = std::env::var(switch.env_name())
        .ok()
        .and_then(|t| switch.parse(&t).ok())
        .unwrap_or_else(|| switch.default_value());
    // A `set` that ran meanwhile wins.
    match slot.compare_exchange(UNREAD, from_env, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => from_env,
        Err(current) => current,
    }
}

/// The switch's value if something has read or set it already, else its default; never reads the
/// environment or allocates (for the global allocator, [`crate::alloc::HugePageAlloc`]).
#[inline]
pub fn peek(switch: Switch) -> usize {
    match VALUES[switch as usize].load(Ordering::Relaxed) {
        UNREAD => switch.default_value(),
        v => v,
    }
}

/// Whether an on/off switch is on.
#[inline]
pub fn on(switch: Switch) -> bool {
    get(switch) != 0
}

/// Sets a switch for the rest of the process (or until the next `set`). `usize::MAX` is stored as
/// one less (the largest threshold there is), since it marks a switch not read yet.
pub fn set(switch: Switch, value: usize) {
    VALUES[switch as usize].store(value.min(UNREAD - 1), Ordering::Relaxed);
}

/// Parses `NAME=VALUE` (an environment variable of a switch and a value for it).
pub fn parse_setting(text: &str) -> Result<(Switch, usize), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let switch = Switch::named(name).ok_or_else(|| {
        let names: Vec<&str> = Switch::ALL.iter().map(|s| s.env_name()).collect();
        format!("{name:?} is not a switch (one of {})", names.join(", "))
    })?;
    Ok((switch, switch.parse(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_their_switch() {
        assert_eq!(
            parse_setting("FERROFLOW_GEMM_SWAP=0"),
            Ok((Switch::GemmSwap, 0))
        );
        assert_eq!(
            parse_setting("FERROFLOW_PAR_MIN=131072"),
            Ok((Switch::ParMin, 131072))
        );
        assert_eq!(parse_setting("FERROFLOW_SIMD=avx2"), Ok((Switch::Simd, 1)));
        let e = parse_setting("FERROFLOW_PAR_MIN=lots").unwrap_err();
        assert!(e.contains("FERROFLOW_PAR_MIN") && e.contains("lots"), "{e}");
        let e = parse_setting("FERROFLOW_NOPE=1").unwrap_err();
        assert!(
            e.contains("FERROFLOW_NOPE") && e.contains("FERROFLOW_GEMM_OWN"),
            "{e}"
        );
        assert!(parse_setting("FERROFLOW_GEMM_OWN").is_err());
        for (i, s) in Switch::ALL.into_iter().enumerate() {
            assert_eq!(Switch::named(s.env_name()), Some(s));
            // `VALUES` is indexed by the discriminant.
            assert_eq!(s as usize, i, "{s:?}");
        }
    }

    /// `set` changes what the kernels read, and the value is back after `set` again. (Pairing,
    /// because no result depends on it: other tests may run products meanwhile.)
    #[test]
    fn set_changes_the_value_read() {
        let before = get(Switch::PairProducts);
        set(Switch::PairProducts, 0);
        assert!(!on(Switch::PairProducts));
        set(Switch::PairProducts, 1);
        assert!(on(Switch::PairProducts));
        set(Switch::PairProducts, before);
        // The largest value stays a value, not "unread".
        let par_min = get(Switch::PairMaxMacs);
        set(Switch::PairMaxMacs, usize::MAX);
        assert_eq!(get(Switch::PairMaxMacs), usize::MAX - 1);
        set(Switch::PairMaxMacs, par_min);
        assert_eq!(
            get(Switch::ParMin),
            crate::ops::kernels::parallel_min_elements()
        );
    }
}
