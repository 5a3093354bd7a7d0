//! A mirror row's attributes (`dir_objects.data`): what the directory read of an object beyond
//! its DN, objectGUID and links, packed in a blob of length-prefixed texts. Both passes of every
//! run decode every row they look at, and a provisioning policy's further attributes
//! ([`Extra`]) made the JSON that rows held before (still read) cost more to decode than the
//! mapping that reads them.
//!
//! The packed form, every byte of which outside the texts is ASCII (so the whole blob is
//! checked to be UTF-8 in one pass, and each text is a slice of it): a format byte ([`PACKED`]),
//! then a number saying which fields follow (bit i for [`Attrs::texts`]' i-th text, then
//! `userAccountControl`, the defects, the further attributes), then each one present, in that
//! order: a text as its length and its UTF-8 bytes, `userAccountControl` as a number, the defects
//! as the text of their JSON (rare), the further attributes as their count, then per attribute
//! its name, its count of values and the values, each a text. A number is written six bits a
//! byte, low bits first, with 0x40 set on every byte but the last.

use std::borrow::Cow;

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};

use crate::directory::{Defect, DirObject, Extra};

/// The first byte of the packed form (JSON, the older form, starts with `{`).
const PACKED: u8 = 1;
const TEXTS: usize = 11;
const UAC: usize = 1 << TEXTS;
const DEFECTS: usize = 1 << (TEXTS + 1);
const EXTRA: usize = 1 << (TEXTS + 2);

/// The attributes a mirror row keeps, borrowed from the object when written and from the row
/// when read (the JSON form borrows where it has no escapes).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Attrs<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub sam: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub given: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub sn: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub display: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uac: Option<u32>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub cn: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub employee: Option<Cow<'a, str>>,
    /// What the decoder found unusable (kept so a later run judges the object alike).
    #[serde(default, skip_serializing_if = "<[Defect]>::is_empty")]
    pub defects: Cow<'a, [Defect]>,
    /// The further attributes the provisioning policy reads ([`DirObject::extra`]).
    #[serde(default, skip_serializing_if = "Extra::is_empty")]
    pub extra: Cow<'a, Extra>,
}

