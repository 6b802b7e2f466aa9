//! GeoIP enrichment from a MaxMind `.mmdb` city database (GeoLite2-City, GeoIP2-City or any
//! database with the same layout).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Where an IP address is, as far as the database knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Geo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open geoip database {path}: {reason}")]
pub struct GeoError {
    path: String,
    reason: String,
}

pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

// The subset of the GeoIP2 City layout we read.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<Vec<Named<'a>>>,
    #[serde(borrow, default)]
    city: Option<Named<'a>>,
    #[serde(borrow, default)]
    location: Option<Location<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<BTreeMap<&'a str, &'a str>>,
}

impl Named<'_> {
    fn english(&self) -> Option<String> {
        self.names.as_ref().and_then(|n| n.get("en")).map(|s| (*s).to_owned())
    }
}

#[derive(Deserialize)]
struct Location<'a> {
    #[serde(borrow, default)]
    time_zone: Option<&'a str>,
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| GeoError { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self { reader })
    }

    /// None when the address is private, unknown to the database, or the record is unreadable.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let result = self.reader.lookup(ip).ok()?;
        let record: Record<'_> = result.decode().ok()??;
        let region = record
            .subdivisions
            .as_ref()
            .and_then(|s| s.first())
            .and_then(|s| s.iso_code.map(str::to_owned).or_else(|| s.english()));
        let geo = Geo {
            country: record.country.and_then(|c| c.iso_code.map(str::to_owned)),
            region,
            city: record.city.and_then(|c| c.english()),
            time_zone: record.location.and_then(|l| l.time_zone.map(str::to_owned)),
        };
        (geo != Geo::default()).then_some(geo)
    }
}

/// A tiny writer of MaxMind DB files, so tests use a real `.mmdb` read by the real reader
/// (MaxMind's own test databases are not packaged with the crate). Format:
/// <https://maxmind.github.io/MaxMind-DB/>.
#[cfg(test)]
pub(crate) mod test_mmdb {
    /// A value of the MaxMind DB data format.
    pub enum V<'a> {
        Str(&'a str),
        U16(u16),
        U32(u32),
        U64(u64),
        Map(Vec<(&'a str, V<'a>)>),
        Array(Vec<V<'a>>),
    }

    fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
        assert!(size < 29, "tests only need short values");
        if kind <= 7 {
            out.push((kind << 5) | size as u8);
        } else {
            out.push(size as u8);
            out.push(kind - 7);
        }
    }

    fn uint(out: &mut Vec<u8>, kind: u8, value: u64) {
        let bytes = value.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        control(out, kind, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    }

    pub fn encode(out: &mut Vec<u8>, v: &V<'_>) {
        match v {
            V::Str(s) => {
                control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            V::U16(n) => uint(out, 5, u64::from(*n)),
            V::U32(n) => uint(out, 6, u64::from(*n)),
            V::U64(n) => uint(out, 9, *n),
            V::Map(entries) => {
                control(out, 7, entries.len());
                for (k, v) in entries {
                    encode(out, &V::Str(k));
                    encode(out, v);
                }
            }
            V::Array(items) => {
                control(out, 11, items.len());
                for item in items {
                    encode(out, item);
                }
            }
        }
    }

    /// An IPv4 database where `prefix`/`bits` maps to `record` and every other address has no data.
    pub fn ipv4_database(prefix: [u8; 4], bits: usize, record: &V<'_>) -> Vec<u8> {
        let node_count = bits as u32;
        let mut data = Vec::new();
        encode(&mut data, record);
        let mut out = Vec::new();
        let prefix = u32::from_be_bytes(prefix);
        for node in 0..bits {
            let bit = (prefix >> (31 - node)) & 1;
            let onward = if node + 1 == bits { node_count + 16 } else { node as u32 + 1 };
            let (left, right) = if bit == 0 { (onward, node_count) } else { (node_count, onward) };
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        encode(
            &mut out,
            &V::Map(vec![
                ("binary_format_major_version", V::U16(2)),
                ("binary_format_minor_version", V::U16(0)),
                ("build_epoch", V::U64(1_700_000_000)),
                ("database_type", V::Str("GeoIP2-City")),
                ("description", V::Map(vec![("en", V::Str("whisperer test database"))])),
                ("ip_version", V::U16(4)),
                ("languages", V::Array(vec![V::Str("en")])),
                ("node_count", V::U32(node_count)),
                ("record_size", V::U16(24)),
            ]),
        );
        out
    }

    /// London, England, GB for 81.2.69.0/24 — written to `path`.
    pub fn write_london(path: &std::path::Path) {
        let record = V::Map(vec![
            ("city", V::Map(vec![("names", V::Map(vec![("en", V::Str("London"))]))])),
            ("country", V::Map(vec![("iso_code", V::Str("GB"))])),
            ("location", V::Map(vec![("time_zone", V::Str("Europe/London"))])),
            (
                "subdivisions",
                V::Array(vec![V::Map(vec![
                    ("iso_code", V::Str("ENG")),
                    ("names", V::Map(vec![("en", V::Str("England"))])),
                ])]),
            ),
        ]);
        std::fs::write(path, ipv4_database([81, 2, 69, 0], 24, &record)).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_a_real_mmdb_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.mmdb");
        test_mmdb::write_london(&path);
        let geo = GeoIp::open(&path).unwrap();
        let found = geo.lookup("81.2.69.160".parse().unwrap()).unwrap();
        assert_eq!(
            found,
            Geo {
                country: Some("GB".into()),
                region: Some("ENG".into()),
                city: Some("London".into()),
                time_zone: Some("Europe/London".into()),
            }
        );
        assert_eq!(geo.lookup("81.2.70.1".parse().unwrap()), None);
        assert_eq!(geo.lookup("10.0.0.1".parse().unwrap()), None);
        assert_eq!(geo.lookup("2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn a_missing_or_broken_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = GeoIp::open(&dir.path().join("nope.mmdb")).err().unwrap().to_string();
        assert!(err.contains("nope.mmdb"), "{err}");
        let broken = dir.path().join("broken.mmdb");
        std::fs::write(&broken, b"not a database").unwrap();
        assert!(GeoIp::open(&broken).is_err());
    }
}
