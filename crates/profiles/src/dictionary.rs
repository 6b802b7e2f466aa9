//! Per-workspace dictionaries that turn event names, feature names and time zones into small
//! integer ids, so a profile holds fixed-size arrays instead of strings.
//!
//! Ids are assigned in log order and never change, so they can be persisted inside profiles.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Id of a name in a [`Names`] table. `u16::MAX` is never assigned.
pub type NameId = u16;

/// Names beyond this many per table get no id; their events still count, unnamed.
pub const MAX_NAMES: usize = 4096;

/// One string table.
#[derive(Clone, Debug, Default)]
pub struct Names {
    ids: HashMap<String, NameId>,
    names: Vec<String>,
}

impl Names {
    pub fn from_list(names: Vec<String>) -> Self {
        let ids = names.iter().enumerate().map(|(i, n)| (n.clone(), i as NameId)).collect();
        Self { ids, names }
    }

    /// The id of `name`, assigning the next one when it is new; None when the table is full.
    pub fn intern(&mut self, name: &str) -> Option<NameId> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= MAX_NAMES {
            return None;
        }
        let id = self.names.len() as NameId;
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        Some(id)
    }

    pub fn get(&self, name: &str) -> Option<NameId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: NameId) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn as_list(&self) -> &[String] {
        &self.names
    }
}

/// The dictionaries of one workspace.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    /// Names of track events and of pages/screens.
    pub events: Names,
    /// Values of the `feature` property.
    pub features: Names,
    /// IANA time zone names; an id here always parses (unknown zones are not interned).
    zones: Names,
    parsed_zones: Vec<Tz>,
}

/// What a dictionary is persisted as.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DictionaryData {
    pub events: Vec<String>,
    pub features: Vec<String>,
    pub zones: Vec<String>,
}

impl Dictionary {
    pub fn from_data(data: DictionaryData) -> Self {
        let zones: Vec<String> = data.zones.into_iter().filter(|z| z.parse::<Tz>().is_ok()).collect();
        let parsed_zones = zones.iter().map(|z| z.parse::<Tz>().expect("filtered")).collect();
        Self {
            events: Names::from_list(data.events),
            features: Names::from_list(data.features),
            zones: Names::from_list(zones),
            parsed_zones,
        }
    }

    pub fn to_data(&self) -> DictionaryData {
        DictionaryData {
            events: self.events.as_list().to_vec(),
            features: self.features.as_list().to_vec(),
            zones: self.zones.as_list().to_vec(),
        }
    }

    /// The id of an IANA time zone name; None when it is not a known zone.
    pub fn zone_id(&mut self, name: &str) -> Option<NameId> {
        if let Some(id) = self.zones.get(name) {
            return Some(id);
        }
        let tz: Tz = name.parse().ok()?;
        let id = self.zones.intern(name)?;
        self.parsed_zones.push(tz);
        Some(id)
    }

    pub fn zone(&self, id: NameId) -> Option<Tz> {
        self.parsed_zones.get(id as usize).copied()
    }

    pub fn zone_name(&self, id: NameId) -> Option<&str> {
        self.zones.name(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_survive_a_round_trip() {
        let mut d = Dictionary::default();
        assert_eq!(d.events.intern("Signed Up"), Some(0));
        assert_eq!(d.events.intern("Order Completed"), Some(1));
        assert_eq!(d.events.intern("Signed Up"), Some(0));
        assert_eq!(d.zone_id("Europe/Berlin"), Some(0));
        assert_eq!(d.zone_id("Mars/Olympus"), None);
        let again = Dictionary::from_data(d.to_data());
        assert_eq!(again.events.get("Order Completed"), Some(1));
        assert_eq!(again.zone(0), Some(chrono_tz::Europe::Berlin));
    }

    #[test]
    fn a_full_table_gives_no_id() {
        let mut names = Names::default();
        for i in 0..MAX_NAMES {
            assert!(names.intern(&format!("e{i}")).is_some());
        }
        assert_eq!(names.intern("one more"), None);
        assert_eq!(names.intern("e7"), Some(7));
    }
}