impl<'a> Attrs<'a> {
    pub fn of(o: &'a DirObject) -> Attrs<'a> {
        let text = |v: &'a Option<String>| v.as_deref().map(Cow::Borrowed);
        Attrs {
            sam: text(&o.sam_account_name),
            upn: text(&o.user_principal_name),
            given: text(&o.given_name),
            sn: text(&o.sn),
            mail: text(&o.mail),
            display: text(&o.display_name),
            uac: o.user_account_control,
            cn: text(&o.cn),
            title: text(&o.title),
            phone: text(&o.telephone_number),
            department: text(&o.department),
            employee: text(&o.employee_number),
            defects: Cow::Borrowed(&o.defects),
            extra: Cow::Borrowed(&o.extra),
        }
    }

    /// The text fields, in the packed form's order.
    fn texts(&mut self) -> [&mut Option<Cow<'a, str>>; TEXTS] {
        [
            &mut self.sam,
            &mut self.upn,
            &mut self.given,
            &mut self.sn,
            &mut self.mail,
            &mut self.display,
            &mut self.cn,
            &mut self.title,
            &mut self.phone,
            &mut self.department,
            &mut self.employee,
        ]
    }

    /// The packed form, as a row stores it.
    pub fn pack(mut self) -> Vec<u8> {
        let (uac, defects, extra) = (self.uac, std::mem::take(&mut self.defects), std::mem::take(&mut self.extra));
        let texts = self.texts().map(|t| t.as_deref());
        let mut present = [(uac.is_some(), UAC), (!defects.is_empty(), DEFECTS), (!extra.is_empty(), EXTRA)]
            .into_iter()
            .fold(0, |bits, (set, bit)| if set { bits | bit } else { bits });
        for (i, text) in texts.iter().enumerate() {
            present |= usize::from(text.is_some()) << i;
        }
        let mut out = Vec::with_capacity(256);
        out.push(PACKED);
        put_number(&mut out, present);
        texts.into_iter().flatten().for_each(|t| put_text(&mut out, t));
        if let Some(uac) = uac {
            put_number(&mut out, uac as usize);
        }
        if !defects.is_empty() {
            put_text(&mut out, &serde_json::to_string(&defects).unwrap_or_default());
        }
        if !extra.is_empty() {
            put_number(&mut out, extra.iter().count());
            for (name, values) in extra.iter() {
                put_text(&mut out, name);
                put_number(&mut out, values.len());
                values.iter().for_each(|v| put_text(&mut out, v));
            }
        }
        out
    }

    /// A row's `data`: the packed form, or the JSON text of stores written before it.
    pub fn read(data: ValueRef<'a>) -> Result<Attrs<'a>, String> {
        match data {
            ValueRef::Blob(bytes) => unpack(bytes),
            ValueRef::Text(bytes) => {
                serde_json::from_str(std::str::from_utf8(bytes).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
            }
            _ => Err("neither packed attributes nor JSON".into()),
        }
    }
}

fn put_number(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x40 {
        out.push((n & 0x3f) as u8 | 0x40);
        n >>= 6;
    }
    out.push(n as u8);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_number(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn unpack(bytes: &[u8]) -> Result<Attrs<'_>, String> {
    let packed = std::str::from_utf8(bytes).map_err(|_| "packed attributes that are not UTF-8")?;
    let mut r = Reader { packed, at: 0 };
    if r.number()? != usize::from(PACKED) {
        return Err("packed attributes of an unknown format".into());
    }
    let present = r.number()?;
    let mut attrs = Attrs::default();
    for (i, text) in attrs.texts().into_iter().enumerate() {
        if present & (1 << i) != 0 {
            *text = Some(Cow::Borrowed(r.text()?));
        }
    }
    if present & UAC != 0 {
        attrs.uac = Some(u32::try_from(r.number()?).map_err(|_| "packed attributes with a bad userAccountControl")?);
    }
    if present & DEFECTS != 0 {
        attrs.defects = Cow::Owned(serde_json::from_str(r.text()?).map_err(|e| e.to_string())?);
    }
    if present & EXTRA != 0 {
        // Room for every text left: the buffer never grows.
        let mut extra = Extra::with_capacity(packed.len() - r.at);
        let mut values = Vec::new();
        for _ in 0..r.number()? {
            let name = r.text()?;
            values.clear();
            for _ in 0..r.number()? {
                values.push(r.text()?);
            }
            extra.insert(name, &values);
        }
        attrs.extra = Cow::Owned(extra);
    }
    if r.at != packed.len() {
        return Err("packed attributes with bytes left over".into());
    }
    Ok(attrs)
}

/// Reads the packed form; every length is checked against what is left, and every text must
/// start and end on a character's boundary.
struct Reader<'a> {
    packed: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn number(&mut self) -> Result<usize, String> {
        let mut n = 0usize;
        for shift in (0..usize::BITS).step_by(6) {
            let byte = *self.packed.as_bytes().get(self.at).ok_or("packed attributes cut short")?;
            self.at += 1;
            if byte >= 0x80 {
                return Err("packed attributes with a bad number".into());
            }
            n |= usize::from(byte & 0x3f).checked_shl(shift).ok_or("packed attributes with a bad number")?;
            if byte & 0x40 == 0 {
                return Ok(n);
            }
        }
        Err("packed attributes with a bad number".into())
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let n = self.number()?;
        let end = self.at.checked_add(n).ok_or("packed attributes with a bad length")?;
        let text = self.packed.get(self.at..end).ok_or("packed attributes cut short or cut inside a character")?;
        self.at = end;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn object(texts: &[Option<String>], uac: Option<u32>, defects: bool, extra: &[(String, Vec<String>)]) -> DirObject {
        let t = |i: usize| texts.get(i).cloned().flatten();
        DirObject {
            sam_account_name: t(0),
            user_principal_name: t(1),
            given_name: t(2),
            sn: t(3),
            mail: t(4),
            display_name: t(5),
            cn: t(6),
            title: t(7),
            telephone_number: t(8),
            department: t(9),
            employee_number: t(10),
            user_account_control: uac,
            defects: if defects { vec![Defect::UacSyntax { value: "x\"\u{1}".into() }] } else { vec![] },
            extra: extra.iter().map(|(n, v)| (n.as_str(), v.iter().map(String::as_str))).collect(),
            ..DirObject::default()
        }
    }

    proptest! {
        /// Whatever an object holds (empty texts, control characters, quotes, any Unicode, a
        /// hundred values), the packed form reads back as the attributes written, as the JSON
        /// form does.
        #[test]
        fn the_packed_form_reads_back_what_was_written(
            texts in proptest::collection::vec(proptest::option::of(".{0,40}"), TEXTS),
            uac in proptest::option::of(any::<u32>()),
            defects in any::<bool>(),
            extra in proptest::collection::vec(("[a-z0-9]{1,12}", proptest::collection::vec(".{0,30}", 0..5)), 0..4),
        ) {
            let o = object(&texts, uac, defects, &extra);
            let packed = Attrs::of(&o).pack();
            let json = serde_json::to_string(&Attrs::of(&o)).unwrap();
            prop_assert_eq!(Attrs::read(ValueRef::Blob(&packed)).unwrap(), Attrs::of(&o));
            prop_assert_eq!(Attrs::read(ValueRef::Text(json.as_bytes())).unwrap(), Attrs::of(&o));
        }

        /// A damaged blob (cut anywhere, or any byte changed) is an error or some attributes,
        /// never a panic.
        #[test]
        fn a_damaged_packed_form_never_panics(cut in 0usize..200, flip in 0usize..200, byte in any::<u8>()) {
            let extra = [("proxyaddresses".to_owned(), vec!["SMTP:a@x".to_owned(), "smtp:b@x".to_owned()])];
            let o = object(&[Some("jdoe".into()), None, Some("Jörg".into())], Some(512), true, &extra);
            let mut packed = Attrs::of(&o).pack();
            if let Some(b) = packed.get_mut(flip) {
                *b = byte;
            }
            packed.truncate(cut);
            let _ = Attrs::read(ValueRef::Blob(&packed));
        }
    }

    #[test]
    fn long_texts_take_a_longer_length() {
        let long = "é".repeat(20_000);
        let o = object(&[Some(long.clone()), Some(String::new())], None, false, &[]);
        let packed = Attrs::of(&o).pack();
        let back = Attrs::read(ValueRef::Blob(&packed)).unwrap();
        assert_eq!(back.sam.as_deref(), Some(long.as_str()));
        assert_eq!(back.upn.as_deref(), Some(""));
        assert!(Attrs::read(ValueRef::Blob(&[2, 0])).is_err(), "an unknown format");
        assert!(Attrs::read(ValueRef::Blob(&[PACKED, 1, 5, b'a'])).is_err(), "cut short");
        assert!(Attrs::read(ValueRef::Blob(&[PACKED, 1, 2, 0xc3, 0xb6])).is_ok(), "ö");
        assert!(Attrs::read(ValueRef::Blob(&[PACKED, 1, 1, 0xc3, 0xb6])).is_err(), "cut inside a character");
        assert!(Attrs::read(ValueRef::Blob(&[PACKED, 0, 0])).is_err(), "bytes left over");
    }
}
