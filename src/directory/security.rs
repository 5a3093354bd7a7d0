//! Windows security descriptors as AD keeps them in `nTSecurityDescriptor`: the self-relative
//! binary SECURITY_DESCRIPTOR ([MS-DTYP] 2.4.6), its ACLs (2.4.5), ACEs (2.4.4) and SIDs (2.4.2).
//!
//! Pure code: bytes in, bytes out. Unknown ACE types are kept byte for byte, and a descriptor
//! is written back with its parts in the order they were read, so reading and writing an
//! unchanged descriptor gives the same bytes.

use std::fmt;

use thiserror::Error;

use super::ObjectGuid;

/// LDAP_SERVER_SD_FLAGS_OID: which parts of the descriptor a read returns and a write replaces.
pub const SD_FLAGS_OID: &str = "1.2.840.113556.1.4.801";
/// SECURITY_INFORMATION bit for the DACL alone (owner 1, group 2, SACL 8).
pub const DACL_SECURITY_INFORMATION: u8 = 0x04;

/// ACCESS_ALLOWED_ACE_TYPE.
pub const ACCESS_ALLOWED: u8 = 0x00;
/// ACCESS_ALLOWED_OBJECT_ACE_TYPE.
pub const ACCESS_ALLOWED_OBJECT: u8 = 0x05;

/// ACE flags.
pub const CONTAINER_INHERIT: u8 = 0x02;
pub const INHERIT_ONLY: u8 = 0x08;
pub const INHERITED: u8 = 0x10;

/// Directory access rights ([MS-ADTS] 5.1.3.2).
pub const RIGHT_DS_LIST_CONTENTS: u32 = 0x0000_0004;
pub const RIGHT_DS_READ_PROPERTY: u32 = 0x0000_0010;
pub const RIGHT_DS_LIST_OBJECT: u32 = 0x0000_0080;
pub const RIGHT_DS_CONTROL_ACCESS: u32 = 0x0000_0100;

/// The extended right "Reset Password" (User-Force-Change-Password).
pub const RESET_PASSWORD_RIGHT: &str = "00299570-246d-11d0-a768-00aa006e0529";
/// The schema class `user`.
pub const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";

/// SE_SELF_RELATIVE: the descriptor's parts follow its header (the form AD stores).
const SE_SELF_RELATIVE: u16 = 0x8000;
/// SE_DACL_PRESENT in the descriptor's control word.
const SE_DACL_PRESENT: u16 = 0x0004;
/// ACL_REVISION_DS: needed once an ACL holds object ACEs.
const ACL_REVISION_DS: u8 = 4;
const ACE_OBJECT_TYPE_PRESENT: u32 = 0x1;
const ACE_INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed security descriptor: {0}")]
pub struct SdError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, SdError> {
    Err(SdError(message.into()))
}

/// The BER value of the SD flags control: `SEQUENCE { INTEGER flags }`.
pub fn sd_flags_value(flags: u8) -> Vec<u8> {
    if flags & 0x80 != 0 {
        // A positive INTEGER whose top bit is set needs a leading zero byte.
        vec![0x30, 0x04, 0x02, 0x02, 0x00, flags]
    } else {
        vec![0x30, 0x03, 0x02, 0x01, flags]
    }
}

/// A security identifier (`objectSid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sid {
    pub revision: u8,
    pub authority: [u8; 6],
    pub sub_authorities: Vec<u32>,
}

impl Sid {
    /// BUILTIN\Administrators (S-1-5-32-544).
    pub fn builtin_administrators() -> Sid {
        Sid { revision: 1, authority: [0, 0, 0, 0, 0, 5], sub_authorities: vec![32, 544] }
    }

    /// Parses a SID at the start of `bytes`; returns it and its length.
    pub fn parse_prefix(bytes: &[u8]) -> Result<(Sid, usize), SdError> {
        if bytes.len() < 8 {
            return err("SID shorter than 8 bytes");
        }
        let count = usize::from(bytes[1]);
        let len = 8 + 4 * count;
        if bytes.len() < len || count > 15 {
            return err(format!("SID with {count} sub-authorities does not fit"));
        }
        let mut authority = [0u8; 6];
        authority.copy_from_slice(&bytes[2..8]);
        let sub_authorities = (0..count).map(|i| u32_at(bytes, 8 + 4 * i)).collect();
        Ok((Sid { revision: bytes[0], authority, sub_authorities }, len))
    }

