//! Password writeback: the value AD takes in `unicodePwd`, the domain's password policy, the
//! checks made before anything is sent, and AD's refusals translated for people.
//!
//! A password is only ever held in zeroizing buffers ([`SecretString`], [`SecretBytes`]); it is
//! never formatted into a log, a report, an error or the state store.

pub mod policy;
pub mod writer;

use std::hash::{Hash, Hasher};

use zeroize::Zeroizing;

use crate::directory::DirectoryError;
use crate::secrets::{ExposeSecret, SecretString};
pub use policy::{PasswordPolicy, PolicySource};

/// Bytes that are wiped when dropped and never shown, usable as an ldap3 attribute value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// A plain (non-secret) value, so an attribute name and a secret value share one type.
    pub fn plain(text: &str) -> SecretBytes {
        SecretBytes(Zeroizing::new(text.as_bytes().to_vec()))
    }

    /// A plain binary value (a security descriptor).
    pub fn binary(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(Zeroizing::new(bytes))
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

/// Why a password was not applied, in words a user understands. Never holds the password.
/// Numbers are `None` when the policy in force could not be read (AD judged alone).
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    Empty,
    TooLong {
        max: usize,
    },
    TooShort {
        min: Option<u32>,
        policy: String,
    },
    NotComplex {
        policy: String,
    },
    ContainsAccountName,
    ContainsDisplayName,
    /// AD said the password is one of the remembered ones.
    InHistory {
        count: Option<u32>,
    },
    /// AD said the current password is younger than the minimum age.
    TooRecent {
        min_age_days: Option<f64>,
    },
    /// AD refused under its policy without saying which rule (Windows' `0000052D`).
    RefusedByPolicy {
        policy: String,
        history_count: Option<u32>,
        min_age_days: Option<f64>,
    },
    AccountDisabled,
    AccountLocked,
    /// adminCount = 1, or a member of a protected group (Domain Admins, …).
    Protected {
        why: String,
    },
    OutOfScope {
        dn: String,
    },
    NotFound,
    Ambiguous {
        count: usize,
    },
    /// The bind account may not reset this user's password.
    AccessDenied,
}

