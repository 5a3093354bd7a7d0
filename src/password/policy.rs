//! The effective password policy of an AD account and the checks AD makes on a new password,
//! made here first so a refusal names the domain's own numbers before anything is sent.

use serde::Serialize;

use super::Rejection;
use crate::secrets::{ExposeSecret, SecretString};
use crate::tenant::agent::TenantPasswordPolicy;

/// AD stores durations as negative counts of 100 ns; this is one day of them.
const TICKS_PER_DAY: f64 = 864_000_000_000.0;
/// AD refuses a `unicodePwd` longer than this many characters.
pub const MAX_LENGTH: usize = 256;

/// Where the policy in force comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum PolicySource {
    /// The domain object (the Default Domain Policy GPO writes it).
    Domain,
    /// A fine-grained password policy (Password Settings Object), by its name.
    FineGrained(String),
}

/// The rules AD applies to a new password, as read from the domain object or a PSO.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PasswordPolicy {
    pub source: PolicySource,
    pub min_length: u32,
    pub complexity: bool,
    pub history_count: u32,
    /// Days a password must be kept before it may change again (0: any time).
    pub min_age_days: f64,
    /// Days after which a password expires; `None` when passwords never expire.
    pub max_age_days: Option<f64>,
}

impl PasswordPolicy {
    /// From the naming context's `minPwdLength`, `pwdProperties`, `pwdHistoryLength`, `minPwdAge`, `maxPwdAge`.
    pub fn domain(get: impl Fn(&str) -> Option<String>) -> PasswordPolicy {
        let number = |name: &str| get(name).and_then(|v| v.trim().parse::<i64>().ok());
        PasswordPolicy {
            source: PolicySource::Domain,
            min_length: number("minpwdlength").unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
            // DOMAIN_PASSWORD_COMPLEX is bit 0 of pwdProperties.
            complexity: number("pwdproperties").is_some_and(|p| p & 1 == 1),
            history_count: number("pwdhistorylength").unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
            min_age_days: number("minpwdage").map(days).unwrap_or(0.0),
            max_age_days: number("maxpwdage").map(days).filter(|d| *d > 0.0),
        }
    }

    /// From a Password Settings Object (`msDS-PasswordSettings`).
    pub fn fine_grained(name: &str, get: impl Fn(&str) -> Option<String>) -> PasswordPolicy {
        let number = |attr: &str| get(attr).and_then(|v| v.trim().parse::<i64>().ok());
        PasswordPolicy {
            source: PolicySource::FineGrained(name.to_owned()),
            min_length: number("msds-minimumpasswordlength").unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
            complexity: get("msds-passwordcomplexityenabled").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
            history_count: number("msds-passwordhistorylength").unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
            min_age_days: number("msds-minimumpasswordage").map(days).unwrap_or(0.0),
            max_age_days: number("msds-maximumpasswordage").map(days).filter(|d| *d > 0.0),
        }
    }

    /// What this policy is called in a message: "the domain policy" or "password policy NAME".
    pub fn name(&self) -> String {
        match &self.source {
            PolicySource::Domain => "the domain's password policy".to_owned(),
            PolicySource::FineGrained(name) => format!("the fine-grained password policy {name}"),
        }
    }
}

/// An AD interval (negative 100 ns ticks; `i64::MIN` and 0 mean "never") in days.
fn days(ticks: i64) -> f64 {
    if ticks == i64::MIN || ticks == 0 { 0.0 } else { (ticks as f64).abs() / TICKS_PER_DAY }
}

/// A whole or fractional number of days, as a person writes it.
pub fn format_days(days: f64) -> String {
    if (days - days.round()).abs() < 1e-9 {
        let n = days.round() as i64;
        if n == 1 { "1 day".to_owned() } else { format!("{n} days") }
    } else {
        format!("{:.0} hours", days * 24.0)
    }
}

