//! An in-memory tenant for the engine's and the applier's tests (through [`Tenant`]): it can
//! refuse a kind of request, drop members or attributes, and cannot filter unless told.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::tenant::scim::{BulkOperation, BulkOutcome, Listing, ResourceKind, ScimErrorInfo};
use crate::tenant::{Tenant, TenantError};

#[derive(Default)]
pub(crate) struct Fake {
    /// `PATCH … members[value eq "…"]` → 501 (django-scim2).
    pub(crate) refuse_filter_remove: bool,
    /// Every PATCH of a group → 501.
    pub(crate) refuse_group_patch: bool,
    /// POST/PUT of a group keep no members (django-scim2).
    pub(crate) drop_members_on_write: bool,
    /// A PATCH adding members is answered 200 but changes nothing.
    pub(crate) drop_members_on_patch: bool,
    /// A user's name.familyName is not kept.
    pub(crate) drop_family_name: bool,
    /// Filters answer `400 invalidFilter` when false.
    pub(crate) filters: bool,
    /// `/Bulk` works (each operation as its own POST or PUT would); else it answers 501.
    pub(crate) bulk: bool,
    /// The n-th create (from 1) is kept but never answered: the instant a run is killed at in
    /// the crash tests (see [`FakeState::frozen`]).
    pub(crate) freeze_at_create: Option<u64>,
    /// With it, a `/Bulk` request is in flight for a few turns of the runtime (ausi goes on
    /// meanwhile) and is answered once what this returns (an observation of the caller's) is
    /// logged.
    pub(crate) on_bulk_answer: Option<Box<dyn Fn() -> String + Send + Sync>>,
    pub(crate) state: Mutex<FakeState>,
}

#[derive(Default)]
pub(crate) struct FakeState {
    pub(crate) next: u64,
    pub(crate) resources: BTreeMap<(&'static str, String), Value>,
    pub(crate) log: Vec<String>,
    pub(crate) creates: u64,
    /// The create [`Fake::freeze_at_create`] names has reached the tenant.
    pub(crate) frozen: bool,
}

pub(crate) fn rejected(status: u16, scim_type: Option<&str>, detail: &str) -> TenantError {
    TenantError::Rejected(ScimErrorInfo {
        status,
        scim_type: scim_type.map(str::to_owned),
        detail: Some(detail.to_owned()),
    })
}

impl Fake {
    pub(crate) fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    pub(crate) fn all(&self, kind: ResourceKind) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.resources.iter().filter(|((k, _), _)| *k == kind.endpoint()).map(|(_, v)| v.clone()).collect()
    }

    pub(crate) fn by_name(&self, user_name: &str) -> Value {
        self.all(ResourceKind::User).into_iter().find(|u| u["userName"] == user_name).unwrap()
    }

    pub(crate) fn members(&self, id: &str) -> BTreeSet<String> {
        let st = self.state.lock().unwrap();
        st.resources[&("Groups", id.to_owned())]["members"]
            .as_array()
            .map(|ms| ms.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Stores a resource as this tenant keeps it; 409 on a userName someone else holds.
    fn store(&self, st: &mut FakeState, kind: ResourceKind, id: &str, body: &Value) -> Result<Value, TenantError> {
        let mut v = body.clone();
        if kind == ResourceKind::User {
            let name = v["userName"].as_str().unwrap_or_default().to_lowercase();
            let taken = st.resources.iter().any(|((k, other), r)| {
                *k == "Users" && other != id && r["userName"].as_str().unwrap_or_default().to_lowercase() == name
            });
            if taken {
                return Err(rejected(409, Some("uniqueness"), "userName is taken"));
            }
            if self.drop_family_name {
                v["name"].as_object_mut().map(|n| n.remove("familyName"));
            }
        }
        if kind == ResourceKind::Group && self.drop_members_on_write {
            v["members"] = json!([]);
        }
        v["id"] = json!(id);
        st.resources.insert((kind.endpoint(), id.to_owned()), v.clone());
        Ok(v)
    }
}

fn ids_of(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl Tenant for Fake {
    fn create<'a>(&'a self, kind: ResourceKind, body: &'a Value) -> BoxFuture<'a, Result<Value, TenantError>> {
        Box::pin(async move {
            let (stored, freeze) = {
                let mut st = self.state.lock().unwrap();
                st.log.push(format!("POST {}", kind.endpoint()));
                st.next += 1;
                st.creates += 1;
                let id = format!("{}", st.next);
                let stored = self.store(&mut st, kind, &id, body);
                st.frozen |= self.freeze_at_create == Some(st.creates);
                (stored, self.freeze_at_create == Some(st.creates))
            };
            if freeze {
                return std::future::pending().await;
            }
            stored
        })
    }

    fn replace<'a>(
        &'a self,
        kind: ResourceKind,
        id: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Value>, TenantError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            st.log.push(format!("PUT {}/{id}", kind.endpoint()));
            if !st.resources.contains_key(&(kind.endpoint(), id.to_owned())) {
                return Err(TenantError::NotFound);
            }
            self.store(&mut st, kind, id, body).map(Some)
        })
    }

