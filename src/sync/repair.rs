//! What the tenant holds of ausi's objects (one listing, read by a full sync or when many
//! creates need checking), and how it drifted from what ausi sent. Pure: resources in, answers
//! out; the planner ([`super::plan`]) turns drift into repairs and the applier adopts from it.
//!
//! The comparison is tolerant of what RFC-compliant servers legitimately do to a resource:
//! add `id`, `meta`, `schemas`, `$ref`/`display` in references or `formatted` in `name`, reorder
//! multi-valued attributes, change the case of values RFC 7643 declares case-insensitive, and
//! drop optional attributes they do not support (`title`, `phoneNumbers`, the enterprise
//! extension): only a value that is there and differs, or a required one that is missing, or a
//! value ausi does not send, is drift.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::map::ENTERPRISE_SCHEMA;
use super::plan::{self, Kind};
use crate::store::Anchor;

/// Attributes a user listing asks for (servers that ignore `attributes=` send everything).
pub const USER_ATTRIBUTES: &str = "externalId,userName,name,displayName,emails,active,title,phoneNumbers,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Attributes a group listing asks for.
pub const GROUP_ATTRIBUTES: &str = "externalId,displayName,members";

/// Tenant objects without an externalId ausi knows, listed in a report at most this many.
pub const MAX_LISTED_UNKNOWN: usize = 20;

/// One resource as listed, reduced to what ausi compares: its keys, its owned attributes in
/// their compared form ([`OwnedValues`], not the JSON) and a group's member ids. A listing of
/// 100,000 users held as JSON took a gigabyte; this takes a few hundred bytes an object (texts
/// as boxed `str`s, members as a sorted list: a user's empty set alone took 48 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantObject {
    pub kind: Kind,
    /// Its id, externalId (lower case), userName (lower case) and displayName (kept where it
    /// names the object in a report: groups, and users without a userName), one after the
    /// other in one allocation.
    texts: Box<str>,
    /// Where each of [`TenantObject::texts`] ends, [`NONE`] for one it does not have.
    ends: [u32; 4],
    /// The owned attributes (no `meta`, no members), as [`drift`] compares them.
    pub resource: OwnedValues,
    /// Groups: the member ids, sorted, each once.
    members: Box<[Box<str>]>,
}

impl TenantObject {
    /// `None` for a resource without an `id` (useless to ausi).
    pub fn from_resource(kind: Kind, resource: &Value) -> Option<TenantObject> {
        let id = resource.get("id")?.as_str().filter(|s| !s.is_empty())?;
        let text = |k: &str| resource.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        let members = match kind {
            Kind::Group => {
                let listed = resource.get("members").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let mut ids: Vec<Box<str>> =
                    listed.iter().filter_map(|m| m.get("value").and_then(Value::as_str)).map(Box::from).collect();
                ids.sort_unstable();
                ids.dedup();
                ids.into_boxed_slice()
            }
            Kind::User => Box::default(),
        };
        let user_name = text("userName").map(str::to_lowercase);
        let named = kind == Kind::Group || user_name.is_none();
        let external_id = text("externalId").map(str::to_lowercase);
        let fields = [Some(id), external_id.as_deref(), user_name.as_deref(), text("displayName").filter(|_| named)];
        let mut texts = String::with_capacity(fields.iter().flatten().map(|t| t.len()).sum());
        let ends = fields.map(|field| match field {
            // A text of 4 GiB is no tenant's: left out rather than wrapped.
            Some(t) if texts.len() + t.len() < NONE as usize => {
                texts.push_str(t);
                texts.len() as u32
            }
            _ => NONE,
        });
        Some(TenantObject {
            kind,
            texts: texts.into_boxed_str(),
            ends,
            resource: OwnedValues::of(kind, resource),
            members,
        })
    }

    /// The `i`-th of [`TenantObject::texts`].
    fn text(&self, i: usize) -> Option<&str> {
        let start = self.ends[..i].iter().rev().find(|e| **e != NONE).map_or(0, |e| *e as usize);
        (self.ends[i] != NONE).then(|| &self.texts[start..self.ends[i] as usize])
    }

    pub fn id(&self) -> &str {
        self.text(0).unwrap_or_default()
    }

    /// Lower case.
    pub fn external_id(&self) -> Option<&str> {
        self.text(1)
    }

    /// Lower case.
    pub fn user_name(&self) -> Option<&str> {
        self.text(2)
    }

    /// Kept for groups, and users without a userName.
    pub fn display_name(&self) -> Option<&str> {
        self.text(3)
    }

    /// A group's member ids, sorted.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| &**m)
    }

    /// Whether a group lists `id` as a member.
    pub fn lists(&self, id: &str) -> bool {
        self.members.binary_search_by(|m| (**m).cmp(id)).is_ok()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }
}

/// A text a [`TenantObject`] does not have.
const NONE: u32 = u32::MAX;

/// The hash the view's indexes use (FNV-1a: fast, stable, and every lookup compares the key
/// itself, so its quality only decides how often that comparison fails).
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Positions of listed objects by a 64-bit hash of a key, sorted once the listing is read. A
/// lookup yields every position with the key's hash, in listing order, and the caller compares
/// the key itself: a collision costs a comparison, never a wrong answer. Sixteen bytes a key
/// where a map of owned strings took over a hundred.
#[derive(Debug, Clone, Default)]
struct KeyIndex {
    entries: Vec<(u64, u32)>,
}

