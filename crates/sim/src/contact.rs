//! How a simulated user is reached: the addresses a delivery provider needs (email, phone, push
//! token) and what a message is written for (name, locale, time zone). All are pure functions of
//! seed and index, so they cost no memory per user, and the email and name are the ones the
//! user's sign-up `identify` carries.

use serde::Serialize;

use crate::intervention::Channel;
use crate::message::{index_of_user_id, user_id_of};
use crate::population::{Traits, ZONES, name_parts};

/// The domain of every simulated mailbox (the sign-up traits use it too).
const EMAIL_DOMAIN: &str = "example.com";
/// +999 is an unassigned country code: no simulated number can be a real one.
const PHONE_PREFIX: &str = "+999";
const PUSH_PREFIX: &str = "sim-push-";

/// A simulated user's contact details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub user_id: String,
    pub name: String,
    pub first_name: &'static str,
    pub email: String,
    /// E.164.
    pub phone: String,
    /// Stands for an FCM registration token.
    pub push_token: String,
    /// BCP 47, from the user's country (`de-DE`).
    pub locale: &'static str,
    /// IANA time zone.
    pub time_zone: &'static str,
}

impl Contact {
    pub(crate) fn of(seed: u64, index: u32, traits: &Traits) -> Contact {
        let (first, last, first_slug, last_slug) = name_parts(seed, index);
        let zone = &ZONES[traits.zone as usize];
        Contact {
            user_id: user_id_of(index),
            name: format!("{first} {last}"),
            first_name: first,
            email: format!("{first_slug}.{last_slug}.{index}@{EMAIL_DOMAIN}"),
            phone: format!("{PHONE_PREFIX}{index:09}"),
            push_token: format!("{PUSH_PREFIX}{index:06}"),
            locale: zone.locale,
            time_zone: zone.tz.name(),
        }
    }

    /// Where a message on `channel` goes: None for channels that have no per-user address of
    /// their own (webhooks reach the customer's systems, not the user).
    pub fn address(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Email => Some(&self.email),
            Channel::Sms => Some(&self.phone),
            Channel::Push => Some(&self.push_token),
            Channel::InApp => Some(&self.user_id),
            Channel::Webhook => None,
        }
    }
}

/// The user index an address would belong to, from its shape alone (the caller checks that the
/// user's address really is this one).
pub(crate) fn index_of_address(channel: Channel, address: &str) -> Option<u32> {
    let digits = match channel {
        Channel::Email => {
            let local = address.strip_suffix(EMAIL_DOMAIN)?.strip_suffix('@')?;
            local.rsplit_once('.')?.1
        }
        Channel::Sms => address.strip_prefix(PHONE_PREFIX)?,
        Channel::Push => address.strip_prefix(PUSH_PREFIX)?,
        Channel::InApp => return index_of_user_id(address),
        Channel::Webhook => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