    fn patch<'a>(
        &'a self,
        kind: ResourceKind,
        id: &'a str,
        operations: &'a [Value],
    ) -> BoxFuture<'a, Result<Option<Value>, TenantError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            st.log.push(format!("PATCH {}/{id} {}", kind.endpoint(), Value::from(operations.to_vec())));
            if kind == ResourceKind::Group && self.refuse_group_patch {
                return Err(rejected(501, None, "not implemented"));
            }
            let key = (kind.endpoint(), id.to_owned());
            let mut v = st.resources.get(&key).cloned().ok_or(TenantError::NotFound)?;
            for op in operations {
                let path = op["path"].as_str().unwrap_or_default();
                let mut members = ids_of(&v["members"]);
                match (op["op"].as_str().unwrap_or_default(), path) {
                    ("add", "members") if !self.drop_members_on_patch => members.extend(ids_of(&op["value"])),
                    ("add", "members") => {}
                    ("remove", p) if p.starts_with("members[") => {
                        if self.refuse_filter_remove {
                            return Err(rejected(501, None, "not implemented"));
                        }
                        let x = p.split('"').nth(1).unwrap_or_default();
                        members.retain(|m| m != x);
                    }
                    ("remove", "members") => {
                        let gone = ids_of(&op["value"]);
                        members.retain(|m| !gone.contains(m));
                    }
                    ("replace", "members") => members = ids_of(&op["value"]),
                    ("replace", attribute) => {
                        v[attribute] = op["value"].clone();
                        continue;
                    }
                    _ => return Err(rejected(400, Some("invalidPath"), "unsupported")),
                }
                v["members"] = members.into_iter().map(|m| json!({ "value": m })).collect();
            }
            st.resources.insert(key, v.clone());
            Ok(Some(v))
        })
    }

    fn delete<'a>(&'a self, kind: ResourceKind, id: &'a str) -> BoxFuture<'a, Result<(), TenantError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            st.log.push(format!("DELETE {}/{id}", kind.endpoint()));
            st.resources.remove(&(kind.endpoint(), id.to_owned()));
            Ok(())
        })
    }

    fn get<'a>(&'a self, kind: ResourceKind, id: &'a str) -> BoxFuture<'a, Result<Option<Value>, TenantError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            st.log.push(format!("GET {}/{id}", kind.endpoint()));
            Ok(st.resources.get(&(kind.endpoint(), id.to_owned())).cloned())
        })
    }

    fn find<'a>(
        &'a self,
        kind: ResourceKind,
        attribute: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Value>, TenantError>> {
        Box::pin(async move {
            self.state.lock().unwrap().log.push(format!("FILTER {} {attribute}", kind.endpoint()));
            if !self.filters {
                return Err(rejected(400, Some("invalidFilter"), "no filters here"));
            }
            Ok(self
                .all(kind)
                .into_iter()
                .filter(|r| r[attribute].as_str().is_some_and(|v| v.eq_ignore_ascii_case(value)))
                .collect())
        })
    }

    fn listing<'a>(
        &'a self,
        kind: ResourceKind,
        _page_size: u32,
        _attributes: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Listing, TenantError>> {
        Box::pin(async move {
            self.state.lock().unwrap().log.push(format!("LIST {}", kind.endpoint()));
            let resources = self.all(kind);
            let total = resources.len() as u64;
            Ok(Listing { resources, pages: 1, total, complete: true })
        })
    }

    fn bulk<'a>(&'a self, operations: &'a [BulkOperation<'a>]) -> BoxFuture<'a, Result<Vec<BulkOutcome>, TenantError>> {
        Box::pin(async move {
            if !self.bulk {
                return Err(rejected(501, None, "no bulk"));
            }
            self.state.lock().unwrap().log.push(format!("BULK {}", operations.len()));
            if let Some(observe) = &self.on_bulk_answer {
                for _ in 0..8 {
                    tokio::task::yield_now().await;
                }
                let seen = observe();
                self.state.lock().unwrap().log.push(seen);
            }
            let mut st = self.state.lock().unwrap();
            let outcomes = operations
                .iter()
                .map(|op| {
                    let id = op.id.clone().unwrap_or_else(|| {
                        st.next += 1;
                        st.creates += 1;
                        st.next.to_string()
                    });
                    let body = op.data.as_deref().cloned().unwrap_or_default();
                    let (status, id, error) = match self.store(&mut st, op.kind, &id, &body) {
                        Ok(_) => (if op.id.is_some() { 200 } else { 201 }, Some(id), None),
                        Err(TenantError::Rejected(info)) => (info.status, None, Some(info)),
                        Err(e) => unreachable!("store only rejects: {e}"),
                    };
                    BulkOutcome { bulk_id: op.bulk_id.clone(), status, id, error }
                })
                .collect();
            Ok(outcomes)
        })
    }
}

impl crate::sync::run::RunTenant for Fake {
    fn probe_filters(&self) -> BoxFuture<'_, Result<crate::tenant::scim::FilterProbe, TenantError>> {
        let how = "the in-memory tenant".to_owned();
        Box::pin(async move { Ok(crate::tenant::scim::FilterProbe { works: self.filters, how, wrote: false }) })
    }
}