impl KeyIndex {
    fn push(&mut self, hash: u64, at: u32) {
        self.entries.push((hash, at));
    }

    fn seal(&mut self) {
        self.entries.sort_unstable();
        self.entries.shrink_to_fit();
    }

    fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let from = self.entries.partition_point(|(h, _)| *h < hash);
        self.entries[from..].iter().take_while(move |(h, _)| *h == hash).map(|(_, at)| *at as usize)
    }
}

/// A listed id's key in [`ViewBuilder::ids`]. Kinds apart: tenants that number users and
/// groups separately reuse ids across them.
fn id_key(hash: fn(&str) -> u64, kind: Kind, id: &str) -> u64 {
    let salt = match kind {
        Kind::User => 0,
        Kind::Group => 0x9e37_79b9_7f4a_7c15,
    };
    hash(id) ^ salt
}

/// Reads a listing resource by resource into a [`TenantView`], keeping only what ausi compares
/// (see [`TenantObject`]), so the listing never sits in memory as JSON.
#[derive(Debug)]
pub struct ViewBuilder {
    view: TenantView,
    /// Listed ids by hash: a resource listed twice counts once (the first).
    ids: HashMap<u64, u32>,
}

impl Default for ViewBuilder {
    fn default() -> ViewBuilder {
        ViewBuilder::hashing(key_hash)
    }
}

impl ViewBuilder {
    /// With another key hash (tests force collisions with a constant one).
    fn hashing(hash: fn(&str) -> u64) -> ViewBuilder {
        ViewBuilder { view: TenantView { hash, ..TenantView::default() }, ids: HashMap::new() }
    }

    pub fn push(&mut self, kind: Kind, resource: &Value) {
        let Some(o) = TenantObject::from_resource(kind, resource) else { return };
        let view = &mut self.view;
        let n = u32::try_from(view.objects.len()).expect("fewer than 2^32 tenant objects");
        let same = |p: &TenantObject| p.kind == o.kind && p.id() == o.id();
        match self.ids.entry(id_key(view.hash, o.kind, o.id())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                // Listed twice, or (rarely) another id with the same hash: look at every object.
                if same(&view.objects[*first.get() as usize]) || view.objects.iter().any(same) {
                    return;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(n);
            }
        }
        if let Some(x) = o.external_id() {
            view.by_external.push((view.hash)(x), n);
        }
        if let Some(u) = o.user_name().filter(|_| o.kind == Kind::User) {
            view.by_user_name.push((view.hash)(u), n);
        }
        match o.kind {
            Kind::User => view.users += 1,
            Kind::Group => view.groups += 1,
        }
        view.objects.push(o);
    }

    pub fn finish(self, complete: bool, pages: u64) -> TenantView {
        let mut view = self.view;
        view.by_external.seal();
        view.by_user_name.seal();
        view.objects.shrink_to_fit();
        view.complete = complete;
        view.pages = pages;
        view
    }
}

/// The tenant's users and groups, indexed by externalId and userName (both lower case).
#[derive(Debug, Clone)]
pub struct TenantView {
    objects: Vec<TenantObject>,
    by_external: KeyIndex,
    by_user_name: KeyIndex,
    hash: fn(&str) -> u64,
    users: u64,
    groups: u64,
    /// Every resource the tenant counted was listed: only then is an absent object missing.
    pub complete: bool,
    /// Requests the listing took.
    pub pages: u64,
    /// Attributes this tenant is known to rewrite or drop (learnt from write answers, see
    /// [`altered`]): not drift, so a tenant that keeps changing them costs no write.
    pub altered: BTreeSet<String>,
}

impl Default for TenantView {
    fn default() -> TenantView {
        TenantView {
            objects: Vec::new(),
            by_external: KeyIndex::default(),
            by_user_name: KeyIndex::default(),
            hash: key_hash,
            users: 0,
            groups: 0,
            complete: false,
            pages: 0,
            altered: BTreeSet::new(),
        }
    }
}

/// Where an anchored object is in the tenant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup<'v> {
    Found(&'v TenantObject),
    /// Not listed (deleted in the tenant, when the listing is complete).
    Missing,
    /// Several resources carry its externalId and none has its id: not ausi's to choose.
    Ambiguous,
}

/// What a create finds in the tenant, by the soft-match rules: by externalId, then (users) by
/// userName when that resource has no externalId or ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Adopt(String),
    Absent,
    /// Several candidates, or a userName held by someone else's object.
    Conflict(String),
}

impl TenantView {
    pub fn new(users: &[Value], groups: &[Value], complete: bool, pages: u64) -> TenantView {
        let mut builder = ViewBuilder::default();
        users.iter().for_each(|r| builder.push(Kind::User, r));
        groups.iter().for_each(|r| builder.push(Kind::Group, r));
        builder.finish(complete, pages)
    }

