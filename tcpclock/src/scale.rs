//! The TDF as the BPF programs see it: an integer in thousandths.

use crate::Error;

/// `tdf × 1000`, rounded. The programs do integer arithmetic only.
pub fn tdf_milli(tdf: f64) -> Result<u32, Error> {
    if !(0.001..=1_000_000.0).contains(&tdf) {
        return Err(Error::BadTdf(tdf));
    }
    Ok((tdf * 1000.0).round() as u32)
}

/// The congestion-control name for a TDF, e.g. `cubic_d10`, `cubic_d2_5`; `attempt` > 0 adds
/// a suffix for when another run holds the plain name. At most 15 bytes (the kernel's limit).
pub fn cubic_name(tdf: f64, attempt: u32) -> String {
    let milli = (tdf * 1000.0).round() as u64;
    let mut tdf_part = (milli / 1000).to_string();
    if milli % 1000 != 0 {
        let frac = format!("{:03}", milli % 1000);
        tdf_part.push('_');
        tdf_part.push_str(frac.trim_end_matches('0'));
    }
    let mut name = format!("cubic_d{tdf_part}");
    if attempt > 0 {
        name = format!("{name}.{attempt}");
    }
    name.truncate(15);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdf_becomes_thousandths() {
        assert_eq!(tdf_milli(10.0).ok(), Some(10_000));
        assert_eq!(tdf_milli(2.5).ok(), Some(2_500));
        assert!(tdf_milli(0.0).is_err());
        assert!(tdf_milli(f64::NAN).is_err());
    }

    #[test]
    fn names_fit_the_kernel_limit() {
        assert_eq!(cubic_name(10.0, 0), "cubic_d10");
        assert_eq!(cubic_name(2.5, 0), "cubic_d2_5");
        assert_eq!(cubic_name(1.25, 3), "cubic_d1_25.3");
        assert!(cubic_name(123_456.789, 12).len() <= 15);
    }
}
