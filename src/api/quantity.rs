//! Kubernetes quantity syntax (`100m`, `0.5`, `64Mi`, `1G`, `1e3`).
//!
//! Quantities are parsed exactly (integer arithmetic, no floats) and rounded up to the unit the
//! caller asks for, as Kubernetes does: `0.1m` CPU is 1 millicore, `0.5` bytes is 1 byte. A
//! value that does not fit in `u64` units is an error rather than a wrapped or clamped number,
//! because a silently wrong limit is worse than a rejected manifest.

/// Why a quantity string was rejected; every variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {input:?} is not valid (expected a number with an optional suffix like 100m, 0.5, 64Mi, 1G or 1e3)")]
    Syntax { input: String },
    #[error("quantity {input:?} must not be negative")]
    Negative { input: String },
    #[error("quantity {input:?} is too large")]
    Overflow { input: String },
}

/// Deserializes a map of quantities written as strings or plain YAML/JSON numbers (`cpu: 1`,
/// `memory: 134217728`, `cpu: 0.5`), as Kubernetes accepts them; numbers are kept as their
/// decimal text so validation sees (and reports) what was written.
pub fn deserialize_map<'de, D>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Text(String);
    impl<'de> serde::Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Text;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a quantity like 100m, 0.5, 64Mi or a plain number")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                    // Display never uses an exponent; the quantity parser reads any length.
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let m: std::collections::BTreeMap<String, Text> = serde::Deserialize::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A quantity split into its exact parts: `sign * digits * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    /// Significant digits with leading and trailing zeros stripped.
    digits: u128,
    exp10: i32,
    exp2: u32,
}

/// More significant digits than this cannot be held in `u128`; Kubernetes itself caps
/// precision, and no real CPU or memory amount needs it.
const MAX_DIGITS: usize = 38;
/// Bounds the exponent so that `exp10` arithmetic cannot overflow `i32`.
const MAX_EXPONENT: i32 = 10_000;

fn suffix(s: &str) -> Option<(i32, u32)> {
    Some(match s {
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "" => (0, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => return None,
    })
}

fn parse(input: &str) -> Result<Parsed, QuantityError> {
    let syntax = || QuantityError::Syntax {
        input: input.to_string(),
    };
    if input.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (negative, rest) = match input.as_bytes()[0] {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, tail) = rest.split_at(number_len);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(syntax());
    }
    // "E" alone is the exa suffix; "E3"/"e3" is an exponent.
    let (exp10, exp2) = match suffix(tail) {
        Some(s) => s,
        None => {
            let exp = tail.strip_prefix(['e', 'E']).ok_or_else(syntax)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            let negative_exp = exp.starts_with('-');
            let trimmed = digits.trim_start_matches('0');
            let magnitude = match trimmed.parse::<i32>() {
                Ok(m) if m <= MAX_EXPONENT => m,
                _ if trimmed.is_empty() => 0,
                // Tiny positive values round up to one unit whatever the exact exponent.
                _ if negative_exp => MAX_EXPONENT,
                _ => {
                    return Err(QuantityError::Overflow {
                        input: input.to_string(),
                    })
                }
            };
            (if negative_exp { -magnitude } else { magnitude }, 0)
        }
    };

    let all_digits = format!("{int_part}{frac_part}");
    let significant = all_digits.trim_start_matches('0');
    let without_trailing = significant.trim_end_matches('0');
    let trailing_zeros = significant.len() - without_trailing.len();
    if without_trailing.len() > MAX_DIGITS {
        return Err(QuantityError::Overflow {
            input: input.to_string(),
        });
    }
    let digits: u128 = if without_trailing.is_empty() {
        0
    } else {
        without_trailing.parse().map_err(|_| syntax())?
    };
    // Both counts are bounded by the 4 MiB manifest limit long before they reach i32::MAX,
    // but a direct caller could pass anything, so convert checked.
    let shift = i32::try_from(trailing_zeros)
        .ok()
        .zip(i32::try_from(frac_part.len()).ok())
        .and_then(|(t, f)| exp10.checked_add(t)?.checked_sub(f))
        .ok_or_else(|| QuantityError::Overflow {
            input: input.to_string(),
        })?;
    Ok(Parsed {
        negative,
        digits,
        exp10: shift,
        exp2,
    })
}

/// `ceil(q * 10^scale)` as `u64`, rejecting negative values.
fn to_units(input: &str, scale: i32) -> Result<u64, QuantityError> {
    let q = parse(input)?;
    let overflow = || QuantityError::Overflow {
        input: input.to_string(),
    };
    if q.digits == 0 {
        return Ok(0);
    }
    if q.negative {
        return Err(QuantityError::Negative {
            input: input.to_string(),
        });
    }
    let numerator = 1u128
        .checked_shl(q.exp2)
        .and_then(|p| q.digits.checked_mul(p))
        .ok_or_else(overflow)?;
    let exp = q.exp10 + scale;
    let value = if exp >= 0 {
        let factor = u32::try_from(exp)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
            .ok_or_else(overflow)?;
        numerator.checked_mul(factor).ok_or_else(overflow)?
    } else {
        match u32::try_from(-exp).ok().and_then(|e| 10u128.checked_pow(e)) {
            Some(divisor) => numerator.div_ceil(divisor),
            // The divisor exceeds u128, so the positive value is below one unit.
            None => 1,
        }
    };
    u64::try_from(value).map_err(|_| overflow())
}

/// CPU in millicores: `100m` → 100, `0.5` → 500, `2` → 2000; sub-millicore amounts round up.
pub fn parse_cpu_millis(s: &str) -> Result<u64, QuantityError> {
    to_units(s, 3)
}

/// Memory or storage in bytes: `64Mi`, `1G`, `128974848`, `129e6`; fractions round up.
pub fn parse_bytes(s: &str) -> Result<u64, QuantityError> {
    to_units(s, 0)
}

/// A plain count such as allocatable `pods` (`110`); fractions round up.
pub fn parse_count(s: &str) -> Result<u64, QuantityError> {
    to_units(s, 0)
}

/// Whole cores print without a suffix, as `kubectl` shows them.
pub fn format_cpu_millis(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// The largest binary suffix that divides exactly, else the plain number, so the output parses
/// back to the same value.
pub fn format_bytes(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (shift, suffix) in [
        (60, "Ei"),
        (50, "Pi"),
        (40, "Ti"),
        (30, "Gi"),
        (20, "Mi"),
        (10, "Ki"),
    ] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_maps_take_strings_and_plain_numbers() {
        let m = deserialize_map(serde_json::json!({
            "cpu": 1, "memory": 134_217_728u64, "a": 0.5, "b": "64Mi", "c": -1
        }))
        .unwrap();
        let get = |k: &str| m[k].as_str();
        assert_eq!(
            (get("cpu"), get("memory"), get("a"), get("b"), get("c")),
            ("1", "134217728", "0.5", "64Mi", "-1")
        );
        assert_eq!(parse_cpu_millis(get("a")), Ok(500));
        assert!(deserialize_map(serde_json::json!({"cpu": [1]})).is_err());
        assert!(deserialize_map(serde_json::json!({"cpu": true})).is_err());
    }

    #[test]
    fn cpu_quantities_parse_to_millicores_rounding_up() {
        for (input, want) in [
            ("100m", 100),
            ("0.5", 500),
            (".5", 500),
            ("2", 2000),
            ("+2", 2000),
            ("1.", 1000),
            ("0", 0),
            ("-0", 0),
            ("0.0001", 1),
            ("1500u", 2),
            ("1000000n", 1),
            ("1n", 1),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e-3", 1),
            ("250e-3", 250),
            ("1k", 1_000_000),
            ("0.1m", 1),
            ("1.000000000000000000000000000000000000000000000000", 1000),
            ("0.000000000000000000000000000000000000000000000001", 1),
        ] {
            assert_eq!(parse_cpu_millis(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn byte_quantities_parse_decimal_binary_and_exponent_forms() {
        for (input, want) in [
            ("64Mi", 64 << 20),
            ("1G", 1_000_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129E6", 129_000_000),
            ("1.5Gi", 3 << 29),
            ("1Ki", 1024),
            ("1k", 1000),
            ("0.5", 1),
            ("1500m", 2),
            ("1E", 1_000_000_000_000_000_000),
            ("15Ei", 15 << 60),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_bytes(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn malformed_quantities_are_syntax_errors_naming_the_input() {
        for input in [
            "abc", "1x", "Mi", ".", "1..5", "1.2.3", "1 Mi", " 1", "1Mi ", "1e", "1e+", "1ee3",
            "--1", "+-1", "1mi", "1KI", "0x10", "1,5", "1e3Mi", "∞",
        ] {
            let err = parse_bytes(input).unwrap_err();
            assert!(
                matches!(err, QuantityError::Syntax { .. }),
                "{input}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
        assert_eq!(parse_bytes(""), Err(QuantityError::Empty));
    }

    #[test]
    fn negative_amounts_are_rejected() {
        for input in ["-1", "-100m", "-1Gi", "-.5", "-1e-9"] {
            assert_eq!(
                parse_cpu_millis(input),
                Err(QuantityError::Negative {
                    input: input.into()
                })
            );
        }
    }

    #[test]
    fn values_beyond_u64_are_overflow_errors_not_wrapped() {
        for input in [
            "18446744073709551616",
            "16Ei",
            "1e20",
            "1e99999",
            "1e999999999999",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                parse_bytes(input),
                Err(QuantityError::Overflow {
                    input: input.into()
                }),
                "{input}"
            );
        }
        assert!(matches!(
            parse_cpu_millis("18446744073709552"),
            Err(QuantityError::Overflow { .. })
        ));
        assert_eq!(parse_cpu_millis("1e-99999"), Ok(1));
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        assert_eq!(format_cpu_millis(500), "500m");
        assert_eq!(format_cpu_millis(2000), "2");
        assert_eq!(format_cpu_millis(0), "0");
        assert_eq!(format_cpu_millis(1500), "1500m");
        assert_eq!(format_bytes(64 << 20), "64Mi");
        assert_eq!(format_bytes(3 << 29), "1536Mi");
        assert_eq!(format_bytes(1_000_000_000), "1000000000");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(u64::MAX), u64::MAX.to_string());
        for v in [0, 1, 999, 1024, 1 << 40, 123_456_789, u64::MAX] {
            assert_eq!(parse_bytes(&format_bytes(v)), Ok(v));
        }
        for v in [0, 1, 999, 1000, 2500, 64_000] {
            assert_eq!(parse_cpu_millis(&format_cpu_millis(v)), Ok(v));
        }
    }
}
