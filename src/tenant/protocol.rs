//! The SCIM 2.0 protocol as ausi writes and reads it, without any I/O: request bodies (PATCH
//! operations, `/Bulk` requests), filter and URL escaping, and parsing of list responses,
//! capabilities and bulk answers. The client ([`super::scim`]) sends what is built here.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};

use super::scim::{Capabilities, ResourceKind, ScimErrorInfo, TenantError};

pub(crate) const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub(crate) const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
}

impl BulkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkMethod::Post => "POST",
            BulkMethod::Put => "PUT",
            BulkMethod::Patch => "PATCH",
        }
    }
}

/// A whole listing of one resource type.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub resources: Vec<Value>,
    /// Requests it took.
    pub pages: u64,
    /// `totalResults` of the last page.
    pub total: u64,
    /// As many distinct resources as the tenant counted (none vanished between pages).
    pub complete: bool,
}

/// One operation of a `/Bulk` request. Its `data` is borrowed where it can be (a user's body as
/// planned): the request is written from it, never copied into a tree of its own.
#[derive(Debug, Clone)]
pub struct BulkOperation<'a> {
    pub method: BulkMethod,
    pub kind: ResourceKind,
    /// The resource for PUT; `None` for POST.
    pub id: Option<String>,
    pub bulk_id: String,
    pub data: Option<Cow<'a, Value>>,
}

/// What the tenant did with one bulk operation. `status` 0: the answer did not mention it.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOutcome {
    pub bulk_id: String,
    pub status: u16,
    /// The resource's id (from `location`, or the PUT target).
    pub id: Option<String>,
    pub error: Option<ScimErrorInfo>,
}

/// A status given as number or string (`"201"`), as servers differ.
pub(crate) fn status_code(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().get(..3).and_then(|c| c.parse().ok()),
        _ => None,
    }
}

pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// A PATCH operation replacing one attribute: `{"op":"replace","path":PATH,"value":VALUE}`.
pub fn patch_replace(path: &str, value: Value) -> Value {
    json!({ "op": "replace", "path": path, "value": value })
}

/// The PatchOp message around `operations` (alone, or as a bulk operation's data).
pub fn patch_message(operations: &[Value]) -> Value {
    json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": operations })
}

/// A PATCH operation adding group members: `{"op":"add","path":"members","value":[{"value":ID},...]}`.
pub fn patch_add_members(ids: &[String]) -> Value {
    let members: Vec<Value> = ids.iter().map(|id| json!({ "value": id })).collect();
    json!({ "op": "add", "path": "members", "value": members })
}

/// A PATCH operation removing one group member, in the bracket form
/// `{"op":"remove","path":"members[value eq \"ID\"]"}` (some servers reject the value-array form).
pub fn patch_remove_member(id: &str) -> Value {
    json!({
        "op": "remove",
        "path": format!("members[value eq \"{}\"]", escape_filter_value(id)),
    })
}

/// Escapes a filter comparison value for use inside double quotes (RFC 7644 §3.4.2.2).
pub(crate) fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a query value or a path segment (spaces as `%20`, never `+`).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, TenantError> {
    serde_json::from_slice(body).map_err(|e| TenantError::Protocol(not_json(&e)))
}

/// What is said of an answer that is not JSON at all (not only of another shape than asked).
fn not_json(e: &serde_json::Error) -> String {
    format!("the answer is not valid JSON: {e}")
}

/// `Resources` (missing = none) and `totalResults` of a whole ListResponse (a filter's answer,
/// a probe's page): [`read_list_page`], the resources gathered.
pub(crate) fn parse_list_response(body: &[u8]) -> Result<(Vec<Value>, Option<u64>), TenantError> {
    let mut resources = Vec::new();
    let (total, _) = read_list_page(body, &mut |r| resources.push(r))?;
    Ok((resources, total))
}

