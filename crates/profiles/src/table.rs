//! Profiles of one workspace, stored densely: a vector of profiles and a small index from
//! person id to position. A hash map of whole profiles would leave a third of its buckets
//! empty yet resident; here each profile costs its own size plus about 24 bytes of index.

use std::collections::HashMap;
use whisperer_core::PersonId;

use crate::profile::Profile;

#[derive(Clone, Debug, Default)]
pub struct ProfileTable {
    index: HashMap<PersonId, u32>,
    persons: Vec<PersonId>,
    profiles: Vec<Profile>,
}

impl ProfileTable {
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    pub fn get(&self, person: &PersonId) -> Option<&Profile> {
        self.index.get(person).map(|&i| &self.profiles[i as usize])
    }

    pub fn get_mut(&mut self, person: &PersonId) -> Option<&mut Profile> {
        self.index.get(person).map(|&i| &mut self.profiles[i as usize])
    }

    /// The person's profile, an empty one inserted first if there is none.
    pub fn get_or_default(&mut self, person: PersonId) -> &mut Profile {
        let next = self.profiles.len() as u32;
        let i = *self.index.entry(person).or_insert(next);
        if i == next {
            self.persons.push(person);
            self.profiles.push(Profile::default());
        }
        &mut self.profiles[i as usize]
    }

    pub fn insert(&mut self, person: PersonId, profile: Profile) {
        *self.get_or_default(person) = profile;
    }

    pub fn remove(&mut self, person: &PersonId) -> Option<Profile> {
        let i = self.index.remove(person)? as usize;
        let last = self.profiles.len() - 1;
        if i != last {
            let moved = self.persons[last];
            self.index.insert(moved, i as u32);
        }
        self.persons.swap_remove(i);
        Some(self.profiles.swap_remove(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = (PersonId, &Profile)> {
        self.persons.iter().copied().zip(&self.profiles)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (PersonId, &mut Profile)> {
        self.persons.iter().copied().zip(&mut self.profiles)
    }

    pub fn values(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::Observation;

    #[test]
    fn insert_get_remove_keep_the_index_right() {
        let mut t = ProfileTable::default();
        let dict = crate::Dictionary::default();
        for p in 0..10 {
            t.get_or_default(p).apply(&Observation::activity(p * 1000, None), &dict);
        }
        assert_eq!(t.len(), 10);
        assert!(t.remove(&3).is_some());
        assert!(t.remove(&3).is_none());
        assert!(t.remove(&9).is_some());
        assert_eq!(t.len(), 8);
        for p in [0, 1, 2, 4, 5, 6, 7, 8] {
            assert_eq!(t.get(&p).unwrap().first_seen(), Some(p * 1000), "{p}");
        }
        assert!(t.get(&3).is_none());
        let mut seen: Vec<_> = t.iter().map(|(p, _)| p).collect();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 4, 5, 6, 7, 8]);
    }
}