impl Rejection {
    /// Stable identifier for scripts and the tenant.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::TooLong { .. } => "too-long",
            Rejection::TooShort { .. } => "too-short",
            Rejection::NotComplex { .. } => "not-complex",
            Rejection::ContainsAccountName => "contains-account-name",
            Rejection::ContainsDisplayName => "contains-display-name",
            Rejection::InHistory { .. } => "in-history",
            Rejection::TooRecent { .. } => "too-recent",
            Rejection::RefusedByPolicy { .. } => "refused-by-policy",
            Rejection::AccountDisabled => "account-disabled",
            Rejection::AccountLocked => "account-locked",
            Rejection::Protected { .. } => "protected-account",
            Rejection::OutOfScope { .. } => "out-of-scope",
            Rejection::NotFound => "user-not-found",
            Rejection::Ambiguous { .. } => "ambiguous-user",
            Rejection::AccessDenied => "access-denied",
        }
    }

    /// The sentence shown to the user (in the tenant) and the administrator (in the report).
    pub fn reason(&self) -> String {
        match self {
            Rejection::Empty => "the password is empty".to_owned(),
            Rejection::TooLong { max } => {
                format!("the password is too long: Active Directory takes at most {max} characters")
            }
            Rejection::TooShort { min: Some(min), policy } => {
                format!("the password is too short: {policy} requires at least {min} characters")
            }
            Rejection::TooShort { min: None, policy } => format!("the password is too short for {policy}"),
            Rejection::NotComplex { policy } => format!(
                "the password is not complex enough: {policy} requires characters from at least three of uppercase letters, lowercase letters, digits and symbols"
            ),
            Rejection::ContainsAccountName => {
                "the password contains the user's account name, which the domain's complexity rules forbid".to_owned()
            }
            Rejection::ContainsDisplayName => {
                "the password contains part of the user's name, which the domain's complexity rules forbid".to_owned()
            }
            Rejection::InHistory { count: Some(count) } => {
                format!("the password was used before: the domain remembers the last {count} passwords")
            }
            Rejection::InHistory { count: None } => "the password was used before".to_owned(),
            Rejection::TooRecent { min_age_days } => match min_age_days {
                Some(days) => format!(
                    "the password was changed too recently: the domain allows a new one only after {}",
                    policy::format_days(*days)
                ),
                None => "the password was changed too recently".to_owned(),
            },
            Rejection::RefusedByPolicy { policy, history_count, min_age_days } => {
                let mut why = vec![];
                if let Some(count) = history_count.filter(|c| *c > 0) {
                    why.push(format!("it is one of the last {count} passwords"));
                }
                if let Some(days) = min_age_days.filter(|d| *d > 0.0) {
                    why.push(format!("the current one is younger than {}", policy::format_days(days)));
                }
                match why.is_empty() {
                    true => format!("Active Directory refused the password under {policy}"),
                    false => {
                        format!("Active Directory refused the password under {policy}: probably {}", why.join(", or "))
                    }
                }
            }
            Rejection::AccountDisabled => "the account is disabled in Active Directory".to_owned(),
            Rejection::AccountLocked => {
                "the account is locked out in Active Directory; an administrator must unlock it first".to_owned()
            }
            Rejection::Protected { why } => format!(
                "the account is protected ({why}): ausi does not write administrators' passwords; reset it in Active Directory"
            ),
            Rejection::OutOfScope { dn } => format!("{dn} is outside the OUs selected for sync"),
            Rejection::NotFound => "no such user in Active Directory".to_owned(),
            Rejection::Ambiguous { count } => {
                format!("{count} users in Active Directory match; give the userPrincipalName or objectGUID")
            }
            Rejection::AccessDenied => {
                "the service account may not reset this user's password: grant it Reset Password on the user's OU"
                    .to_owned()
            }
        }
    }

    /// AD's refusal of a `unicodePwd` write, translated. `policy` is the one in force when it
    /// could be read, `name` names it. `None` when the error is not about the password or the
    /// user (the DC is down, the connection dropped): that change is retried later.
    pub fn from_directory(error: &DirectoryError, policy: Option<&PasswordPolicy>, name: &str) -> Option<Rejection> {
        let policy_name = name.to_owned();
        match error {
            DirectoryError::AccessDenied { .. } => Some(Rejection::AccessDenied),
            DirectoryError::NoSuchObject { .. } => Some(Rejection::NotFound),
            // constraintViolation, or unwillingToPerform with the same Win32 code.
            DirectoryError::Ldap { code: 19 | 53, diagnostic, .. } if diagnostic.contains("0000052D") => {
                let text = diagnostic.to_ascii_lowercase();
                Some(if text.contains("too short") {
                    Rejection::TooShort { min: policy.map(|p| p.min_length), policy: policy_name }
                } else if text.contains("complexity") {
                    Rejection::NotComplex { policy: policy_name }
                } else if text.contains("history") || text.contains("already used") {
                    Rejection::InHistory { count: policy.map(|p| p.history_count) }
                } else if text.contains("too young") {
                    Rejection::TooRecent { min_age_days: policy.map(|p| p.min_age_days) }
                } else {
                    Rejection::RefusedByPolicy {
                        policy: policy_name,
                        history_count: policy.map(|p| p.history_count),
                        min_age_days: policy.map(|p| p.min_age_days),
                    }
                })
            }
            _ => None,
        }
    }
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

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            source: PolicySource::Domain,
            min_length: 7,
            complexity: true,
            history_count: 24,
            min_age_days: 1.0,
            max_age_days: Some(42.0),
        }
    }

    fn constraint(text: &str) -> DirectoryError {
        DirectoryError::Ldap { operation: "modify", code: 19, name: "constraintViolation", diagnostic: text.into() }
    }

    #[test]
    fn samba_refusals_name_the_rule_and_the_domains_numbers() {
        let cases = [
            (
                "0000052D: Constraint violation - check_password_restrictions: the password is too short. It should be equal or longer than 7 characters!",
                "too-short",
            ),
            (
                "0000052D: Constraint violation - check_password_restrictions: the password does not meet the complexity criteria!",
                "not-complex",
            ),
            (
                "0000052D: Constraint violation - check_password_restrictions: the password was already used (in history)!",
                "in-history",
            ),
            (
                "0000052D: Constraint violation - check_password_restrictions: password is too young to change!",
                "too-recent",
            ),
        ];
        for (text, code) in cases {
            assert_eq!(
                Rejection::from_directory(&constraint(text), Some(&policy()), "x").unwrap().code(),
                code,
                "{text}"
            );
        }
        let history = Rejection::from_directory(&constraint(cases[2].0), Some(&policy()), "x").unwrap();
        assert_eq!(history.reason(), "the password was used before: the domain remembers the last 24 passwords");
    }

    #[test]
    fn windows_unspecific_refusals_list_what_is_left() {
        let text = "0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)";
        let name = policy().name();
        let rejection = Rejection::from_directory(&constraint(text), Some(&policy()), &name).unwrap();
        assert_eq!(
            rejection.reason(),
            "Active Directory refused the password under the domain's password policy: probably it is one of the last 24 passwords, or the current one is younger than 1 day"
        );
        let down = DirectoryError::Timeout { url: "ldaps://dc".into(), operation: "modify", seconds: 5 };
        assert_eq!(Rejection::from_directory(&down, Some(&policy()), &name), None);
        let denied = DirectoryError::AccessDenied { dn: "CN=x".into(), diagnostic: "00002098".into() };
        assert_eq!(Rejection::from_directory(&denied, Some(&policy()), &name), Some(Rejection::AccessDenied));
    }

    #[test]
    fn an_unread_policy_gives_reasons_without_numbers() {
        let text = "0000052D: Constraint violation - check_password_restrictions: the password is too short. It should be equal or longer than 12 characters!";
        let rejection =
            Rejection::from_directory(&constraint(text), None, "the fine-grained password policy pso-12").unwrap();
        assert_eq!(rejection.reason(), "the password is too short for the fine-grained password policy pso-12");
    }
}