/// A ListResponse page read from its body: each of its `Resources` (missing = none) handed to
/// `each` as it is parsed, so that the page is never held as JSON values (a thousand resources
/// took about ten times their text). Returns `totalResults` and how many resources there were.
/// An answer that turns out to be no ListResponse is an error, also after some of its resources
/// were handed over.
pub(crate) fn read_list_page(body: &[u8], each: &mut dyn FnMut(Value)) -> Result<(Option<u64>, u64), TenantError> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Page<'e> {
        each: &'e mut dyn FnMut(Value),
        returned: u64,
    }
    struct Resources<'p, 'e>(&'p mut Page<'e>);

    impl<'de> Visitor<'de> for &mut Page<'_> {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a ListResponse")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<u64>, A::Error> {
            let mut total = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "Resources" => map.next_value_seed(Resources(&mut *self))?,
                    "totalResults" => total = as_u64_lenient(&map.next_value::<Value>()?),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(total)
        }
    }

    impl<'de> DeserializeSeed<'de> for Resources<'_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Resources<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of resources")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(resource) = seq.next_element::<Value>()? {
                self.0.returned += 1;
                (self.0.each)(resource);
            }
            Ok(())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            Ok(()) // null: none
        }
    }

    let mut page = Page { each, returned: 0 };
    let mut de = serde_json::Deserializer::from_slice(body);
    match de.deserialize_map(&mut page).and_then(|total| de.end().map(|()| total)) {
        Ok(total) => Ok((total, page.returned)),
        // Valid JSON of the wrong shape: the only value read with a shape is `Resources`.
        Err(e) => Err(TenantError::Protocol(match serde_json::from_slice::<Value>(body) {
            Ok(v) if !v.is_object() => "a ListResponse is not a JSON object".to_owned(),
            Ok(_) => "\"Resources\" of a ListResponse is not an array".to_owned(),
            Err(_) => not_json(&e),
        })),
    }
}

pub(crate) fn as_u64_lenient(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn parse_capabilities(v: &Value) -> Capabilities {
    let flag = |p: &str| {
        v.pointer(p)
            .map(|x| match x {
                Value::Bool(b) => *b,
                Value::String(s) => s.eq_ignore_ascii_case("true"),
                _ => false,
            })
            .unwrap_or(false)
    };
    let number = |p: &str| v.pointer(p).and_then(as_u64_lenient).unwrap_or(0);
    Capabilities {
        patch: flag("/patch/supported"),
        bulk: flag("/bulk/supported"),
        bulk_max_operations: u32::try_from(number("/bulk/maxOperations")).unwrap_or(u32::MAX),
        bulk_max_payload: number("/bulk/maxPayloadSize"),
        filter: flag("/filter/supported"),
        filter_max_results: u32::try_from(number("/filter/maxResults")).unwrap_or(u32::MAX),
        etag: flag("/etag/supported"),
        filter_probed: None,
    }
}

/// The `/Bulk` request (RFC 7644 §3.7) for `operations`, without `failOnErrors` (some servers
/// stop at the first error when it is given), as the bytes sent: written straight from the
/// operations (a request of 500 users is 290 kB; built as JSON values first, it cost an
/// allocation per attribute, and the allocator more per allocation the larger the directory).
pub fn bulk_request(operations: &[BulkOperation<'_>]) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct BulkRequest<'o, 'a> {
        schemas: [&'static str; 1],
        #[serde(rename = "Operations")]
        operations: &'o [BulkOperation<'a>],
    }
    serde_json::to_vec(&BulkRequest { schemas: [BULK_REQUEST_SCHEMA], operations })
}

impl Serialize for BulkOperation<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(if self.data.is_some() { 4 } else { 3 }))?;
        map.serialize_entry("method", self.method.as_str())?;
        // `/Users`, or `/Groups/{id}` (percent-encoded).
        let endpoint = self.kind.endpoint();
        match &self.id {
            Some(id) => {
                map.serialize_entry("path", &format_args!("/{endpoint}/{}", utf8_percent_encode(id, NOT_UNRESERVED)))
            }
            None => map.serialize_entry("path", &format_args!("/{endpoint}")),
        }?;
        map.serialize_entry("bulkId", &self.bulk_id)?;
        if let Some(data) = &self.data {
            map.serialize_entry("data", data.as_ref())?;
        }
        map.end()
    }
}

/// One result of a `/Bulk` answer, as far as ausi reads it: fields of any type are taken (and
/// judged below), the others skipped unread. Read as this, not as a JSON object per result, an
/// answer of 500 results costs a few allocations each, not one per key and value.
#[derive(serde::Deserialize)]
struct BulkResult {
    #[serde(rename = "bulkId", default)]
    bulk_id: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    location: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
}

#[derive(serde::Deserialize)]
struct BulkAnswer {
    #[serde(rename = "Operations")]
    operations: Option<Vec<BulkResult>>,
}

