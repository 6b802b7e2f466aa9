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
