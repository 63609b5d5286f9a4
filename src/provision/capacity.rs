//! Valid FSx for Lustre storage capacities, and rounding a CSI capacity range to one.
//!
//! - SCRATCH_1: 1200, 2400, then multiples of 3600 GiB.
//! - SCRATCH_2, PERSISTENT_1 SSD, PERSISTENT_2: 1200, 2400, then multiples of 2400 GiB.
//! - PERSISTENT_1 HDD: multiples of 6000 GiB at 12 MB/s/TiB, of 1800 GiB at 40 MB/s/TiB.

use crate::fsx::{DeploymentType, GIB, StorageType};

/// The largest capacity FSx's `StorageCapacity` field can carry, in GiB.
const MAX_GIB: i64 = i32::MAX as i64;

/// Why a capacity range cannot be met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// The range itself is malformed (negative, or limit below required).
    #[error("invalid capacity range: {0}")]
    Invalid(String),
    /// The smallest valid size at or above `required_bytes` exceeds `limit_bytes`.
    #[error(
        "the smallest valid {what} size at or above the requested {required_gib} GiB is {rounded_gib} GiB, above the limit of {limit_gib} GiB; valid sizes are {rule}"
    )]
    OutOfRange { what: String, required_gib: i64, rounded_gib: i64, limit_gib: i64, rule: &'static str },
}

/// The size steps of one kind of file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// Sizes allowed below the first step (1200, 2400 for SSD types).
    small: &'static [i64],
    /// Every multiple of this is valid.
    step: i64,
    /// A human description of the rule.
    pub rule: &'static str,
}

/// The capacity rule for a deployment type, storage type and (for HDD) throughput.
pub fn steps(deployment: DeploymentType, storage: StorageType, throughput: Option<i32>) -> Steps {
    match (deployment, storage) {
        (DeploymentType::Persistent1, StorageType::Hdd) if throughput == Some(12) => {
            Steps { small: &[], step: 6000, rule: "multiples of 6000 GiB (HDD at 12 MB/s/TiB)" }
        }
        (DeploymentType::Persistent1, StorageType::Hdd) => {
            Steps { small: &[], step: 1800, rule: "multiples of 1800 GiB (HDD at 40 MB/s/TiB)" }
        }
        (DeploymentType::Scratch1, _) => {
            Steps { small: &[1200, 2400], step: 3600, rule: "1200, 2400, or multiples of 3600 GiB" }
        }
        _ => Steps { small: &[1200], step: 2400, rule: "1200 or multiples of 2400 GiB" },
    }
}

impl Steps {
    /// The smallest valid size, in GiB.
    pub fn minimum(&self) -> i64 {
        self.small.first().copied().unwrap_or(self.step)
    }

    /// The smallest valid size ≥ `gib`.
    pub fn round_up(&self, gib: i64) -> i64 {
        if let Some(s) = self.small.iter().find(|&&s| s >= gib) {
            return *s;
        }
        let gib = gib.max(1);
        ((gib - 1) / self.step + 1).saturating_mul(self.step)
    }

    /// True if FSx accepts `gib` as a size.
    #[cfg(test)]
    pub fn is_valid(&self, gib: i64) -> bool {
        gib > 0 && (self.small.contains(&gib) || gib % self.step == 0)
    }
}

/// Checks a CSI capacity range on its own: not negative, limit (if set) not below required.
/// Needs no knowledge of the file system, so callers check it before any FSx call.
pub fn check_range(required_bytes: i64, limit_bytes: i64) -> Result<(), CapacityError> {
    if required_bytes < 0 || limit_bytes < 0 {
        return Err(CapacityError::Invalid("required_bytes and limit_bytes must not be negative".into()));
    }
    if limit_bytes > 0 && required_bytes > limit_bytes {
        return Err(CapacityError::Invalid(format!(
            "required_bytes {required_bytes} is above limit_bytes {limit_bytes}"
        )));
    }
    Ok(())
}

