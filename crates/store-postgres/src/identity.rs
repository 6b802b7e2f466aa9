//! Folds the identity ops of one workspace's batch into a few set-based writes.
//!
//! The resolver emits ops meant to be applied one after another, as the SQLite store does. One
//! statement per op would cost a network round trip per new visitor, inside the transaction
//! that holds the workspace's append lock; instead the ops are replayed here, in order, down to
//! their end state: the persons to create (with ids reserved up front), the user ids to set,
//! the stored persons to merge away and into whom, and the person every linked id ends up on.
//! Writing that end state leaves the same rows as applying the ops one by one.

use std::collections::{BTreeMap, HashMap, HashSet};
use whisperer_core::identity::{IdKind, IdentityOp, PersonId, PersonRef};
use whisperer_store::{Result, StoreError};

/// The end state of a batch's identity ops in one workspace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Persons to insert, with their reserved id and user id.
    pub new_persons: Vec<(PersonId, Option<String>)>,
    /// Stored persons whose user id changes.
    pub set_users: Vec<(PersonId, String)>,
    /// Stored persons merged away: (from, into), `into` being the final person.
    pub merges: Vec<(PersonId, PersonId)>,
    /// Every id the batch linked, with the final person it belongs to.
    pub links: Vec<(IdKind, String, PersonId)>,
    ids: HashMap<PersonRef, PersonId>,
    merged: HashMap<PersonId, PersonId>,
}

/// How many persons `ops` create, so their ids can be reserved in one query.
pub fn creates(ops: &[IdentityOp]) -> usize {
    ops.iter().filter(|op| matches!(op, IdentityOp::CreatePerson { .. })).count()
}

impl Folded {
    /// Replays `ops`, taking the id of each created person from `reserved`.
    pub fn fold(ops: &[IdentityOp], reserved: &mut impl Iterator<Item = PersonId>) -> Result<Self> {
        let mut folded = Folded::default();
        let mut created: Vec<(PersonId, Option<String>)> = Vec::new();
        let mut users: HashMap<PersonId, String> = HashMap::new();
        // Ordered so that concurrent batches touch rows in one order, and for stable tests.
        let mut links: BTreeMap<(IdKind, &str), PersonId> = BTreeMap::new();
        let mut merge_order: Vec<PersonId> = Vec::new();
        for op in ops {
            match op {
                IdentityOp::CreatePerson { person, user_id } => {
                    let id = reserved.next().ok_or_else(|| {
                        StoreError::Unavailable("fewer person ids reserved than needed".into())
                    })?;
                    folded.ids.insert(*person, id);
                    created.push((id, user_id.clone()));
                }
                IdentityOp::Link { kind, value, person } => {
                    links.insert((*kind, value.as_str()), folded.id(*person)?);
                }
                IdentityOp::SetUser { person, user_id } => {
                    users.insert(folded.id(*person)?, user_id.clone());
                }
                IdentityOp::Merge { from, into } => {
                    let (from, into) = (folded.id(*from)?, folded.id(*into)?);
                    if from != into && folded.merged.insert(from, into).is_none() {
                        merge_order.push(from);
                    }
                }
            }
        }

        let created_ids: HashSet<PersonId> = created.iter().map(|(id, _)| *id).collect();
        for (id, user) in created {
            // A person both created and merged away within the batch is never written at all.
            if !folded.merged.contains_key(&id) {
                let user = users.remove(&id).or(user);
                folded.new_persons.push((id, user));
            }
        }
        let mut set_users: Vec<_> = users
            .into_iter()
            .filter(|(id, _)| !created_ids.contains(id) && !folded.merged.contains_key(id))
            .collect();
        set_users.sort();
        folded.set_users = set_users;
        for from in merge_order {
            if !created_ids.contains(&from) {
                let into = folded.last(from)?;
                folded.merges.push((from, into));
            }
        }
        for ((kind, value), person) in links {
            let person = folded.last(person)?;
            folded.links.push((kind, value.to_owned(), person));
        }
        Ok(folded)
    }

    /// The stored id of the person an event resolved to, after every merge of the batch.
    pub fn person(&self, person: PersonRef) -> Result<PersonId> {
        self.last(self.id(person)?)
    }

    fn id(&self, person: PersonRef) -> Result<PersonId> {
        match person {
            PersonRef::Existing(id) => Ok(id),
            PersonRef::New(n) => self.ids.get(&person).copied().ok_or_else(|| {
                StoreError::Unavailable(format!("identity op refers to new person {n} before it exists"))
            }),
        }
    }