    /// Listed objects of one kind.
    pub fn count(&self, kind: Kind) -> u64 {
        match kind {
            Kind::User => self.users,
            Kind::Group => self.groups,
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn with_external_id(&self, kind: Kind, guid: &str) -> Vec<&TenantObject> {
        let guid = guid.to_lowercase();
        self.by_external
            .candidates((self.hash)(&guid))
            .map(|n| &self.objects[n])
            .filter(|o| o.kind == kind && o.external_id() == Some(guid.as_str()))
            .collect()
    }

    /// An anchored object: by its externalId, preferring the resource with the anchor's id.
    pub fn find(&self, kind: Kind, guid: &str, scim_id: Option<&str>) -> Lookup<'_> {
        let found = self.with_external_id(kind, guid);
        if let Some(o) = found.iter().find(|o| Some(o.id()) == scim_id) {
            return Lookup::Found(o);
        }
        match found.as_slice() {
            [] if self.complete => Lookup::Missing,
            // An incomplete listing proves no absence; nor does a resource under the anchor's id
            // whose externalId someone changed (not listed above, but there).
            [] => Lookup::Ambiguous,
            [one] => Lookup::Found(one),
            _ => Lookup::Ambiguous,
        }
    }

    /// The tenant id of an anchored object, if it is there.
    pub fn id_of(&self, anchor: &Anchor) -> Option<&str> {
        let kind = Kind::from(anchor.kind);
        match self.find(kind, &anchor.guid, anchor.scim_id.as_deref()) {
            Lookup::Found(o) => Some(o.id()),
            _ => None,
        }
    }

    /// The users that hold `user_name` (any case).
    pub fn holders(&self, user_name: &str) -> Vec<&TenantObject> {
        let name = user_name.trim().to_lowercase();
        self.by_user_name
            .candidates((self.hash)(&name))
            .map(|n| &self.objects[n])
            .filter(|o| o.user_name() == Some(name.as_str()))
            .collect()
    }

    /// A create's soft match (`user_name` only for users; `None`: by externalId only, as a
    /// journaled create is checked).
    pub fn soft_match(&self, kind: Kind, guid: &str, user_name: Option<&str>) -> Match {
        match self.with_external_id(kind, guid).as_slice() {
            [one] => return Match::Adopt(one.id().to_owned()),
            [] => {}
            many => return Match::Conflict(format!("{} resources in the tenant have externalId {guid}", many.len())),
        }
        let Some(name) = user_name.map(|n| n.trim().to_lowercase()).filter(|n| !n.is_empty() && kind == Kind::User)
        else {
            return Match::Absent;
        };
        match self.holders(&name).as_slice() {
            [] => Match::Absent,
            [one] if one.external_id().is_none_or(|x| x == guid.to_lowercase()) => Match::Adopt(one.id().to_owned()),
            [one] => Match::Conflict(format!(
                "userName {name} is held by a tenant user with another externalId ({})",
                one.external_id().unwrap_or_default()
            )),
            many => Match::Conflict(format!("{} resources in the tenant have userName {name}", many.len())),
        }
    }

    /// The tenant's objects that are not ausi's: neither an id in `ours` (anchors, and what
    /// this run adopted or re-pointed) nor an externalId in `guids`.
    pub fn unknown(&self, ours: &HashSet<&str>, guids: &dyn Fn(&str) -> bool) -> Unknown {
        let mut out = Unknown::default();
        for o in &self.objects {
            if ours.contains(o.id()) || o.external_id().is_some_and(guids) {
                continue;
            }
            match o.kind {
                Kind::User => out.users += 1,
                Kind::Group => out.groups += 1,
            }
            if out.listed.len() < MAX_LISTED_UNKNOWN {
                out.listed.push(UnknownObject {
                    kind: o.kind,
                    id: o.id().to_owned(),
                    external_id: o.external_id().map(str::to_owned),
                    name: o.user_name().or(o.display_name()).map(str::to_owned),
                });
            }
        }
        out
    }
}

/// Tenant objects ausi does not know: reported, never touched.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Unknown {
    pub users: u64,
    pub groups: u64,
    /// The first [`MAX_LISTED_UNKNOWN`].
    pub listed: Vec<UnknownObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownObject {
    pub kind: Kind,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// userName of a user, displayName of a group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Anchored, active objects a complete listing does not hold, as (kind, SCIM id): to be asked
/// for by id before they count as missing. A listing can be complete by its count and still
/// miss a resource (one deleted and one created while the pages were read shift a resource off
/// every page, see [`crate::tenant::paging`]); a `GET` by id tells. Empty for an incomplete
/// listing, which proves no absence anyway.
pub fn unconfirmed(view: &TenantView, anchors: impl IntoIterator<Item = plan::Anchor>) -> Vec<(Kind, String)> {
    anchors
        .into_iter()
        .filter(|a| a.state == plan::AnchorState::Active)
        .filter(|a| view.find(a.kind, &a.guid, a.scim_id.as_deref()) == Lookup::Missing)
        .filter_map(|a| Some((a.kind, a.scim_id?)))
        .collect()
}

impl TenantView {
    /// Resources found by id after the listing (see [`unconfirmed`]): listed as if their page
    /// had held them. One the listing already holds is not added twice.
    pub fn confirm(&mut self, found: impl IntoIterator<Item = (Kind, Value)>) {
        let mut builder = ViewBuilder { view: std::mem::take(self), ids: HashMap::new() };
        for (n, o) in builder.view.objects.iter().enumerate() {
            builder.ids.entry(id_key(builder.view.hash, o.kind, o.id())).or_insert(n as u32);
        }
        for (kind, resource) in found {
            builder.push(kind, &resource);
        }
        let (complete, pages, altered) =
            (builder.view.complete, builder.view.pages, std::mem::take(&mut builder.view.altered));
        *self = builder.finish(complete, pages);
        self.altered = altered;
    }
}

/// Anchored, active objects the (complete) listing does not hold: they are created again, so
/// their old SCIM ids must not be used (as a member, as a manager).
pub fn missing(view: &TenantView, anchors: impl IntoIterator<Item = plan::Anchor>) -> HashSet<String> {
    anchors
        .into_iter()
        .filter(|a| a.state == plan::AnchorState::Active)
        .filter(|a| view.find(a.kind, &a.guid, a.scim_id.as_deref()) == Lookup::Missing)
        .map(|a| a.guid)
        .collect()
}

/// Whether a missing value in the tenant is drift (required) or a server that does not keep
/// that optional attribute.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Required,
    Optional,
}

/// An owned attribute: its path in the resource and how it is compared.
struct Owned {
    path: &'static [&'static str],
    need: Need,
    multi: bool,
}