/// Rounds a CSI capacity range (bytes; 0 means unset) to a valid size in GiB.
pub fn for_range(steps: Steps, what: &str, required_bytes: i64, limit_bytes: i64) -> Result<i64, CapacityError> {
    check_range(required_bytes, limit_bytes)?;
    let required_gib = if required_bytes == 0 { 0 } else { (required_bytes as u64).div_ceil(GIB as u64) as i64 };
    let rounded = steps.round_up(required_gib.max(steps.minimum()));
    let limit_gib = if limit_bytes > 0 { limit_bytes / GIB } else { MAX_GIB };
    if rounded > limit_gib.min(MAX_GIB) {
        return Err(CapacityError::OutOfRange {
            what: what.to_string(),
            required_gib,
            rounded_gib: rounded,
            limit_gib: limit_gib.min(MAX_GIB),
            rule: steps.rule,
        });
    }
    Ok(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentType::*;
    use StorageType::*;

    fn round(d: DeploymentType, s: StorageType, t: Option<i32>, gib: i64) -> i64 {
        for_range(steps(d, s, t), "x", gib * GIB, 0).unwrap()
    }

    #[test]
    fn scratch_1() {
        assert_eq!(round(Scratch1, Ssd, None, 0), 1200);
        assert_eq!(round(Scratch1, Ssd, None, 1), 1200);
        assert_eq!(round(Scratch1, Ssd, None, 1200), 1200);
        assert_eq!(round(Scratch1, Ssd, None, 1201), 2400);
        assert_eq!(round(Scratch1, Ssd, None, 2401), 3600);
        assert_eq!(round(Scratch1, Ssd, None, 3000), 3600);
        assert_eq!(round(Scratch1, Ssd, None, 3601), 7200);
    }

    #[test]
    fn ssd_types() {
        for d in [Scratch2, Persistent1, Persistent2] {
            assert_eq!(round(d, Ssd, None, 1000), 1200);
            assert_eq!(round(d, Ssd, None, 2000), 2400);
            assert_eq!(round(d, Ssd, None, 2401), 4800);
            assert_eq!(round(d, Ssd, None, 4000), 4800);
        }
    }

    #[test]
    fn hdd() {
        assert_eq!(round(Persistent1, Hdd, Some(12), 1), 6000);
        assert_eq!(round(Persistent1, Hdd, Some(12), 6001), 12000);
        assert_eq!(round(Persistent1, Hdd, Some(40), 1), 1800);
        assert_eq!(round(Persistent1, Hdd, Some(40), 2000), 3600);
    }

    #[test]
    fn bytes_round_up_to_gib() {
        assert_eq!(for_range(steps(Scratch2, Ssd, None), "x", 1200 * GIB + 1, 0).unwrap(), 2400);
        assert_eq!(for_range(steps(Scratch2, Ssd, None), "x", 1, 0).unwrap(), 1200);
    }

    #[test]
    fn limits() {
        let s = steps(Scratch1, Ssd, None);
        assert_eq!(for_range(s, "x", 3000 * GIB, 3600 * GIB).unwrap(), 3600);
        assert!(matches!(
            for_range(s, "x", 3000 * GIB, 3500 * GIB),
            Err(CapacityError::OutOfRange { rounded_gib: 3600, .. })
        ));
        assert!(matches!(for_range(s, "x", 0, GIB), Err(CapacityError::OutOfRange { .. })));
        assert!(matches!(for_range(s, "x", 2 * GIB, GIB), Err(CapacityError::Invalid(_))));
        assert!(matches!(for_range(s, "x", -1, 0), Err(CapacityError::Invalid(_))));
        assert!(matches!(for_range(s, "x", i64::MAX, 0), Err(CapacityError::OutOfRange { .. })));
    }

    #[test]
    fn validity() {
        let s = steps(Scratch1, Ssd, None);
        assert!(s.is_valid(2400) && s.is_valid(7200) && !s.is_valid(4800));
    }
}
