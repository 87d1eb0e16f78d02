//! Numbers for people: rates and sizes with a unit that keeps them readable.

/// `1.23e9` -> `1.23 G`; the unit prefix follows the magnitude.
pub fn si(value: f64) -> String {
    let prefixes = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, p) in prefixes {
        if value.abs() >= scale {
            return format!("{:.2} {p}", value / scale);
        }
    }
    format!("{value:.2} ")
}

/// Seconds as `1.234 s`, `12.3 ms` or `45.6 us`.
pub fn duration(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.3} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} us", secs * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_readable_units() {
        assert_eq!(si(1.234e9), "1.23 G");
        assert_eq!(si(5.0e5), "500.00 k");
        assert_eq!(si(12.0), "12.00 ");
        assert_eq!(si(2.5e12), "2.50 T");
        assert_eq!(duration(2.0), "2.000 s");
        assert_eq!(duration(0.0123), "12.30 ms");
        assert_eq!(duration(4.5e-5), "45.0 us");
    }
}