/// One rule on which the tenant and the domain disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyMismatch {
    /// `minLength`, `maxAgeDays`, `complexity` or `historyCount` (the contract's names).
    pub setting: &'static str,
    pub tenant: serde_json::Value,
    pub domain: serde_json::Value,
    pub message: String,
}

/// The tenant's policy against the domain's. The domain's Group Policy is what AD enforces, so
/// each message says to change the tenant to match (or the GPO, when the tenant is right).
pub fn compare(tenant: &TenantPasswordPolicy, domain: &PasswordPolicy) -> Vec<PolicyMismatch> {
    use serde_json::{Value, json};
    let mut out = Vec::new();
    let gpo = match &domain.source {
        PolicySource::Domain => "the domain's Group Policy (Default Domain Policy)".to_owned(),
        PolicySource::FineGrained(name) => format!("the fine-grained password policy {name}"),
    };
    if let Some(min) = tenant.min_length
        && min != domain.min_length
    {
        let effect = if min < domain.min_length {
            format!("AD rejects passwords of {min} to {} characters that the tenant accepts", domain.min_length - 1)
        } else {
            "the tenant is stricter than AD".to_owned()
        };
        out.push(PolicyMismatch {
            setting: "minLength",
            tenant: json!(min),
            domain: json!(domain.min_length),
            message: format!(
                "minimum length: the tenant requires {min} characters, {gpo} {}; {effect}. Set the tenant's minimum length to {}, or change minPwdLength in {gpo}",
                domain.min_length, domain.min_length
            ),
        });
    }
    let domain_days = domain.max_age_days.map(|d| d.round() as u32);
    let tenant_days = tenant.max_age_days.filter(|d| *d > 0);
    if tenant.max_age_days.is_some() && tenant_days != domain_days {
        let show = |d: Option<u32>| d.map_or_else(|| "never".to_owned(), |d| format!("after {d} days"));
        out.push(PolicyMismatch {
            setting: "maxAgeDays",
            tenant: tenant_days.map_or(Value::Null, |d| json!(d)),
            domain: domain_days.map_or(Value::Null, |d| json!(d)),
            message: format!(
                "maximum age: the tenant expires passwords {}, {gpo} {}. Set the tenant's maximum age to {}, or change maxPwdAge in {gpo}",
                show(tenant_days),
                show(domain_days),
                domain_days.map_or_else(|| "never".to_owned(), |d| format!("{d} days"))
            ),
        });
    }
    if let Some(complexity) = tenant.complexity
        && complexity != domain.complexity
    {
        let (tenant_says, effect) = if domain.complexity {
            ("does not require complexity", "AD rejects the simple passwords the tenant accepts")
        } else {
            ("requires complexity", "the tenant is stricter than AD")
        };
        out.push(PolicyMismatch {
            setting: "complexity",
            tenant: json!(complexity),
            domain: json!(domain.complexity),
            message: format!(
                "complexity: the tenant {tenant_says}, {gpo} {}; {effect}. Turn complexity {} in the tenant, or change \"Password must meet complexity requirements\" in {gpo}",
                if domain.complexity { "does" } else { "does not" },
                if domain.complexity { "on" } else { "off" }
            ),
        });
    }
    if let Some(history) = tenant.history_count
        && history != domain.history_count
    {
        out.push(PolicyMismatch {
            setting: "historyCount",
            tenant: json!(history),
            domain: json!(domain.history_count),
            message: format!(
                "history: the tenant remembers {history} passwords, {gpo} {}. Set the tenant's history to {}, or change pwdHistoryLength in {gpo}",
                domain.history_count, domain.history_count
            ),
        });
    }
    out
}

/// The account a password is for, as far as the checks need it.
pub struct Holder<'a> {
    pub sam_account_name: &'a str,
    pub display_name: Option<&'a str>,
}