const fn owned(path: &'static [&'static str], need: Need, multi: bool) -> Owned {
    Owned { path, need, multi }
}

const USER_OWNED: &[Owned] = &[
    owned(&["externalId"], Need::Required, false),
    owned(&["userName"], Need::Required, false),
    owned(&["name", "givenName"], Need::Required, false),
    owned(&["name", "familyName"], Need::Required, false),
    owned(&["displayName"], Need::Required, false),
    owned(&["emails"], Need::Required, true),
    owned(&["active"], Need::Required, false),
    owned(&["title"], Need::Optional, false),
    owned(&["phoneNumbers"], Need::Optional, true),
    owned(&[ENTERPRISE_SCHEMA, "employeeNumber"], Need::Optional, false),
    owned(&[ENTERPRISE_SCHEMA, "department"], Need::Optional, false),
    owned(&[ENTERPRISE_SCHEMA, "manager", "value"], Need::Optional, false),
];

const GROUP_OWNED: &[Owned] =
    &[owned(&["externalId"], Need::Required, false), owned(&["displayName"], Need::Required, false)];

fn owned_table(kind: Kind) -> &'static [Owned] {
    match kind {
        Kind::User => USER_OWNED,
        Kind::Group => GROUP_OWNED,
    }
}

/// An owned attribute's value as [`drift`] compares it, hashed: what a listed object keeps
/// instead of its JSON. Hashes are 64-bit SipHash: two different values compare equal only if
/// they collide (about 2^-64 a comparison), and then a drifted value waits for its next change.
#[derive(Debug, Clone, PartialEq)]
enum Compared {
    /// No meaningful value (absent, null, "", [], {}).
    Absent,
    /// A scalar by its compared text ([`scalar`]: trimmed, lower case).
    Scalar(u64),
    /// A multi-valued attribute whose every item has a scalar value: (value, type) per item,
    /// type [`NO_TYPE`] when the item has none, at `start..start + len` of its
    /// [`OwnedValues`]' entries (one allocation for all of a resource's: a listed user holds
    /// twelve values, two of them lists).
    Entries { start: u32, len: u32 },
    /// Anything else, compared whole (JSON equality: object keys in any order).
    Other(u64),
}

/// The type of an item without one (a type's hash has its low bit set, so it is never this).
const NO_TYPE: u64 = 0;

impl Compared {
    /// `value` compared as `attr` is; a list's entries go to the end of `entries`.
    fn of(attr: &Owned, value: Option<&Value>, entries: &mut Vec<(u64, u64)>) -> Compared {
        let Some(v) = meaningful(value) else { return Compared::Absent };
        let whole = || Compared::Other(value_hash(v));
        if attr.multi {
            let Some(items) = v.as_array() else { return whole() };
            let start = entries.len();
            for i in items {
                let Some(value) = i.get("value").and_then(scalar) else {
                    entries.truncate(start); // an item without a scalar value: compared whole
                    return whole();
                };
                let kind = i.get("type").and_then(scalar).map_or(NO_TYPE, |t| text_hash(&t) | 1);
                entries.push((text_hash(&value), kind));
            }
            Compared::Entries { start: start as u32, len: items.len() as u32 }
        } else {
            scalar(v).map_or_else(whole, |s| Compared::Scalar(text_hash(&s)))
        }
    }

    /// Whether the tenant's value (`self` being what ausi sent, of `sent`) is drift.
    fn drifted(&self, sent: &OwnedValues, tenant: &Compared, there: &OwnedValues, need: Need) -> bool {
        match (self, tenant) {
            (Compared::Absent, Compared::Absent) => false,
            (Compared::Absent, _) => true,
            (_, Compared::Absent) => need == Need::Required,
            (Compared::Entries { start: a, len: m }, Compared::Entries { start: b, len: n }) => {
                !same_entries(sent.list(*a, *m), there.list(*b, *n))
            }
            (Compared::Scalar(s), Compared::Scalar(t)) | (Compared::Other(s), Compared::Other(t)) => s != t,
            _ => true,
        }
    }
}

/// Multi-valued attributes (emails, phoneNumbers): the same set of values in any order, and
/// where both sides give a value a `type`, the same type.
fn same_entries(sent: &[(u64, u64)], there: &[(u64, u64)]) -> bool {
    let values = |e: &[(u64, u64)]| e.iter().map(|(v, _)| *v).collect::<BTreeSet<_>>();
    if values(sent) != values(there) {
        return false;
    }
    sent.iter().all(|(value, kind)| {
        there.iter().filter(|(v, _)| v == value).all(|(_, k)| *kind == NO_TYPE || *k == NO_TYPE || kind == k)
    })
}

fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// A JSON value's hash, equal for equal values (object keys in any order).
fn value_hash(value: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(v: &Value, h: &mut std::hash::DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(items) => {
                (4u8, items.len()).hash(h);
                items.iter().for_each(|i| feed(i, h));
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                (5u8, keys.len()).hash(h);
                for k in keys {
                    k.hash(h);
                    feed(&map[k], h);
                }
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    feed(value, &mut h);
    h.finish()
}

/// A resource's owned attributes as [`drift`] compares them (see [`Compared`]): what a listed
/// object keeps of its resource.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedValues {
    values: Box<[Compared]>,
    /// The items of its lists ([`Compared::Entries`]).
    entries: Box<[(u64, u64)]>,
}

impl OwnedValues {
    pub fn of(kind: Kind, resource: &Value) -> OwnedValues {
        let mut entries = Vec::new();
        let values = owned_table(kind).iter().map(|a| Compared::of(a, get(resource, a.path), &mut entries)).collect();
        OwnedValues { values, entries: entries.into_boxed_slice() }
    }

    /// The entries of a list ([`Compared::Entries`]).
    fn list(&self, start: u32, len: u32) -> &[(u64, u64)] {
        self.entries.get(start as usize..(start + len) as usize).unwrap_or_default()
    }
}

/// The owned attributes in which the tenant's resource (`tenant`, see [`OwnedValues::of`])
/// differs from what ausi sent (`sent`), as SCIM paths (`name.givenName`,
/// `urn:…:User:department`); empty when it holds what ausi sent, give or take what servers may
/// do (see the module).
pub fn drift(kind: Kind, sent: &Value, tenant: &OwnedValues) -> Vec<String> {
    let sent = OwnedValues::of(kind, sent);
    owned_table(kind)
        .iter()
        .zip(sent.values.iter().zip(tenant.values.iter()))
        .filter(|(attr, (s, t))| s.drifted(&sent, t, tenant, attr.need))
        .map(|(attr, _)| path_name(attr.path))
        .collect()
}

/// The attributes ausi verifies in a write's answer (README, "Verified writes"): the ones a
/// tenant must keep for ausi to work. Others (displayName, title, phoneNumbers, the enterprise
/// extension, an email's type) are optional to a server and not checked.
const USER_VERIFIED: &[&[&str]] =
    &[&["externalId"], &["userName"], &["name", "givenName"], &["name", "familyName"], &["emails"], &["active"]];
const GROUP_VERIFIED: &[&[&str]] = &[&["externalId"]];

/// The verified attributes that a write's answer (`answer`, the resource the tenant returned)
/// does not hold as sent: dropped or changed. Emails are compared by value.
pub fn dropped(kind: Kind, sent: &Value, answer: &Value) -> Vec<String> {
    let table = match kind {
        Kind::User => USER_VERIFIED,
        Kind::Group => GROUP_VERIFIED,
    };
    let values = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|items| items.iter().filter_map(|i| i.get("value").and_then(scalar)).collect())
            .unwrap_or_default()
    };
    table
        .iter()
        .filter(|path| match (meaningful(get(sent, path)), meaningful(get(answer, path))) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(s), Some(t)) if path[0] == "emails" => !values(s).is_subset(&values(t)),
            (Some(s), Some(t)) => !same_scalar(s, t),
        })
        .map(|path| path_name(path))
        .collect()
}

/// The owned attributes ausi does not verify (see [`dropped`]) that a write's answer holds
/// otherwise than sent: what this tenant rewrites (django-scim2 rebuilds `displayName`) or
/// drops. A full sync does not count them as drift, so they cost no write per run.
pub fn altered(kind: Kind, sent: &Value, answer: &Value) -> Vec<String> {
    let verified: Vec<String> = match kind {
        Kind::User => USER_VERIFIED,
        Kind::Group => GROUP_VERIFIED,
    }
    .iter()
    .map(|p| path_name(p))
    .collect();
    drift(kind, sent, &OwnedValues::of(kind, answer)).into_iter().filter(|a| !verified.contains(a)).collect()
}

/// The member ids a group write sent that its answer does not list.
pub fn dropped_members<'a>(sent: impl IntoIterator<Item = &'a String>, answer: &Value) -> Vec<String> {
    let there: HashSet<&str> = answer
        .get("members")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().filter_map(|m| m.get("value").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    sent.into_iter().filter(|id| !there.contains(id.as_str())).cloned().collect()
}

fn get<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// `None` for what carries no value: absent, null, "", [], {}.
fn meaningful(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    })
}

/// A scalar as compared: trimmed, lower case (RFC 7643 declares these attributes
/// case-insensitive), booleans and numbers by their text ("true" and true are the same).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_lowercase()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn same_scalar(s: &Value, t: &Value) -> bool {
    match (scalar(s), scalar(t)) {
        (Some(a), Some(b)) => a == b,
        _ => s == t,
    }
}

