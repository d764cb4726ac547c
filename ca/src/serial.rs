use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A certificate serial number, kept as its big-endian magnitude without leading zero bytes.
///
/// DER adds a zero byte in front of serials whose top bit is set; normalising here means a
/// serial read from a certificate, a CRL or the command line compares equal however it was
/// encoded.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 128 random bits, as Fabric's cryptogen draws them: unguessable serials keep two
    /// certificates from the same CA from ever colliding.
    pub fn random() -> Serial {
        let rng = SystemRandom::new();
        loop {
            let mut bytes = [0u8; 16];
            rng.fill(&mut bytes)
                .expect("the operating system's random number generator failed");
            let serial = Serial::from_bytes(&bytes);
            // RFC 5280 wants serials positive; zero is the only value that could break that.
            if !serial.0.is_empty() {
                return serial;
            }
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Serial {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        Serial(bytes[start..].to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("00");
        }
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = String;

    /// Accepts the forms admins copy from other tools: `0x` prefixes, OpenSSL's colon-separated
    /// bytes and either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let body = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: String = body.chars().filter(|&c| c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid serial number {s:?}: expected hexadecimal digits"
            ));
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| format!("invalid serial number {s:?}: {e}"))?;
        Ok(Serial::from_bytes(&bytes))
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_do_not_matter() {
        assert_eq!(
            Serial::from_bytes(&[0, 0, 0x81, 2]),
            Serial::from_bytes(&[0x81, 2])
        );
        assert_eq!(Serial::from_bytes(&[0, 0x81, 2]).to_string(), "8102");
    }

    #[test]
    fn parses_openssl_and_hex_forms() {
        let serial = Serial::from_bytes(&[0x0a, 0xbc]);
        assert_eq!("0ABC".parse::<Serial>(), Ok(serial.clone()));
        assert_eq!("0a:bc".parse::<Serial>(), Ok(serial.clone()));
        assert_eq!("0xabc".parse::<Serial>(), Ok(serial));
        assert!("xyz".parse::<Serial>().is_err());
        assert!("".parse::<Serial>().is_err());
    }

    #[test]
    fn random_serials_are_distinct_and_fit_sixteen_bytes() {
        let a = Serial::random();
        let b = Serial::random();
        assert_ne!(a, b);
        assert!(a.as_bytes().len() <= 16 && !a.as_bytes().is_empty());
    }
}