/// AD's own checks on a new password: length, and with complexity on, three of the five
/// character categories and no account name or display-name token of three or more characters
/// ("Password must meet complexity requirements").
pub fn check(policy: &PasswordPolicy, password: &SecretString, holder: &Holder<'_>) -> Result<(), Rejection> {
    let text = password.expose_secret();
    let length = text.chars().count();
    if length == 0 {
        return Err(Rejection::Empty);
    }
    if length > MAX_LENGTH {
        return Err(Rejection::TooLong { max: MAX_LENGTH });
    }
    if length < policy.min_length as usize {
        return Err(Rejection::TooShort { min: Some(policy.min_length), policy: policy.name() });
    }
    if !policy.complexity {
        return Ok(());
    }
    if categories(text) < 3 {
        return Err(Rejection::NotComplex { policy: policy.name() });
    }
    let lower = text.to_lowercase();
    let sam = holder.sam_account_name.to_lowercase();
    if sam.chars().count() >= 3 && lower.contains(&sam) {
        return Err(Rejection::ContainsAccountName);
    }
    if let Some(display) = holder.display_name {
        let found = display_tokens(display).any(|token| lower.contains(&token.to_lowercase()));
        if found {
            return Err(Rejection::ContainsDisplayName);
        }
    }
    Ok(())
}

/// How many of AD's five categories a password draws from: uppercase, lowercase, digits,
/// non-alphanumeric symbols, and Unicode letters that are neither upper- nor lowercase.
fn categories(text: &str) -> u32 {
    let (mut upper, mut lower, mut digit, mut symbol, mut other) = (false, false, false, false, false);
    for c in text.chars() {
        if c.is_uppercase() {
            upper = true;
        } else if c.is_lowercase() {
            lower = true;
        } else if c.is_ascii_digit() {
            digit = true;
        } else if c.is_alphabetic() {
            other = true;
        } else if !c.is_alphanumeric() {
            symbol = true;
        }
    }
    [upper, lower, digit, symbol, other].into_iter().filter(|b| *b).count() as u32
}