/// One outcome per operation of a `/Bulk` answer (its body), in the order of the request
/// (status 0: the answer does not mention it).
pub fn bulk_outcomes(body: &[u8], operations: &[BulkOperation<'_>]) -> Result<Vec<BulkOutcome>, TenantError> {
    let answer: BulkAnswer = serde_json::from_slice(body).map_err(|e| {
        let valid = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        TenantError::Protocol(match valid {
            true => format!("the bulk answer is not a BulkResponse: {e}"),
            false => not_json(&e),
        })
    })?;
    let results =
        answer.operations.ok_or_else(|| TenantError::Protocol("the bulk answer has no \"Operations\"".into()))?;
    let mut by_id: std::collections::HashMap<&str, &BulkResult> =
        results.iter().filter_map(|r| r.bulk_id.as_ref().and_then(Value::as_str).map(|b| (b, r))).collect();
    Ok(operations
        .iter()
        .map(|op| {
            let Some(result) = by_id.remove(op.bulk_id.as_str()) else {
                return BulkOutcome { bulk_id: op.bulk_id.clone(), status: 0, id: None, error: None };
            };
            let status = status_code(result.status.as_ref()).unwrap_or(0);
            let response = result.response.as_ref();
            let id = result
                .location
                .as_ref()
                .and_then(Value::as_str)
                .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                .map(percent_decode)
                .or_else(|| response.and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned))
                .or_else(|| op.id.clone());
            let error = (!(200..300).contains(&status)).then(|| {
                let text = |k: &str| response.and_then(|r| r.get(k)).and_then(Value::as_str).map(str::to_owned);
                ScimErrorInfo { status, scim_type: text("scimType"), detail: text("detail") }
            });
            BulkOutcome { bulk_id: op.bulk_id.clone(), status, id, error }
        })
        .collect())
}

/// How a PATCH removes group members. Servers differ (see the README): the standard
/// filter form first, then the value-array form, then a replace of the whole member list; the
/// form that works is remembered for the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoveForm {
    /// `{"op":"remove","path":"members[value eq \"ID\"]"}`, one operation per member (RFC 7644 §3.5.2.2).
    Filter,
    /// `{"op":"remove","path":"members","value":[{"value":"ID"}…]}`.
    ValueArray,
    /// `{"op":"replace","path":"members","value":[…every member that stays…]}`.
    Replace,
}

impl RemoveForm {
    pub const ALL: [RemoveForm; 3] = [RemoveForm::Filter, RemoveForm::ValueArray, RemoveForm::Replace];

    pub fn as_str(self) -> &'static str {
        match self {
            RemoveForm::Filter => "filter",
            RemoveForm::ValueArray => "value-array",
            RemoveForm::Replace => "replace",
        }
    }

    pub fn parse(s: &str) -> Option<RemoveForm> {
        RemoveForm::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The next form to try after this one was refused.
    pub fn next(self) -> Option<RemoveForm> {
        match self {
            RemoveForm::Filter => Some(RemoveForm::ValueArray),
            RemoveForm::ValueArray => Some(RemoveForm::Replace),
            RemoveForm::Replace => None,
        }
    }
}

/// A group member as SCIM writes it: `{"value": ID, "type": "User"|"Group"}` (RFC 7643 §4.2;
/// the type tells servers whose ids are not unique across resource types which one is meant).
pub fn member(id: &str, kind: Option<ResourceKind>) -> Value {
    match kind {
        Some(k) => json!({ "value": id, "type": k.type_name() }),
        None => json!({ "value": id }),
    }
}

/// `{"op":"add","path":"members","value":[members]}` with typed members.
pub fn patch_add_typed_members(members: &[(String, Option<ResourceKind>)]) -> Value {
    let value: Vec<Value> = members.iter().map(|(id, k)| member(id, *k)).collect();
    json!({ "op": "add", "path": "members", "value": value })
}