fn path_name(path: &[&str]) -> String {
    match path {
        [schema, rest @ ..] if schema.starts_with("urn:") => format!("{schema}:{}", rest.join(".")),
        _ => path.join("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of a million users is held in this form: its size is a memory figure.
    #[test]
    fn a_listed_object_stays_small() {
        assert_eq!(std::mem::size_of::<Compared>(), 16);
        assert!(std::mem::size_of::<TenantObject>() <= 88, "{}", std::mem::size_of::<TenantObject>());
    }
    use serde_json::json;

    fn sent_user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_SCHEMA],
            "externalId": "00112233-4455-6677-8899-aabbccddeeff",
            "userName": "Alice@Example.test",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "displayName": "Alice Smith",
            "emails": [{"value": "alice@example.test", "type": "work", "primary": true}],
            "active": true,
            "phoneNumbers": [{"value": "+1 555", "type": "work"}],
            ENTERPRISE_SCHEMA: {"department": "Sales", "manager": {"value": "m-1"}},
        })
    }

    #[test]
    fn what_servers_add_reorder_or_lower_case_is_not_drift() {
        let tenant = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u-1",
            "meta": {"resourceType": "User", "version": "W/\"3\""},
            "externalId": "00112233-4455-6677-8899-AABBCCDDEEFF",
            "userName": "alice@example.test",
            "name": {"formatted": "Alice Smith", "familyName": "Smith", "givenName": "Alice"},
            "displayName": "Alice Smith",
            "emails": [{"primary": true, "value": "ALICE@example.test", "type": "Work"}],
            "active": "true",
            ENTERPRISE_SCHEMA: {"manager": {"value": "m-1", "$ref": "../Users/m-1", "displayName": "Boss"}, "department": "sales"},
            "groups": [{"value": "g"}],
        });
        // phoneNumbers dropped: a server that does not keep an optional attribute.
        assert_eq!(drift(Kind::User, &sent_user(), &OwnedValues::of(Kind::User, &tenant)), Vec::<String>::new());
    }

    #[test]
    fn edits_removals_and_additions_of_owned_attributes_are_drift() {
        let mut tenant = sent_user();
        tenant["name"]["familyName"] = json!("Jones");
        tenant["emails"] = json!([{"value": "alice@example.test", "type": "work"}, {"value": "x@evil.test"}]);
        tenant["active"] = json!(false);
        tenant["title"] = json!("Added in the tenant");
        tenant[ENTERPRISE_SCHEMA]["manager"]["value"] = json!("m-2");
        tenant.as_object_mut().unwrap().remove("displayName");
        assert_eq!(
            drift(Kind::User, &sent_user(), &OwnedValues::of(Kind::User, &tenant)),
            [
                "name.familyName",
                "displayName",
                "emails",
                "active",
                "title",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
            ]
        );
        let g = json!({"externalId": "g", "displayName": "Sales"});
        assert_eq!(
            drift(Kind::Group, &g, &owned_group(json!({"id": "1", "externalId": "g", "displayName": "SALES"}))).len(),
            0
        );
        assert_eq!(
            drift(Kind::Group, &g, &owned_group(json!({"id": "1", "externalId": "g", "displayName": "Other"}))),
            ["displayName"]
        );
    }

    fn owned_group(resource: Value) -> OwnedValues {
        OwnedValues::of(Kind::Group, &resource)
    }

    fn user(id: &str, external: Option<&str>, name: &str) -> Value {
        json!({"id": id, "externalId": external, "userName": name})
    }

    #[test]
    fn soft_match_from_one_listing_follows_the_rules() {
        let users = [
            user("1", Some("AAA"), "a@x"),
            user("2", None, "b@x"),
            user("3", Some("other"), "c@x"),
            user("4", Some("dup"), "d1@x"),
            user("5", Some("dup"), "d2@x"),
            user("6", Some(""), "E@X"),
        ];
        let view = TenantView::new(&users, &[], true, 1);
        assert_eq!(view.soft_match(Kind::User, "aaa", Some("zzz@x")), Match::Adopt("1".into()));
        assert_eq!(view.soft_match(Kind::User, "bbb", Some("B@x")), Match::Adopt("2".into()), "no externalId");
        assert_eq!(view.soft_match(Kind::User, "bbb", None), Match::Absent, "journaled: by externalId only");
        assert!(matches!(view.soft_match(Kind::User, "ccc", Some("c@x")), Match::Conflict(_)), "someone else's");
        assert!(matches!(view.soft_match(Kind::User, "dup", Some("d1@x")), Match::Conflict(_)));
        assert_eq!(view.soft_match(Kind::User, "eee", Some("e@x")), Match::Adopt("6".into()), "empty externalId");
        assert_eq!(view.soft_match(Kind::User, "fff", Some("f@x")), Match::Absent);
        assert_eq!(view.soft_match(Kind::Group, "aaa", None), Match::Absent, "kinds apart");
    }

    #[test]
    fn anchored_objects_are_found_missing_or_ambiguous() {
        let users = [user("1", Some("a"), "a@x"), user("2", Some("d"), "d1@x"), user("3", Some("d"), "d2@x")];
        let view = TenantView::new(&users, &[], true, 1);
        assert!(matches!(view.find(Kind::User, "a", Some("old")), Lookup::Found(o) if o.id() == "1"), "re-pointed");
        assert_eq!(view.find(Kind::User, "gone", Some("9")), Lookup::Missing);
        assert!(matches!(view.find(Kind::User, "d", Some("3")), Lookup::Found(o) if o.id() == "3"));
        assert_eq!(view.find(Kind::User, "d", Some("9")), Lookup::Ambiguous);
        let partial = TenantView::new(&users, &[], false, 1);
        assert_eq!(
            partial.find(Kind::User, "gone", Some("9")),
            Lookup::Ambiguous,
            "an incomplete listing proves nothing"
        );
    }

    #[test]
    fn unknown_objects_are_counted_and_listed_boundedly() {
        let mut users: Vec<Value> = (0..30).map(|n| user(&format!("x{n}"), None, &format!("x{n}@x"))).collect();
        users.push(user("mine", Some("g1"), "m@x"));
        users.push(user("adopted", None, "a@x"));
        let groups = [json!({"id": "g", "displayName": "Foreign", "externalId": "elsewhere"})];
        let view = TenantView::new(&users, &groups, true, 1);
        let ours: HashSet<&str> = ["adopted"].into();
        let unknown = view.unknown(&ours, &|g| g == "g1");
        assert_eq!((unknown.users, unknown.groups), (30, 1));
        assert_eq!(unknown.listed.len(), MAX_LISTED_UNKNOWN);
    }

    #[test]
    fn a_write_answer_is_verified_on_the_owned_attributes_only() {
        let sent = sent_user();
        // What django-scim2 answers: displayName rebuilt, title/phones/enterprise/email type dropped.
        let django = json!({
            "id": "7", "externalId": "00112233-4455-6677-8899-AABBCCDDEEFF", "userName": "alice@example.test",
            "name": {"givenName": "Alice", "familyName": "Smith"}, "displayName": "Alice Smith",
            "emails": [{"value": "alice@example.test", "primary": true}], "active": true,
        });
        assert!(dropped(Kind::User, &sent, &django).is_empty());
        // Not verified, but learnt: the tenant rewrites displayName (not drift next time).
        let mut rebuilt = django.clone();
        rebuilt["displayName"] = json!("Smith Alice");
        assert_eq!(altered(Kind::User, &sent, &rebuilt), ["displayName"]);
        assert!(altered(Kind::User, &sent, &django).is_empty(), "dropped optional attributes are no drift");
        let mut lost = django.clone();
        lost["name"] = json!({"givenName": "Alice"});
        lost.as_object_mut().unwrap().remove("active");
        assert_eq!(dropped(Kind::User, &sent, &lost), ["name.familyName", "active"]);
        let members = ["a".to_string(), "b".to_string()];
        assert_eq!(dropped_members(&members, &json!({"members": []})), ["a", "b"]);
        assert_eq!(dropped_members(&members, &json!({"members": [{"value": "b"}]})), ["a"]);
    }

    #[test]
    fn a_missing_object_found_by_its_id_is_not_missing() {
        let anchor = |guid: &str, id: &str| plan::Anchor {
            guid: guid.into(),
            kind: Kind::User,
            scim_id: Some(id.into()),
            dn: format!("CN={guid}"),
            hash: None,
            state: plan::AnchorState::Active,
        };
        let anchors = [anchor("a", "1"), anchor("b", "2"), anchor("c", "3")];
        let mut view = TenantView::new(&[user("1", Some("a"), "a@x")], &[], true, 1);
        view.altered = ["displayName".to_string()].into();
        assert_eq!(unconfirmed(&view, anchors.clone()), [(Kind::User, "2".into()), (Kind::User, "3".into())]);
        // "2" moved between two pages while the tenant was listed: asked for by id, it is there.
        view.confirm([(Kind::User, user("2", Some("B"), "b@x")), (Kind::User, user("1", Some("a"), "a@x"))]);
        assert!(matches!(view.find(Kind::User, "b", Some("2")), Lookup::Found(o) if o.id() == "2"));
        assert_eq!(view.count(Kind::User), 2, "an object listed already is not added twice");
        assert_eq!(missing(&view, anchors.clone()), ["c".to_string()].into());
        assert!(view.complete && view.altered.contains("displayName"), "the view keeps what it knew");
        let partial = TenantView::new(&[], &[], false, 1);
        assert!(unconfirmed(&partial, anchors.clone()).is_empty(), "an incomplete listing proves no absence");
    }

    #[test]
    fn a_user_name_has_its_holders() {
        let view = TenantView::new(
            &[
                json!({"id": "1", "userName": "A@x.test", "externalId": "g1"}),
                json!({"id": "2", "userName": "b@x.test"}),
            ],
            &[],
            true,
            1,
        );
        assert_eq!(view.holders("a@X.test").iter().map(|o| o.id()).collect::<Vec<_>>(), ["1"]);
        assert!(view.holders("c@x.test").is_empty());
    }

    /// Every key hashes alike: each lookup must still find exactly its own objects.
    fn colliding(users: &[Value], groups: &[Value]) -> TenantView {
        let mut builder = ViewBuilder::hashing(|_| 7);
        users.iter().for_each(|r| builder.push(Kind::User, r));
        groups.iter().for_each(|r| builder.push(Kind::Group, r));
        builder.finish(true, 1)
    }

    #[test]
    fn lookups_compare_keys_so_hash_collisions_change_no_answer() {
        let users = [
            user("1", Some("AAA"), "a@x"),
            user("2", None, "b@x"),
            user("3", Some("other"), "c@x"),
            user("4", Some("dup"), "d1@x"),
            user("5", Some("dup"), "d2@x"),
            user("1", Some("listed-twice"), "z@x"),
        ];
        let groups = [
            json!({"id": "g1", "externalId": "aaa", "displayName": "G", "members": [{"value": "1"}]}),
            json!({"id": "1", "externalId": "numbered", "displayName": "A group under a user's id"}),
        ];
        let (exact, collided) = (TenantView::new(&users, &groups, true, 1), colliding(&users, &groups));
        for view in [&exact, &collided] {
            assert_eq!((view.count(Kind::User), view.count(Kind::Group)), (5, 2), "the first listing of user 1 counts");
            assert_eq!(view.soft_match(Kind::Group, "numbered", None), Match::Adopt("1".into()));
            assert_eq!(view.soft_match(Kind::User, "aaa", None), Match::Adopt("1".into()));
            assert_eq!(view.soft_match(Kind::Group, "AAA", None), Match::Adopt("g1".into()), "kinds apart");
            assert_eq!(view.soft_match(Kind::User, "bbb", Some("B@x")), Match::Adopt("2".into()));
            assert!(matches!(view.soft_match(Kind::User, "ccc", Some("c@x")), Match::Conflict(_)));
            assert!(matches!(view.soft_match(Kind::User, "dup", None), Match::Conflict(_)));
            assert_eq!(view.soft_match(Kind::User, "listed-twice", None), Match::Absent);
            assert_eq!(view.find(Kind::User, "gone", None), Lookup::Missing);
            assert!(matches!(view.find(Kind::User, "dup", Some("5")), Lookup::Found(o) if o.id() == "5"));
            assert_eq!(view.holders("D1@x").iter().map(|o| o.id()).collect::<Vec<_>>(), ["4"]);
            let unknown = view.unknown(&HashSet::new(), &|g| g == "aaa" || g == "numbered");
            assert_eq!((unknown.users, unknown.groups), (4, 0));
        }
    }

    #[test]
    fn a_listed_object_keeps_its_owned_values_not_its_json() {
        let mut tenant = sent_user();
        tenant["id"] = json!("u-1");
        tenant["meta"] = json!({"version": "W/\"1\""});
        let o = TenantObject::from_resource(Kind::User, &tenant).unwrap();
        assert_eq!(o.resource, OwnedValues::of(Kind::User, &sent_user()), "meta and id are not owned");
        assert_eq!(o.display_name(), None, "a user is named by its userName");
        assert!(drift(Kind::User, &sent_user(), &o.resource).is_empty());
    }

    /// The texts a listed object keeps, each read back from the one allocation they share.
    #[test]
    fn a_listed_object_reads_back_its_texts() {
        let user = json!({"id": "U-1", "externalId": " AB-CD ", "userName": "Jo@X", "displayName": "Jo"});
        let o = TenantObject::from_resource(Kind::User, &user).unwrap();
        assert_eq!(
            (o.id(), o.external_id(), o.user_name(), o.display_name()),
            ("U-1", Some("ab-cd"), Some("jo@x"), None)
        );
        let nameless = json!({"id": "u-2", "displayName": "Jo", "userName": " "});
        let o = TenantObject::from_resource(Kind::User, &nameless).unwrap();
        assert_eq!((o.id(), o.external_id(), o.user_name(), o.display_name()), ("u-2", None, None, Some("Jo")));
        let group = json!({"id": "g", "externalId": "x", "displayName": "All", "members": [{"value": "b"}, {"value": "a"}, {"value": "b"}]});
        let o = TenantObject::from_resource(Kind::Group, &group).unwrap();
        assert_eq!((o.id(), o.external_id(), o.user_name(), o.display_name()), ("g", Some("x"), None, Some("All")));
        assert_eq!(o.members().collect::<Vec<_>>(), ["a", "b"]);
        assert!(o.lists("a") && !o.lists("c"));
        assert!(TenantObject::from_resource(Kind::User, &json!({"id": ""})).is_none());
    }

    #[test]
    fn compared_values_follow_the_json_rules() {
        let sent =
            json!({"emails": [{"value": "a@x", "type": "work"}, {"value": "b@x"}], "title": {"b": 1, "a": [1, 2]}});
        let same =
            json!({"emails": [{"value": "B@x", "type": "home"}, {"value": "A@x"}], "title": {"a": [1, 2], "b": 1}});
        let changed = |path: &str, v: Value| {
            let mut t = same.clone();
            t[path] = v;
            drift(Kind::User, &sent, &OwnedValues::of(Kind::User, &t))
        };
        let drifted = drift(Kind::User, &sent, &OwnedValues::of(Kind::User, &same));
        assert!(!drifted.contains(&"emails".to_string()) && !drifted.contains(&"title".to_string()), "{drifted:?}");
        assert!(
            changed("emails", json!([{"value": "a@x", "type": "home"}, {"value": "b@x"}])).contains(&"emails".into())
        );
        assert!(changed("emails", json!([{"value": "a@x"}])).contains(&"emails".into()));
        assert!(changed("emails", json!("a@x")).contains(&"emails".into()), "not a list of values");
        assert!(changed("title", json!({"a": [2, 1], "b": 1})).contains(&"title".into()), "arrays keep their order");
        assert!(changed("title", json!("x")).contains(&"title".into()));
    }
}
