//! Identity resolution: which person an event belongs to.
//!
//! A person is everything one human did in a workspace, under any of their ids. `identify` (or
//! any message that carries both ids) links an `anonymousId` to a `userId`, so what a visitor
//! did before signing in counts as that user's afterwards. `alias` merges a `previousId` into a
//! `userId`. One rule guards against shared devices: an implicit link never merges two persons
//! that both already have a user id; only an explicit `alias` does that.
//!
//! The resolver is pure. A store loads what it knows about the ids a batch mentions
//! ([`IdentityResolver::preload`]), feeds the batch's events through [`IdentityResolver::resolve`],
//! then applies the returned [`IdentityOp`]s in order inside the same transaction as the events.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Store-assigned id of a person, unique across workspaces.
pub type PersonId = i64;

/// The two kinds of id a Segment message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    User,
    Anonymous,
}

impl IdKind {
    /// Compact code used in storage.
    pub fn code(self) -> i16 {
        match self {
            IdKind::User => 0,
            IdKind::Anonymous => 1,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(IdKind::User),
            1 => Some(IdKind::Anonymous),
            _ => None,
        }
    }
}

/// A person as the resolver sees it: already stored, or new in this batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PersonRef {
    Existing(PersonId),
    /// The n-th person created by this batch.
    New(u32),
}

/// A change the store must apply, in order, for the batch to be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityOp {
    /// Create a person; it is `PersonRef::New(n)` from then on.
    CreatePerson { person: PersonRef, user_id: Option<String> },
    /// Attach an id to a person.
    Link { kind: IdKind, value: String, person: PersonRef },
    /// Record the user id of a person that was anonymous until now.
    SetUser { person: PersonRef, user_id: String },
    /// Move every id and event of `from` to `into`, then drop `from`.
    Merge { from: PersonRef, into: PersonRef },
}

/// The ids one message carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageIds<'a> {
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    /// `previousId` of an alias call.
    pub previous_id: Option<&'a str>,
}

impl<'a> MessageIds<'a> {
    /// The (kind, value) pairs a store should look up before resolving this message.
    pub fn lookups(&self) -> impl Iterator<Item = (IdKind, &'a str)> {
        let user = self.user_id.map(|v| (IdKind::User, v));
        let anon = self.anonymous_id.map(|v| (IdKind::Anonymous, v));
        let prev = self.previous_id.into_iter().flat_map(|v| [(IdKind::User, v), (IdKind::Anonymous, v)]);
        user.into_iter().chain(anon).chain(prev)
    }
}

#[derive(Debug, Default)]
pub struct IdentityResolver {
    users: HashMap<String, PersonRef>,
    anonymous: HashMap<String, PersonRef>,
    /// The user id of every person the batch has seen (None: anonymous so far).
    persons: HashMap<PersonRef, Option<String>>,
    merged_into: HashMap<PersonRef, PersonRef>,
    ops: Vec<IdentityOp>,
    created: u32,
}