/// The operations that remove `members` in `form`; `Replace` needs the members that stay
/// (`remaining`), as the tenant lists them.
pub fn patch_remove_members(
    form: RemoveForm,
    members: &[(String, Option<ResourceKind>)],
    remaining: &[(String, Option<ResourceKind>)],
) -> Vec<Value> {
    match form {
        RemoveForm::Filter => members.iter().map(|(id, _)| patch_remove_member(id)).collect(),
        RemoveForm::ValueArray => {
            let value: Vec<Value> = members.iter().map(|(id, k)| member(id, *k)).collect();
            vec![json!({ "op": "remove", "path": "members", "value": value })]
        }
        RemoveForm::Replace => {
            let value: Vec<Value> = remaining.iter().map(|(id, k)| member(id, *k)).collect();
            vec![json!({ "op": "replace", "path": "members", "value": value })]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's resources in order with its totalResults, wherever the keys are; every way an
    /// answer can fail to be a ListResponse named.
    #[test]
    fn a_list_page_is_read_resource_by_resource() {
        let read = |body: &str| {
            let mut ids = Vec::new();
            let got = read_list_page(body.as_bytes(), &mut |r| ids.push(r["id"].as_str().unwrap_or("?").to_owned()));
            got.map(|(total, returned)| (total, returned, ids)).map_err(|e| e.to_string())
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            read(
                r#"{"totalResults": 3, "Resources": [{"id": "a"}, {"id": "b", "x": [1, {"y": null}]}], "schemas": []}"#
            ),
            Ok((Some(3), 2, ids(&["a", "b"])))
        );
        assert_eq!(read(r#"{"Resources": [{"id": "a"}], "totalResults": "7"}"#), Ok((Some(7), 1, ids(&["a"]))));
        assert_eq!(read(r#"{"totalResults": 0, "Resources": null}"#), Ok((Some(0), 0, vec![])));
        assert_eq!(read(r#"{"totalResults": 0}"#), Ok((Some(0), 0, vec![])));
        assert_eq!(read(r#"{"Resources": []}"#), Ok((None, 0, vec![])));
        let protocol = |m: &str| Err(TenantError::Protocol(m.into()).to_string());
        assert_eq!(read(r#"[{"id": "a"}]"#), protocol("a ListResponse is not a JSON object"));
        assert_eq!(read("null"), protocol("a ListResponse is not a JSON object"));
        assert_eq!(read(r#""x""#), protocol("a ListResponse is not a JSON object"));
        assert_eq!(
            read(r#"{"Resources": {"id": "a"}, "totalResults": 1}"#),
            protocol("\"Resources\" of a ListResponse is not an array")
        );
        assert_eq!(read(r#"{"Resources": 5}"#), protocol("\"Resources\" of a ListResponse is not an array"));
        for broken in [r#"{"Resources": [{"id": "a"}"#, r#"{"totalResults": 1} {"#, "", "<html>"] {
            let got = read(broken);
            assert!(got.as_ref().is_err_and(|e| e.contains("the answer is not valid JSON")), "{broken}: {got:?}");
        }
    }

    #[test]
    fn bulk_request_text() {
        let ops = vec![
            BulkOperation {
                method: BulkMethod::Post,
                kind: ResourceKind::User,
                id: None,
                bulk_id: "u1".into(),
                data: Some(Cow::Owned(json!({"userName": "a", "active": true}))),
            },
            BulkOperation {
                method: BulkMethod::Put,
                kind: ResourceKind::Group,
                id: Some("g/1".into()),
                bulk_id: "g1".into(),
                data: Some(Cow::Owned(json!({"displayName": "G"}))),
            },
        ];
        let request = String::from_utf8(bulk_request(&ops).unwrap()).unwrap();
        assert_eq!(
            request,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[{"method":"POST","path":"/Users","bulkId":"u1","data":{"userName":"a","active":true}},{"method":"PUT","path":"/Groups/g%2F1","bulkId":"g1","data":{"displayName":"G"}}]}"#
        );
    }

    #[test]
    fn bulk_outcomes_follow_the_request_whatever_the_answer_holds() {
        let op = |bulk_id: &str, id: Option<&str>| BulkOperation {
            method: if id.is_some() { BulkMethod::Put } else { BulkMethod::Post },
            kind: ResourceKind::User,
            id: id.map(str::to_owned),
            bulk_id: bulk_id.into(),
            data: None,
        };
        let ops = [op("a", None), op("b", None), op("c", Some("c-id")), op("d", None), op("e", None)];
        let answer = br#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": [
            {"method": "POST", "bulkId": "e", "status": {"code": 201}},
            {"method": "POST", "bulkId": "b", "status": 201, "response": {"id": "from%20response"}},
            {"method": "POST", "bulkId": "a", "status": "201 Created", "version": "W/\"1\"",
             "location": "https://t.test/v2/Users/a%2Fid/"},
            {"method": "PUT", "bulkId": "c", "status": "200"},
            {"method": "POST", "bulkId": 7, "status": "201"},
            {"method": "POST", "bulkId": "d", "status": "409",
             "response": {"status": "409", "scimType": "uniqueness", "detail": "taken"}}]}"#;
        let got = bulk_outcomes(answer, &ops).unwrap();
        let brief: Vec<(u16, Option<&str>)> = got.iter().map(|o| (o.status, o.id.as_deref())).collect();
        assert_eq!(
            brief,
            [(201, Some("a/id")), (201, Some("from%20response")), (200, Some("c-id")), (409, None), (0, None)],
            "in the request's order; the id from location, the response, or the PUT's target"
        );
        let conflict = got[3].error.as_ref().unwrap();
        assert_eq!((conflict.scim_type.as_deref(), conflict.detail.as_deref()), (Some("uniqueness"), Some("taken")));
        assert!(got[..3].iter().all(|o| o.error.is_none()));
        assert_eq!(got[4].error.as_ref().map(|e| e.status), Some(0), "a status that is no status is no success");
        let fails = |body: &[u8]| bulk_outcomes(body, &ops).unwrap_err().to_string();
        assert!(fails(br#"{"schemas": []}"#).contains(r#"the bulk answer has no "Operations""#));
        assert!(fails(br#"{"Operations": 5}"#).contains("the bulk answer is not a BulkResponse"));
        assert!(fails(b"<html>").contains("the answer is not valid JSON"));
    }

    #[test]
    fn filter_values_and_urls_are_escaped() {
        assert_eq!(escape_filter_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_filter_value("plain@x.test"), "plain@x.test");
        assert_eq!(percent_encode(r#"userName eq "a+b&c=d/é""#), "userName%20eq%20%22a%2Bb%26c%3Dd%2F%C3%A9%22");
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
    }

    #[test]
    fn patch_helpers() {
        assert_eq!(patch_replace("active", json!(false)), json!({"op": "replace", "path": "active", "value": false}));
        assert_eq!(
            patch_add_members(&["a".to_string(), "b".to_string()]),
            json!({"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]})
        );
        assert_eq!(patch_remove_member(r#"x"y"#), json!({"op": "remove", "path": r#"members[value eq "x\"y"]"#}));
    }

    #[test]
    fn capabilities_missing_means_no() {
        let caps = parse_capabilities(&json!({
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
            "filter": {"supported": false, "maxResults": "200"},
        }));
        assert!(caps.patch && caps.bulk && !caps.filter && !caps.etag);
        assert_eq!(caps.bulk_max_operations, 1000);
        assert_eq!(caps.bulk_max_payload, 1_048_576);
        assert_eq!(caps.filter_max_results, 200);
        let none = parse_capabilities(&json!({}));
        assert!(!none.patch && !none.bulk && none.bulk_max_operations == 0);
    }

    #[test]
    fn member_removal_forms_and_typed_members() {
        let m = vec![("7".to_string(), Some(ResourceKind::User)), ("3".to_string(), Some(ResourceKind::Group))];
        assert_eq!(
            patch_remove_members(RemoveForm::Filter, &m, &[]),
            vec![
                json!({"op": "remove", "path": "members[value eq \"7\"]"}),
                json!({"op": "remove", "path": "members[value eq \"3\"]"})
            ]
        );
        assert_eq!(
            patch_remove_members(RemoveForm::ValueArray, &m, &[]),
            vec![json!({"op": "remove", "path": "members", "value": [
                {"value": "7", "type": "User"}, {"value": "3", "type": "Group"}]})]
        );
        let stay = vec![("9".to_string(), None)];
        assert_eq!(
            patch_remove_members(RemoveForm::Replace, &m, &stay),
            vec![json!({"op": "replace", "path": "members", "value": [{"value": "9"}]})]
        );
        assert_eq!(
            patch_add_typed_members(&m[..1]),
            json!({"op": "add", "path": "members", "value": [{"value": "7", "type": "User"}]})
        );
        assert_eq!(RemoveForm::Filter.next(), Some(RemoveForm::ValueArray));
        assert_eq!(RemoveForm::Replace.next(), None);
        for f in RemoveForm::ALL {
            assert_eq!(RemoveForm::parse(f.as_str()), Some(f));
        }
    }
}