    /// Parses exactly one SID (an `objectSid` value).
    pub fn from_bytes(bytes: &[u8]) -> Result<Sid, SdError> {
        let (sid, len) = Sid::parse_prefix(bytes)?;
        if len != bytes.len() {
            return err("trailing bytes after the SID");
        }
        Ok(sid)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.revision, u8::try_from(self.sub_authorities.len()).unwrap_or(u8::MAX)];
        out.extend_from_slice(&self.authority);
        for s in &self.sub_authorities {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

impl fmt::Display for Sid {
    /// `S-1-5-21-…`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = self.authority.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        write!(f, "S-{}-{authority}", self.revision)?;
        for s in &self.sub_authorities {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

/// One access control entry: its type, flags and the bytes after the 4-byte header (kept as
/// read, so types this module does not interpret survive a round trip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    pub ace_type: u8,
    pub flags: u8,
    pub body: Vec<u8>,
}

impl Ace {
    /// ACCESS_ALLOWED_ACE: `mask` for `sid`.
    pub fn allowed(mask: u32, flags: u8, sid: &Sid) -> Ace {
        let mut body = mask.to_le_bytes().to_vec();
        body.extend(sid.to_bytes());
        Ace { ace_type: ACCESS_ALLOWED, flags, body }
    }

    /// ACCESS_ALLOWED_OBJECT_ACE: `mask` on `object_type` (a right, property or class), on
    /// objects of class `inherited_type` when given.
    pub fn allowed_object(
        mask: u32,
        flags: u8,
        object_type: Option<ObjectGuid>,
        inherited_type: Option<ObjectGuid>,
        sid: &Sid,
    ) -> Ace {
        let mut present = 0;
        if object_type.is_some() {
            present |= ACE_OBJECT_TYPE_PRESENT;
        }
        if inherited_type.is_some() {
            present |= ACE_INHERITED_OBJECT_TYPE_PRESENT;
        }
        let mut body = mask.to_le_bytes().to_vec();
        body.extend_from_slice(&present.to_le_bytes());
        for guid in [object_type, inherited_type].into_iter().flatten() {
            body.extend_from_slice(guid.as_bytes());
        }
        body.extend(sid.to_bytes());
        Ace { ace_type: ACCESS_ALLOWED_OBJECT, flags, body }
    }

    pub fn is_inherited(&self) -> bool {
        self.flags & INHERITED != 0
    }

    pub fn is_object_ace(&self) -> bool {
        // ACCESS_ALLOWED_OBJECT, ACCESS_DENIED_OBJECT, SYSTEM_AUDIT_OBJECT, SYSTEM_ALARM_OBJECT
        matches!(self.ace_type, 0x05..=0x08)
    }

    /// The access mask (every ACE type defined for AD starts its body with it).
    pub fn mask(&self) -> Option<u32> {
        (self.body.len() >= 4).then(|| u32_at(&self.body, 0))
    }

    /// The trustee, for allowed/denied/audit ACEs and their object variants.
    pub fn sid(&self) -> Option<Sid> {
        let start = match self.ace_type {
            0x00..=0x03 => 4,
            0x05..=0x08 => {
                let present = (self.body.len() >= 8).then(|| u32_at(&self.body, 4))?;
                8 + 16 * (present & 0x3).count_ones() as usize
            }
            _ => return None,
        };
        Sid::parse_prefix(self.body.get(start..)?).ok().map(|(sid, _)| sid)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let size = u16::try_from(4 + self.body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&[self.ace_type, self.flags]);
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// An access control list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub revision: u8,
    pub sbz1: u8,
    pub sbz2: u16,
    pub aces: Vec<Ace>,
}

impl Acl {
    /// An ACL holding `aces`, in that order.
    pub fn new(aces: Vec<Ace>) -> Acl {
        let revision = if aces.iter().any(Ace::is_object_ace) { ACL_REVISION_DS } else { 2 };
        Acl { revision, sbz1: 0, sbz2: 0, aces }
    }

    fn parse(bytes: &[u8]) -> Result<Acl, SdError> {
        if bytes.len() < 8 {
            return err("ACL header cut short");
        }
        let size = usize::from(u16_at(bytes, 2));
        let count = usize::from(u16_at(bytes, 4));
        if size < 8 || size > bytes.len() {
            return err(format!("ACL size {size} outside the descriptor"));
        }
        let mut aces = Vec::with_capacity(count);
        let mut at = 8;
        for i in 0..count {
            if at + 4 > size {
                return err(format!("ACE {i} starts past the end of the ACL"));
            }
            let ace_size = usize::from(u16_at(bytes, at + 2));
            if ace_size < 4 || at + ace_size > size {
                return err(format!("ACE {i} has size {ace_size}, past the end of the ACL"));
            }
            aces.push(Ace { ace_type: bytes[at], flags: bytes[at + 1], body: bytes[at + 4..at + ace_size].to_vec() });
            at += ace_size;
        }
        Ok(Acl { revision: bytes[0], sbz1: bytes[1], sbz2: u16_at(bytes, 6), aces })
    }

    fn write(&self, out: &mut Vec<u8>) {
        let size: usize = 8 + self.aces.iter().map(|a| 4 + a.body.len()).sum::<usize>();
        out.extend_from_slice(&[self.revision, self.sbz1]);
        out.extend_from_slice(&u16::try_from(size).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&u16::try_from(self.aces.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&self.sbz2.to_le_bytes());
        for ace in &self.aces {
            ace.write(out);
        }
    }

    /// Whether an explicit (not inherited) ACE identical to `ace` is present.
    pub fn has_explicit(&self, ace: &Ace) -> bool {
        self.aces.iter().any(|a| !a.is_inherited() && a == ace)
    }

    /// Adds `ace` as an explicit ACE unless an identical one is there; `true` when added.
    /// It goes after the other explicit ACEs and before the inherited ones, the canonical order
    /// Windows expects (explicit deny, explicit allow, inherited).
    pub fn add_explicit(&mut self, ace: Ace) -> bool {
        if self.has_explicit(&ace) {
            return false;
        }
        if ace.is_object_ace() {
            self.revision = self.revision.max(ACL_REVISION_DS);
        }
        let at = self.aces.iter().position(Ace::is_inherited).unwrap_or(self.aces.len());
        self.aces.insert(at, ace);
        true
    }
}

/// Which part of the descriptor, for keeping their order on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Owner,
    Group,
    Sacl,
    Dacl,
}

/// A self-relative security descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDescriptor {
    pub revision: u8,
    pub sbz1: u8,
    pub control: u16,
    pub owner: Option<Sid>,
    pub group: Option<Sid>,
    pub sacl: Option<Acl>,
    pub dacl: Option<Acl>,
    order: Vec<Part>,
}

impl SecurityDescriptor {
    /// A new descriptor with an owner and a DACL (no group, no SACL).
    pub fn with_dacl(owner: Sid, dacl: Acl) -> SecurityDescriptor {
        SecurityDescriptor {
            revision: 1,
            sbz1: 0,
            control: SE_SELF_RELATIVE,
            owner: Some(owner),
            group: None,
            sacl: None,
            dacl: Some(dacl),
            order: Vec::new(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<SecurityDescriptor, SdError> {
        if bytes.len() < 20 {
            return err("shorter than its 20-byte header");
        }
        if bytes[0] != 1 {
            return err(format!("revision {} (expected 1)", bytes[0]));
        }
        let control = u16_at(bytes, 2);
        let offset = |at: usize| -> Result<Option<usize>, SdError> {
            match u32_at(bytes, at) as usize {
                0 => Ok(None),
                o if (20..bytes.len()).contains(&o) => Ok(Some(o)),
                o => err(format!("offset {o} outside the {} bytes", bytes.len())),
            }
        };
        let (owner_at, group_at, sacl_at, dacl_at) = (offset(4)?, offset(8)?, offset(12)?, offset(16)?);
        let mut parts: Vec<(usize, Part)> =
            [(owner_at, Part::Owner), (group_at, Part::Group), (sacl_at, Part::Sacl), (dacl_at, Part::Dacl)]
                .into_iter()
                .filter_map(|(at, part)| at.map(|a| (a, part)))
                .collect();
        parts.sort_by_key(|(at, _)| *at);
        let sid_at = |at: Option<usize>| at.map(|a| Sid::parse_prefix(&bytes[a..]).map(|(s, _)| s)).transpose();
        let acl_at = |at: Option<usize>| at.map(|a| Acl::parse(&bytes[a..])).transpose();
        Ok(SecurityDescriptor {
            revision: bytes[0],
            sbz1: bytes[1],
            control,
            owner: sid_at(owner_at)?,
            group: sid_at(group_at)?,
            sacl: acl_at(sacl_at)?,
            dacl: acl_at(dacl_at)?,
            order: parts.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// The self-relative bytes, parts in the order they were read (new parts last).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut order = self.order.clone();
        for part in [Part::Sacl, Part::Dacl, Part::Owner, Part::Group] {
            if !order.contains(&part) && self.has(part) {
                order.push(part);
            }
        }
        let mut out = vec![0u8; 20];
        out[0] = self.revision;
        out[1] = self.sbz1;
        let mut control = self.control;
        if self.dacl.is_some() {
            control |= SE_DACL_PRESENT;
        }
        out[2..4].copy_from_slice(&control.to_le_bytes());
        for part in order.into_iter().filter(|p| self.has(*p)) {
            let at = u32::try_from(out.len()).unwrap_or(u32::MAX).to_le_bytes();
            let slot = match part {
                Part::Owner => 4,
                Part::Group => 8,
                Part::Sacl => 12,
                Part::Dacl => 16,
            };
            out[slot..slot + 4].copy_from_slice(&at);
            match part {
                Part::Owner => out.extend(self.owner.as_ref().map(Sid::to_bytes).unwrap_or_default()),
                Part::Group => out.extend(self.group.as_ref().map(Sid::to_bytes).unwrap_or_default()),
                Part::Sacl => self.sacl.iter().for_each(|a| a.write(&mut out)),
                Part::Dacl => self.dacl.iter().for_each(|a| a.write(&mut out)),
            }
        }
        out
    }

    fn has(&self, part: Part) -> bool {
        match part {
            Part::Owner => self.owner.is_some(),
            Part::Group => self.group.is_some(),
            Part::Sacl => self.sacl.is_some(),
            Part::Dacl => self.dacl.is_some(),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    /// Read from the Samba testbed with the SD flags control (DACL only): `CN=Users`.
    const USERS_DACL: &str = include_str!("../../tests/data/sd-users-dacl.b64");
    /// Read without the control (owner, group, SACL and DACL): an OU.
    const OU_FULL: &str = include_str!("../../tests/data/sd-corp-full.b64");

    fn decode(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap()
    }

    fn sid(text: &str) -> Sid {
        let mut parts = text.split('-').skip(1);
        let revision = parts.next().unwrap().parse().unwrap();
        let authority: u64 = parts.next().unwrap().parse().unwrap();
        let a = authority.to_be_bytes();
        Sid {
            revision,
            authority: [a[2], a[3], a[4], a[5], a[6], a[7]],
            sub_authorities: parts.map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn account() -> Sid {
        sid("S-1-5-21-1933788782-2747051588-1320728317-1234")
    }

    #[test]
    fn real_descriptors_round_trip_byte_for_byte() {
        for (name, b64) in [("DACL only", USERS_DACL), ("full", OU_FULL)] {
            let bytes = decode(b64);
            let sd = SecurityDescriptor::parse(&bytes).unwrap();
            assert!(sd.dacl.as_ref().is_some_and(|d| !d.aces.is_empty()), "{name}");
            assert_eq!(sd.to_bytes(), bytes, "{name}");
        }
        let dacl_only = SecurityDescriptor::parse(&decode(USERS_DACL)).unwrap();
        assert!(dacl_only.owner.is_none() && dacl_only.group.is_none() && dacl_only.sacl.is_none());
        let full = SecurityDescriptor::parse(&decode(OU_FULL)).unwrap();
        assert!(full.owner.is_some() && full.group.is_some() && full.sacl.is_some());
        // Domain Admins owns it: S-1-5-21-<domain>-512.
        let owner = full.owner.unwrap().to_string();
        assert!(owner.starts_with("S-1-5-21-") && owner.ends_with("-512"), "{owner}");
    }

    #[test]
    fn sids_display_and_round_trip() {
        let system = Sid::from_bytes(&[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]).unwrap();
        assert_eq!(system.to_string(), "S-1-5-18");
        let a = account();
        assert_eq!(Sid::from_bytes(&a.to_bytes()).unwrap(), a);
        assert_eq!(a.to_string(), "S-1-5-21-1933788782-2747051588-1320728317-1234");
        assert!(Sid::from_bytes(&[1, 2, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]).is_err());
    }

    #[test]
    fn object_ace_layout_matches_ms_dtyp() {
        let reset = ObjectGuid::parse(RESET_PASSWORD_RIGHT).unwrap();
        let user = ObjectGuid::parse(USER_CLASS).unwrap();
        let ace = Ace::allowed_object(
            RIGHT_DS_CONTROL_ACCESS,
            CONTAINER_INHERIT | INHERIT_ONLY,
            Some(reset),
            Some(user),
            &account(),
        );
        let mut bytes = Vec::new();
        ace.write(&mut bytes);
        assert_eq!(&bytes[..4], &[0x05, 0x0a, 72, 0]); // 4 + 4 + 4 + 16 + 16 + 28
        assert_eq!(&bytes[4..12], &[0x00, 0x01, 0, 0, 0x03, 0, 0, 0]);
        assert_eq!(&bytes[12..16], &[0x70, 0x95, 0x29, 0x00]); // 00299570 little-endian
        assert_eq!(ace.sid(), Some(account()));
        assert_eq!(ace.mask(), Some(RIGHT_DS_CONTROL_ACCESS));
        // The testbed's DACL holds object ACEs of exactly this shape (e.g. for `user`).
        let sd = SecurityDescriptor::parse(&decode(USERS_DACL)).unwrap();
        assert!(sd.dacl.unwrap().aces.iter().any(|a| a.ace_type == ACCESS_ALLOWED_OBJECT && a.sid().is_some()));
    }

    #[test]
    fn adding_an_ace_is_idempotent_and_keeps_canonical_order() {
        let bytes = decode(USERS_DACL);
        let mut sd = SecurityDescriptor::parse(&bytes).unwrap();
        let before = sd.dacl.as_ref().unwrap().aces.len();
        let read = Ace::allowed(
            RIGHT_DS_LIST_CONTENTS | RIGHT_DS_READ_PROPERTY | RIGHT_DS_LIST_OBJECT,
            CONTAINER_INHERIT,
            &account(),
        );
        let dacl = sd.dacl.as_mut().unwrap();
        assert!(dacl.add_explicit(read.clone()));
        assert!(!dacl.add_explicit(read.clone()), "an identical ACE is not added twice");
        assert_eq!(dacl.aces.len(), before + 1);
        let at = dacl.aces.iter().position(|a| *a == read).unwrap();
        assert!(dacl.aces[..at].iter().all(|a| !a.is_inherited()), "after the explicit ACEs");
        assert!(dacl.aces[at + 1..].iter().all(Ace::is_inherited), "before the inherited ones");

        // Written and read back, the ACE is still there exactly once and nothing else moved.
        let written = sd.to_bytes();
        assert_eq!(written.len(), bytes.len() + 4 + read.body.len());
        let mut again = SecurityDescriptor::parse(&written).unwrap();
        let dacl = again.dacl.as_mut().unwrap();
        assert_eq!(dacl.aces.iter().filter(|a| **a == read).count(), 1);
        assert!(!dacl.add_explicit(read.clone()));
        assert_eq!(again.to_bytes(), written);

        // An inherited copy is not the explicit grant.
        let mut inherited = read.clone();
        inherited.flags |= INHERITED;
        let mut acl = Acl { revision: 2, sbz1: 0, sbz2: 0, aces: vec![inherited] };
        assert!(acl.add_explicit(read.clone()));
        assert_eq!(acl.aces[0], read);
        // Object ACEs need the DS revision.
        let object = Ace::allowed_object(RIGHT_DS_CONTROL_ACCESS, CONTAINER_INHERIT, None, None, &account());
        assert!(acl.add_explicit(object));
        assert_eq!(acl.revision, 4);
    }

    #[test]
    fn malformed_descriptors_are_errors_not_panics() {
        let bytes = decode(USERS_DACL);
        for cut in [0, 10, 19, 21, 30, bytes.len() - 1] {
            let _ = SecurityDescriptor::parse(&bytes[..cut]);
        }
        assert!(SecurityDescriptor::parse(&bytes[..19]).is_err());
        assert!(SecurityDescriptor::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        bad[16] = 0xff; // DACL offset past the end
        assert!(SecurityDescriptor::parse(&bad).is_err());
    }

    #[test]
    fn sd_flags_value_is_ber() {
        assert_eq!(sd_flags_value(DACL_SECURITY_INFORMATION), [0x30, 0x03, 0x02, 0x01, 0x04]);
        assert_eq!(sd_flags_value(0x80), [0x30, 0x04, 0x02, 0x02, 0x00, 0x80]);
    }
}
