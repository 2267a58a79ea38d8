//! Reading JS arguments: numbers, RID strings and the names of platforms and kinds.
//!
//! Pure Rust, so it is tested on the host. A bad argument is the caller's mistake, not
//! a state the core refused: it becomes a JS `TypeError` without a `code`.

use pasid_core::vcmd::VtdRevision;
use pasid_core::{DeviceKind, PasidKind, Platform, Rid};

/// An argument JS passed that the layer cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

/// An integer from a JS number, checked against `0..=max`.
pub fn int(what: &str, value: f64, max: u32) -> Result<u32, ArgError> {
    if value.fract() == 0.0 && value >= 0.0 && value <= f64::from(max) {
        Ok(value as u32)
    } else {
        Err(ArgError(format!(
            "{what} must be an integer in 0..={max}, got {value}"
        )))
    }
}

/// A platform name: `p1` or `p2` (any case).
pub fn platform(name: &str) -> Result<Platform, ArgError> {
    match name.to_ascii_lowercase().as_str() {
        "p1" => Ok(Platform::P1),
        "p2" => Ok(Platform::P2),
        _ => Err(ArgError(format!(
            "platform must be \"p1\" or \"p2\", got {name:?}"
        ))),
    }
}

/// A PASID kind: `local` or `shared` (any case).
pub fn pasid_kind(name: &str) -> Result<PasidKind, ArgError> {
    match name.to_ascii_lowercase().as_str() {
        "local" => Ok(PasidKind::Local),
        "shared" => Ok(PasidKind::Shared),
        _ => Err(ArgError(format!(
            "PASID kind must be \"local\" or \"shared\", got {name:?}"
        ))),
    }
}

/// A device kind: `dedicated` or `shared-wq` (also the snapshot's `Dedicated`/`SharedWq`).
pub fn device_kind(name: &str) -> Result<DeviceKind, ArgError> {
    match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "dedicated" => Ok(DeviceKind::Dedicated),
        "sharedwq" => Ok(DeviceKind::SharedWq),
        _ => Err(ArgError(format!(
            "device kind must be \"dedicated\" or \"shared-wq\", got {name:?}"
        ))),
    }
}

/// A VT-d revision of the virtual command registers: `3.0`/`3.1` or `3.3` (default).
pub fn revision(name: &str) -> Result<VtdRevision, ArgError> {
    match name
        .trim_start_matches(['v', 'V'])
        .replace('_', ".")
        .as_str()
    {
        "3.0" | "3.1" => Ok(VtdRevision::V3_0),
        "3.3" | "" => Ok(VtdRevision::V3_3),
        _ => Err(ArgError(format!(
            "VT-d revision must be \"3.0\", \"3.1\" or \"3.3\", got {name:?}"
        ))),
    }
}

/// A RID in the usual text form: `ssss:bb:dd.f` or `bb:dd.f` (hex; function 0..=7).
pub fn rid(text: &str) -> Result<Rid, ArgError> {
    let bad = || {
        ArgError(format!(
            "RID must look like \"0000:03:00.1\" or \"03:00.1\", got {text:?}"
        ))
    };
    let hex = |s: &str, max: u32| -> Result<u32, ArgError> {
        if s.is_empty() || s.len() > 4 {
            return Err(bad());
        }
        match u32::from_str_radix(s, 16) {
            Ok(v) if v <= max => Ok(v),
            _ => Err(bad()),
        }
    };
    let parts: Vec<&str> = text.trim().split(':').collect();
    let (segment, bus, devfn) = match parts.as_slice() {
        [bus, devfn] => (0, hex(bus, 0xff)?, *devfn),
        [seg, bus, devfn] => (hex(seg, 0xffff)?, hex(bus, 0xff)?, *devfn),
        _ => return Err(bad()),
    };
    let (dev, func) = devfn.split_once('.').ok_or_else(bad)?;
    let dev = hex(dev, 0x1f)?;
    let func = hex(func, 7)?;
    Ok(Rid::new(
        segment as u16,
        ((bus << 8) | (dev << 3) | func) as u16,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rids_in_both_forms() {
        assert_eq!(rid("0000:03:00.1").unwrap(), Rid::new(0, 0x0301));
        assert_eq!(rid("03:00.1").unwrap(), Rid::new(0, 0x0301));
        assert_eq!(rid("0001:0a:1f.7").unwrap(), Rid::new(1, 0x0aff));
        assert_eq!(rid(" 00:01.0 ").unwrap().to_string(), "0000:00:01.0");
        for bad in [
            "",
            "3",
            "03:00",
            "03:20.0",
            "03:00.8",
            "100:00.0",
            "x:00.0",
            "1:2:3:4.0",
        ] {
            assert!(rid(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rid_text_round_trips() {
        for bdf in [0u16, 0x0301, 0xffff, 0x0a00] {
            let r = Rid::new(0x12, bdf);
            assert_eq!(rid(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn reads_names_in_any_case() {
        assert_eq!(platform("P2").unwrap(), Platform::P2);
        assert_eq!(pasid_kind("Shared").unwrap(), PasidKind::Shared);
        assert_eq!(device_kind("SharedWq").unwrap(), DeviceKind::SharedWq);
        assert_eq!(device_kind("shared-wq").unwrap(), DeviceKind::SharedWq);
        assert_eq!(device_kind("dedicated").unwrap(), DeviceKind::Dedicated);
        assert!(platform("p3").is_err());
        assert!(pasid_kind("global").is_err());
        assert!(device_kind("vf").is_err());
        assert_eq!(revision("3.1").unwrap(), VtdRevision::V3_0);
        assert_eq!(revision("V3_3").unwrap(), VtdRevision::V3_3);
        assert!(revision("4.0").is_err());
    }

    #[test]
    fn checks_numbers() {
        assert_eq!(int("pasid", 5.0, 10).unwrap(), 5);
        assert_eq!(int("pasid", 10.0, 10).unwrap(), 10);
        for bad in [-1.0, 1.5, 11.0, f64::NAN, f64::INFINITY] {
            assert!(int("pasid", bad, 10).is_err(), "{bad} was accepted");
        }
    }
}
