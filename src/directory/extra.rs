//! A directory object's further attributes (those the provisioning policy reads beyond the fixed
//! fields), packed in one buffer, and [`Values`]: an attribute's text values, borrowed from
//! wherever the object holds them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Further attributes, lower-case name → text values, ordered by name. Names and values share
/// one text buffer: an object's handful of them cost three allocations, not one per name and
/// per value (the mirror decodes every object's twice a run, a policy reads them for every user).
/// Written as the JSON object `{"name": ["value", …], …}`.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    text: String,
    /// One per attribute, ordered by name.
    attrs: Vec<Attr>,
    /// Where each value ends in `text`: an attribute's values follow its name there, one after
    /// the other.
    ends: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Attr {
    /// The name's place in `text`.
    name: (usize, usize),
    /// Its values' place in `ends`.
    values: (usize, usize),
}

impl Extra {
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// Empty, with room for `text` bytes of names and values (a handful of attributes).
    pub fn with_capacity(text: usize) -> Extra {
        Extra { text: String::with_capacity(text), attrs: Vec::with_capacity(4), ends: Vec::with_capacity(8) }
    }

    /// Sets attribute `name` (lower-case) to `values`, replacing what it held.
    pub fn insert<S: AsRef<str>>(&mut self, name: &str, values: &[S]) {
        self.text.reserve(name.len() + values.iter().map(|v| v.as_ref().len()).sum::<usize>());
        self.ends.reserve(values.len());
        let start = self.text.len();
        self.text.push_str(name);
        let first = self.ends.len();
        for value in values {
            self.text.push_str(value.as_ref());
            self.ends.push(self.text.len());
        }
        self.place(Attr { name: (start, start + name.len()), values: (first, self.ends.len()) });
    }

    /// Files an attribute whose name and values are in the buffer already, in name order (the
    /// last one of a name stands, as in a map).
    fn place(&mut self, attr: Attr) {
        let text = &self.text;
        let name = &text[attr.name.0..attr.name.1];
        match self.attrs.binary_search_by(|a| text[a.name.0..a.name.1].cmp(name)) {
            Ok(i) => self.attrs[i] = attr,
            Err(i) => self.attrs.insert(i, attr),
        }
    }

    /// The values of attribute `name` (lower-case), when it is held.
    pub fn get(&self, name: &str) -> Option<Values<'_>> {
        let i = self.attrs.binary_search_by(|a| self.name(a).cmp(name)).ok()?;
        Some(self.values(&self.attrs[i]))
    }

    /// Every attribute with its values, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Values<'_>)> {
        self.attrs.iter().map(|a| (self.name(a), self.values(a)))
    }

    fn name(&self, a: &Attr) -> &str {
        &self.text[a.name.0..a.name.1]
    }

    fn values(&self, a: &Attr) -> Values<'_> {
        Values::Packed { text: &self.text, start: a.name.1, ends: &self.ends[a.values.0..a.values.1] }
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Extra) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Extra {}

impl<N: AsRef<str>, V: IntoIterator<Item = S>, S: AsRef<str>> FromIterator<(N, V)> for Extra {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Extra {
        let mut extra = Extra::default();
        for (name, values) in iter {
            extra.insert(name.as_ref(), &values.into_iter().collect::<Vec<S>>());
        }
        extra
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.attrs.len()))?;
        for (name, values) in self.iter() {
            map.serialize_entry(name, &values)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Extra, D::Error> {
        deserializer.deserialize_map(ExtraVisitor)
    }
}

struct ExtraVisitor;

impl<'de> Visitor<'de> for ExtraVisitor {
    type Value = Extra;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of attribute names to lists of text values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extra, A::Error> {
        // Room for a typical object's (a few addresses): the buffer grows once at most.
        let mut extra = Extra::with_capacity(256);
        loop {
            let start = extra.text.len();
            if map.next_key_seed(Append(&mut extra.text))?.is_none() {
                break;
            }
            let name = (start, extra.text.len());
            let first = extra.ends.len();
            map.next_value_seed(AppendAll(&mut extra.text, &mut extra.ends))?;
            extra.place(Attr { name, values: (first, extra.ends.len()) });
        }
        Ok(extra)
    }
}

/// Reads a string onto the end of the buffer (no allocation of its own).
struct Append<'x>(&'x mut String);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Append<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a text value")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        self.0.push_str(value);
        Ok(())
    }
}

/// Reads a list of strings onto the end of the buffer, noting where each ends.
struct AppendAll<'x>(&'x mut String, &'x mut Vec<usize>);

