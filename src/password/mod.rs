//! Password writeback: the value AD takes in `unicodePwd`, the domain's password policy, the
//! checks made before anything is sent, and AD's refusals translated for people.
//!
//! A password is only ever held in zeroizing buffers ([`SecretString`], [`SecretBytes`]); it is
//! never formatted into a log, a report, an error or the state store.

use std::hash::{Hash, Hasher};

use zeroize::Zeroizing;

use crate::secrets::{ExposeSecret, SecretString};

/// Bytes that are wiped when dropped and never shown, usable as an ldap3 attribute value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// A plain (non-secret) value, so an attribute name and a secret value share one type.
    pub fn plain(text: &str) -> SecretBytes {
        SecretBytes(Zeroizing::new(text.as_bytes().to_vec()))
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Hash for SecretBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_slice().hash(state);
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

/// The `unicodePwd` value AD accepts: the password in double quotes, encoded as UTF-16LE
/// ([MS-ADTS] 3.1.1.3.1.5.1).
pub fn unicode_pwd(password: &SecretString) -> SecretBytes {
    let quoted = Zeroizing::new(format!("\"{}\"", password.expose_secret()));
    let mut bytes = Zeroizing::new(Vec::with_capacity(quoted.len() * 2));
    for unit in quoted.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    SecretBytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        // testbed-samba.md: printf '"%s"' 'S3cure!Passw0rd' | iconv -t UTF-16LE | base64
        use base64::Engine;
        let value = unicode_pwd(&SecretString::from("S3cure!Passw0rd".to_owned()));
        let b64 = base64::engine::general_purpose::STANDARD.encode(value.as_ref());
        assert_eq!(b64, "IgBTADMAYwB1AHIAZQAhAFAAYQBzAHMAdwAwAHIAZAAiAA==");
        assert_eq!(format!("{value:?}"), "SecretBytes([REDACTED])");
    }

    #[test]
    fn unicode_pwd_encodes_beyond_the_bmp_as_surrogate_pairs() {
        let value = unicode_pwd(&SecretString::from("a😀".to_owned()));
        assert_eq!(value.as_ref(), &[0x22, 0, 0x61, 0, 0x3d, 0xd8, 0x00, 0xde, 0x22, 0][..]);
    }
}