impl IdentityResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the resolver that `(kind, value)` belongs to stored person `person`, whose user id
    /// is `person_user_id`.
    pub fn preload(&mut self, kind: IdKind, value: &str, person: PersonId, person_user_id: Option<String>) {
        let person = PersonRef::Existing(person);
        self.ids_mut(kind).insert(value.to_owned(), person);
        self.persons.entry(person).or_insert(person_user_id);
    }

    /// Resolves one message to a person, recording any links, new persons and merges.
    ///
    /// The returned reference may later be merged into another person by a following message of
    /// the same batch: map it through [`IdentityResolver::canonical`] once the batch is done.
    pub fn resolve(&mut self, ids: MessageIds<'_>) -> Option<PersonRef> {
        let person = match (ids.user_id, ids.anonymous_id) {
            (Some(user), Some(anon)) => self.resolve_pair(user, anon),
            (Some(user), None) => self.user_person(user),
            (None, Some(anon)) => match self.lookup(IdKind::Anonymous, anon) {
                Some(p) => p,
                None => {
                    let p = self.create(None);
                    self.link(IdKind::Anonymous, anon, p);
                    p
                }
            },
            (None, None) => return None,
        };
        if let Some(previous) = ids.previous_id {
            let found =
                self.lookup(IdKind::User, previous).or_else(|| self.lookup(IdKind::Anonymous, previous));
            match found {
                None => self.link(IdKind::Anonymous, previous, person),
                Some(p) if p == person => {}
                Some(p) => self.merge(p, person),
            }
        }
        Some(person)
    }

    /// The person `person` ended up as after every merge of the batch.
    pub fn canonical(&self, mut person: PersonRef) -> PersonRef {
        while let Some(&next) = self.merged_into.get(&person) {
            person = next;
        }
        person
    }

    pub fn ops(&self) -> &[IdentityOp] {
        &self.ops
    }

    fn resolve_pair(&mut self, user: &str, anon: &str) -> PersonRef {
        let by_user = self.lookup(IdKind::User, user);
        let by_anon = self.lookup(IdKind::Anonymous, anon);
        match (by_user, by_anon) {
            (Some(pu), Some(pa)) if pu == pa => pu,
            (Some(pu), Some(pa)) => {
                // An anonymous visitor who signs in becomes that user; a device already tied to
                // another known user stays with them (shared computer), and the event counts
                // for the user who sent it.
                if self.user_of(pa).is_none() {
                    self.merge(pa, pu);
                }
                pu
            }
            (Some(pu), None) => {
                self.link(IdKind::Anonymous, anon, pu);
                pu
            }
            (None, Some(pa)) if self.user_of(pa).is_none() => {
                self.link(IdKind::User, user, pa);
                self.ops.push(IdentityOp::SetUser { person: pa, user_id: user.to_owned() });
                self.persons.insert(pa, Some(user.to_owned()));
                pa
            }
            (None, _) => {
                let p = self.create(Some(user));
                self.link(IdKind::User, user, p);
                if by_anon.is_none() {
                    self.link(IdKind::Anonymous, anon, p);
                }
                p
            }
        }
    }

    fn user_person(&mut self, user: &str) -> PersonRef {
        match self.lookup(IdKind::User, user) {
            Some(p) => p,
            None => {
                let p = self.create(Some(user));
                self.link(IdKind::User, user, p);
                p
            }
        }
    }

    fn lookup(&self, kind: IdKind, value: &str) -> Option<PersonRef> {
        match kind {
            IdKind::User => self.users.get(value).copied(),
            IdKind::Anonymous => self.anonymous.get(value).copied(),
        }
    }

    fn ids_mut(&mut self, kind: IdKind) -> &mut HashMap<String, PersonRef> {
        match kind {
            IdKind::User => &mut self.users,
            IdKind::Anonymous => &mut self.anonymous,
        }
    }

    fn user_of(&self, person: PersonRef) -> Option<&str> {
        self.persons.get(&person).and_then(|u| u.as_deref())
    }

    fn create(&mut self, user_id: Option<&str>) -> PersonRef {
        let person = PersonRef::New(self.created);
        self.created += 1;
        self.persons.insert(person, user_id.map(str::to_owned));
        self.ops.push(IdentityOp::CreatePerson { person, user_id: user_id.map(str::to_owned) });
        person
    }

    fn link(&mut self, kind: IdKind, value: &str, person: PersonRef) {
        self.ids_mut(kind).insert(value.to_owned(), person);
        self.ops.push(IdentityOp::Link { kind, value: value.to_owned(), person });
    }

    fn merge(&mut self, from: PersonRef, into: PersonRef) {
        for target in self.users.values_mut().chain(self.anonymous.values_mut()) {
            if *target == from {
                *target = into;
            }
        }
        let from_user = self.persons.remove(&from).flatten();
        if self.user_of(into).is_none()
            && let Some(user) = from_user
        {
            self.ops.push(IdentityOp::Merge { from, into });
            self.ops.push(IdentityOp::SetUser { person: into, user_id: user.clone() });
            self.persons.insert(into, Some(user));
        } else {
            self.ops.push(IdentityOp::Merge { from, into });
        }
        self.merged_into.insert(from, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(user: Option<&'a str>, anon: Option<&'a str>) -> MessageIds<'a> {
        MessageIds { user_id: user, anonymous_id: anon, previous_id: None }
    }

    #[test]
    fn anonymous_visitor_becomes_the_user_on_identify() {
        let mut r = IdentityResolver::new();
        let visit = r.resolve(ids(None, Some("anon-1"))).unwrap();
        let identify = r.resolve(ids(Some("u1"), Some("anon-1"))).unwrap();
        let later = r.resolve(ids(Some("u1"), None)).unwrap();
        assert_eq!(visit, identify);
        assert_eq!(identify, later);
        assert!(r.ops().contains(&IdentityOp::SetUser { person: visit, user_id: "u1".into() }));
    }

    #[test]
    fn anonymous_history_merges_into_a_known_user() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::User, "u1", 10, Some("u1".into()));
        r.preload(IdKind::Anonymous, "anon-9", 20, None);
        let p = r.resolve(ids(Some("u1"), Some("anon-9"))).unwrap();
        assert_eq!(p, PersonRef::Existing(10));
        assert_eq!(
            r.ops(),
            &[IdentityOp::Merge { from: PersonRef::Existing(20), into: PersonRef::Existing(10) }]
        );
        assert_eq!(r.canonical(PersonRef::Existing(20)), PersonRef::Existing(10));
    }

    #[test]
    fn a_shared_device_never_merges_two_known_users() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::User, "alice", 1, Some("alice".into()));
        r.preload(IdKind::Anonymous, "laptop", 1, Some("alice".into()));
        r.preload(IdKind::User, "bob", 2, Some("bob".into()));
        assert_eq!(r.resolve(ids(Some("bob"), Some("laptop"))), Some(PersonRef::Existing(2)));
        assert!(r.ops().is_empty());
        // A new user on that device gets a person of their own; the device stays with alice.
        let carol = r.resolve(ids(Some("carol"), Some("laptop"))).unwrap();
        assert!(matches!(carol, PersonRef::New(_)));
        assert_eq!(r.resolve(ids(None, Some("laptop"))), Some(PersonRef::Existing(1)));
    }

    #[test]
    fn alias_merges_explicitly() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::User, "old-id", 5, Some("old-id".into()));
        let p = r
            .resolve(MessageIds { user_id: Some("new-id"), anonymous_id: None, previous_id: Some("old-id") })
            .unwrap();
        assert_eq!(r.canonical(PersonRef::Existing(5)), p);
        assert_eq!(r.resolve(ids(Some("old-id"), None)), Some(p));
    }

    #[test]
    fn alias_of_an_unknown_previous_id_links_it() {
        let mut r = IdentityResolver::new();
        let p = r
            .resolve(MessageIds { user_id: Some("u"), anonymous_id: None, previous_id: Some("anon_777") })
            .unwrap();
        assert_eq!(r.resolve(ids(None, Some("anon_777"))), Some(p));
    }

    #[test]
    fn merge_into_an_anonymous_person_keeps_the_user_id() {
        let mut r = IdentityResolver::new();
        r.preload(IdKind::Anonymous, "a", 1, None);
        r.preload(IdKind::User, "u", 2, Some("u".into()));
        let p =
            r.resolve(MessageIds { user_id: None, anonymous_id: Some("a"), previous_id: Some("u") }).unwrap();
        assert_eq!(p, PersonRef::Existing(1));
        assert!(r.ops().contains(&IdentityOp::SetUser { person: p, user_id: "u".into() }));
    }

    #[test]
    fn a_message_without_ids_has_no_person() {
        assert_eq!(IdentityResolver::new().resolve(ids(None, None)), None);
    }

    #[test]
    fn lookups_cover_every_id() {
        let m = MessageIds { user_id: Some("u"), anonymous_id: Some("a"), previous_id: Some("p") };
        let l: Vec<_> = m.lookups().collect();
        assert_eq!(l.len(), 4);
    }
}