impl<'de> DeserializeSeed<'de> for AppendAll<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AppendAll<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of text values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Append(self.0))?.is_some() {
            self.1.push(self.0.len());
        }
        Ok(())
    }
}

/// An attribute's text values, borrowed from where the object holds them: a field's `String`s,
/// values made for the asking (`userAccountControl` as text, the DN), or an [`Extra`]'s buffer.
#[derive(Debug, Clone)]
pub enum Values<'a> {
    Strings(Cow<'a, [String]>),
    Packed {
        text: &'a str,
        /// Where the first value starts.
        start: usize,
        ends: &'a [usize],
    },
}

impl<'a> Values<'a> {
    /// No values: the attribute is absent.
    pub const NONE: Values<'static> = Values::Strings(Cow::Borrowed(&[]));

    pub fn len(&self) -> usize {
        match self {
            Values::Strings(s) => s.len(),
            Values::Packed { ends, .. } => ends.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        match self {
            Values::Strings(s) => s.get(i).map(String::as_str),
            Values::Packed { text, start, ends } => packed(text, *start, ends, i),
        }
    }

    pub fn first(&self) -> Option<&str> {
        self.get(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The values, borrowed for as long as the object where they are held (a made value is a copy).
    pub fn iter_held(&self) -> impl Iterator<Item = Cow<'a, str>> + '_ {
        (0..self.len()).filter_map(|i| match self {
            Values::Strings(Cow::Borrowed(s)) => s.get(i).map(|v| Cow::Borrowed(v.as_str())),
            Values::Strings(Cow::Owned(s)) => s.get(i).map(|v| Cow::Owned(v.clone())),
            Values::Packed { text, start, ends } => packed(text, *start, ends, i).map(Cow::Borrowed),
        })
    }

    pub fn into_vec(self) -> Vec<String> {
        match self {
            Values::Strings(s) => s.into_owned(),
            packed => packed.iter().map(str::to_owned).collect(),
        }
    }
}

fn packed<'a>(text: &'a str, start: usize, ends: &[usize], i: usize) -> Option<&'a str> {
    let end = *ends.get(i)?;
    let from = if i == 0 { start } else { ends[i - 1] };
    text.get(from..end)
}

impl PartialEq for Values<'_> {
    fn eq(&self, other: &Values) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for value in self.iter() {
            seq.serialize_element(value)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Extra holds what a map of lists holds: the same values per name, the same JSON
        /// (a mirror row written by an earlier release reads back alike), and reads back its own.
        #[test]
        fn extra_is_a_map_of_lists(
            pairs in prop::collection::vec(("[a-c]{1,3}", prop::collection::vec(any::<String>(), 0..4)), 0..8)
        ) {
            let map: BTreeMap<String, Vec<String>> = pairs.iter().cloned().collect();
            let extra: Extra = pairs.iter().map(|(n, v)| (n.as_str(), v)).collect();
            for (name, values) in &map {
                prop_assert_eq!(extra.get(name).map(Values::into_vec), Some(values.clone()));
            }
            prop_assert!(extra.get("zz").is_none());
            prop_assert_eq!(extra.is_empty(), map.is_empty());
            let json = serde_json::to_string(&extra).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&map).unwrap());
            let back: Extra = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &extra);
            let names: Vec<&str> = back.iter().map(|(n, _)| n).collect();
            prop_assert_eq!(names, map.keys().map(String::as_str).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_row_with_a_name_twice_or_out_of_order_reads_as_a_map_would() {
        let json = r#"{"b":["1"],"a":["x","y"],"b":["2","3"],"c":[]}"#;
        let extra: Extra = serde_json::from_str(json).unwrap();
        let map: BTreeMap<String, Vec<String>> = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&extra).unwrap(), serde_json::to_string(&map).unwrap());
        assert_eq!(extra.get("c").map(|v| v.len()), Some(0));
        assert!(serde_json::from_str::<Extra>(r#"{"a":"x"}"#).is_err(), "a value must be a list");
        assert!(serde_json::from_str::<Extra>(r#"{"a":[1]}"#).is_err(), "of texts");
    }

    #[test]
    fn escaped_values_read_back_unescaped() {
        let extra: Extra = [("a", ["q\"uote\\d", "é\n"])].into_iter().collect();
        let back: Extra = serde_json::from_str(&serde_json::to_string(&extra).unwrap()).unwrap();
        assert_eq!(back.get("a").unwrap().into_vec(), ["q\"uote\\d", "é\n"]);
    }
}