/// The display name split at AD's delimiters (comma, period, hyphen, underscore, space, pound
/// sign, tab); tokens shorter than three characters are ignored.
fn display_tokens(display: &str) -> impl Iterator<Item = &str> {
    display.split([',', '.', '-', '\u{2010}', '\u{2013}', '_', ' ', '#', '\t']).filter(|t| t.chars().count() >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samba_default() -> PasswordPolicy {
        // testbed-samba.md: the provisioned domain's policy.
        let attrs = [
            ("minpwdlength", "7"),
            ("pwdproperties", "1"),
            ("pwdhistorylength", "24"),
            ("minpwdage", "-864000000000"),
            ("maxpwdage", "-36288000000000"),
        ];
        PasswordPolicy::domain(|n| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned()))
    }

    fn pw(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    const ALICE: Holder<'static> = Holder { sam_account_name: "asmith", display_name: Some("Alice Smith-Jones") };

    #[test]
    fn the_domain_policy_is_read_in_days() {
        let p = samba_default();
        assert_eq!((p.min_length, p.complexity, p.history_count), (7, true, 24));
        assert_eq!(p.min_age_days, 1.0);
        assert_eq!(p.max_age_days, Some(42.0));
        assert_eq!(format_days(42.0), "42 days");
        assert_eq!(format_days(0.5), "12 hours");
        let never = PasswordPolicy::domain(|n| (n == "maxpwdage").then(|| "-9223372036854775808".to_owned()));
        assert_eq!(never.max_age_days, None);
        assert!(!never.complexity);
    }

    #[test]
    fn a_pso_is_read_with_its_name() {
        let attrs = [
            ("msds-minimumpasswordlength", "12"),
            ("msds-passwordcomplexityenabled", "TRUE"),
            ("msds-passwordhistorylength", "5"),
            ("msds-minimumpasswordage", "0"),
            ("msds-maximumpasswordage", "-9223372036854775808"),
        ];
        let p = PasswordPolicy::fine_grained("admins-pso", |n| {
            attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned())
        });
        assert_eq!((p.min_length, p.complexity, p.history_count, p.max_age_days), (12, true, 5, None));
        assert_eq!(p.name(), "the fine-grained password policy admins-pso");
    }

    #[test]
    fn length_is_checked_with_the_domains_number() {
        let err = check(&samba_default(), &pw("Ab1!"), &ALICE).unwrap_err();
        assert_eq!(
            err.reason(),
            "the password is too short: the domain's password policy requires at least 7 characters"
        );
        assert_eq!(check(&samba_default(), &pw(""), &ALICE).unwrap_err(), Rejection::Empty);
        assert!(matches!(check(&samba_default(), &pw(&"Ab1!".repeat(65)), &ALICE), Err(Rejection::TooLong { .. })));
    }

    #[test]
    fn a_policy_mismatch_names_both_values_and_the_side_to_change() {
        let tenant = TenantPasswordPolicy {
            min_length: Some(6),
            max_age_days: Some(90),
            complexity: Some(false),
            history_count: Some(24),
        };
        let found = compare(&tenant, &samba_default());
        let settings: Vec<&str> = found.iter().map(|m| m.setting).collect();
        assert_eq!(settings, ["minLength", "maxAgeDays", "complexity"]);
        assert_eq!((found[0].tenant.clone(), found[0].domain.clone()), (serde_json::json!(6), serde_json::json!(7)));
        assert!(found[0].message.contains("the tenant requires 6 characters"), "{}", found[0].message);
        assert!(found[0].message.contains("Set the tenant's minimum length to 7"), "{}", found[0].message);
        assert!(found[1].message.contains("after 90 days") && found[1].message.contains("after 42 days"));
        assert!(found[2].message.contains("AD rejects the simple passwords"));
        let same = TenantPasswordPolicy {
            min_length: Some(7),
            max_age_days: Some(42),
            complexity: Some(true),
            history_count: None,
        };
        assert!(compare(&same, &samba_default()).is_empty());
        // "never" on both sides is a match, whichever way the tenant says it.
        let never = PasswordPolicy { max_age_days: None, ..samba_default() };
        let zero = TenantPasswordPolicy { max_age_days: Some(0), ..same };
        assert!(compare(&zero, &never).is_empty());
    }

    #[test]
    fn categories_follow_ad() {
        assert_eq!(categories("abc"), 1);
        assert_eq!(categories("aB1!"), 4);
        assert_eq!(categories("パスワードabc1"), 3);
    }

    #[test]
    fn complexity_needs_three_categories() {
        let err = check(&samba_default(), &pw("alllowercase1"), &ALICE).unwrap_err();
        assert_eq!(err, Rejection::NotComplex { policy: "the domain's password policy".into() });
        assert!(err.reason().contains("at least three of"), "{}", err.reason());
        assert!(check(&samba_default(), &pw("lower1!case"), &ALICE).is_ok());
        assert!(check(&samba_default(), &pw("Upper1case"), &ALICE).is_ok());
        // A letter with no case (here Japanese) is a category of its own.
        assert!(check(&samba_default(), &pw("パスワードabc1"), &ALICE).is_ok());
        let relaxed = PasswordPolicy { complexity: false, ..samba_default() };
        assert!(check(&relaxed, &pw("alllowercase"), &ALICE).is_ok());
    }

    #[test]
    fn the_account_and_display_names_are_refused_inside_the_password() {
        assert_eq!(check(&samba_default(), &pw("xxASmith99!"), &ALICE), Err(Rejection::ContainsAccountName));
        assert_eq!(check(&samba_default(), &pw("Jones#2026x"), &ALICE), Err(Rejection::ContainsDisplayName));
        // Tokens under three characters do not count, nor does a short account name.
        let short = Holder { sam_account_name: "al", display_name: Some("Al B") };
        assert!(check(&samba_default(), &pw("Al#B12345"), &short).is_ok());
    }
}