    /// Follows merges to the person that survives.
    fn last(&self, mut person: PersonId) -> Result<PersonId> {
        // Each merge removes a person, so a chain is at most as long as the merge list.
        for _ in 0..=self.merged.len() {
            match self.merged.get(&person) {
                Some(&next) => person = next,
                None => return Ok(person),
            }
        }
        Err(StoreError::Unavailable(format!("identity merges of person {person} form a cycle")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisperer_core::identity::{IdentityResolver, MessageIds};

    fn fold(resolver: &IdentityResolver, first_id: PersonId) -> Folded {
        Folded::fold(resolver.ops(), &mut (first_id..)).unwrap()
    }

    #[test]
    fn new_visitor_is_created_and_linked() {
        let mut r = IdentityResolver::new();
        let p = r.resolve(MessageIds { anonymous_id: Some("a1"), ..Default::default() }).unwrap();
        let f = fold(&r, 100);
        assert_eq!(f.new_persons, [(100, None)]);
        assert_eq!(f.links, [(IdKind::Anonymous, "a1".to_string(), 100)]);
        assert!(f.merges.is_empty() && f.set_users.is_empty());
        assert_eq!(f.person(p).unwrap(), 100);
    }

    #[test]
    fn identify_in_the_same_batch_sets_the_user_on_the_new_person() {
        let mut r = IdentityResolver::new();
        r.resolve(MessageIds { anonymous_id: Some("a1"), ..Default::default() });
        r.resolve(MessageIds { user_id: Some("u1"), anonymous_id: Some("a1"), ..Default::default() });
        let f = fold(&r, 7);
        assert_eq!(f.new_persons, [(7, Some("u1".into()))]);
        assert!(f.set_users.is_empty());
        assert_eq!(f.links.len(), 2);
    }

    #[test]
    fn stored_anonymous_person_merges_into_stored_user() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::User, "u1", 10, Some("u1".into()));
        r.preload(IdKind::Anonymous, "a1", 20, None);
        let p = r.resolve(MessageIds { user_id: Some("u1"), anonymous_id: Some("a1"), ..Default::default() });
        let f = fold(&r, 1000);
        assert_eq!(f.merges, [(20, 10)]);
        assert!(f.new_persons.is_empty());
        assert_eq!(f.person(p.unwrap()).unwrap(), 10);
        assert_eq!(f.person(PersonRef::Existing(20)).unwrap(), 10);
    }

    #[test]
    fn a_stored_user_merges_into_a_new_anonymous_person() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::User, "old", 5, Some("old".into()));
        let new = r.resolve(MessageIds { anonymous_id: Some("a"), ..Default::default() }).unwrap();
        r.resolve(MessageIds { user_id: None, anonymous_id: Some("a"), previous_id: Some("old") });
        let f = fold(&r, 50);
        // The new person survives and takes over the stored one's user id.
        assert_eq!(f.merges, [(5, 50)]);
        assert_eq!(f.new_persons, [(50, Some("old".into()))]);
        assert_eq!(f.person(new).unwrap(), 50);
        assert_eq!(f.person(PersonRef::Existing(5)).unwrap(), 50);
    }

    #[test]
    fn a_person_created_then_merged_away_is_never_written() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::User, "u", 5, Some("u".into()));
        let visitor = r.resolve(MessageIds { anonymous_id: Some("a"), ..Default::default() }).unwrap();
        r.resolve(MessageIds { user_id: Some("u"), anonymous_id: Some("a"), ..Default::default() });
        let f = fold(&r, 50);
        assert!(f.new_persons.is_empty() && f.merges.is_empty());
        assert_eq!(f.links, [(IdKind::Anonymous, "a".to_string(), 5)]);
        assert_eq!(f.person(visitor).unwrap(), 5);
    }

    #[test]
    fn chains_of_merges_end_at_the_survivor() {
        let ops = vec![
            IdentityOp::Merge { from: PersonRef::Existing(1), into: PersonRef::Existing(2) },
            IdentityOp::Link { kind: IdKind::User, value: "x".into(), person: PersonRef::Existing(2) },
            IdentityOp::Merge { from: PersonRef::Existing(2), into: PersonRef::Existing(3) },
            IdentityOp::SetUser { person: PersonRef::Existing(2), user_id: "gone".into() },
        ];
        let f = Folded::fold(&ops, &mut std::iter::empty()).unwrap();
        assert_eq!(f.merges, [(1, 3), (2, 3)]);
        assert_eq!(f.links, [(IdKind::User, "x".to_string(), 3)]);
        assert!(f.set_users.is_empty(), "a merged-away person needs no user id");
    }

    #[test]
    fn running_out_of_reserved_ids_is_an_error() {
        let ops = vec![IdentityOp::CreatePerson { person: PersonRef::New(0), user_id: None }];
        assert!(Folded::fold(&ops, &mut std::iter::empty()).is_err());
    }
}
