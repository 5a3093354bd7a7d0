//! Secrets by reference: `keyring:NAME` (the OS credential store: Windows Credential Manager,
//! the Linux kernel keyring), `file:PATH` (a file only its owner can read) or `env:VAR`.
//!
//! Secret values live in [`SecretString`] (zeroized on drop, redacted in `Debug`) and are never
//! put on a command line, in a log, a report or an error message.

use std::fmt;
use std::path::{Path, PathBuf};

pub use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::error::{AppError, ErrorKind};

/// Where a secret is kept. The reference itself is not secret and may be shown.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `keyring:SERVICE/ACCOUNT`, or `keyring:ACCOUNT` for service `ausi`.
    Keyring {
        service: String,
        account: String,
    },
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "not a secret reference: expected keyring:NAME, file:PATH or env:VAR (the value itself is never accepted here)"
    )]
    NotAReference,
    #[error("secret {reference} is not set")]
    Missing { reference: String },
    #[error(
        "secret file {} can be read by other users (mode {mode:o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("secret file {} belongs to another user (uid {owner})", path.display())]
    WrongOwner { path: PathBuf, owner: u32 },
    #[error("cannot use secret {reference}")]
    Io { reference: String, source: std::io::Error },
    #[error("the OS credential store refused {reference}: {detail}")]
    Store { reference: String, detail: String },
    #[error("cannot store a secret into {reference}: environment variables are read-only here")]
    ReadOnly { reference: String },
}

impl From<SecretError> for AppError {
    /// Without knowing what the secret is for: see [`SecretError::about`] for a hint that
    /// names the option storing it.
    fn from(e: SecretError) -> Self {
        let app = AppError::new(ErrorKind::Config, e.to_string());
        match &e {
            SecretError::Io { source, .. } => app.caused_by(source),
            SecretError::Missing { .. } => {
                app.with_hint("store the secret where the reference points, or point the reference at where it is")
            }
            _ => app,
        }
    }
}

/// What a secret of the configuration is for: a missing one's hint names the way to store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `directory.bind_password`, stored by `--bind-password-stdin --save-bind-password`.
    BindPassword,
    /// `tenant.token`, stored by `register --token-stdin`.
    TenantToken,
}

impl Purpose {
    pub fn name(self) -> &'static str {
        match self {
            Purpose::BindPassword => "bind password",
            Purpose::TenantToken => "tenant token",
        }
    }

    /// How to store the secret where the configuration points.
    pub fn store_hint(self) -> &'static str {
        match self {
            Purpose::BindPassword => {
                "store it: pipe it in with --bind-password-stdin --save-bind-password (or use your platform's credential tool)"
            }
            Purpose::TenantToken => {
                "store it again: pipe the tenant's token into `ausi register --home-realm URL --token-stdin`, which keeps the configured reference"
            }
        }
    }
}

impl SecretError {
    /// This error as a command reports it, for the secret `purpose`: a missing secret is named
    /// and its hint says how to store it.
    pub fn about(self, purpose: Purpose) -> AppError {
        match &self {
            SecretError::Missing { reference } => {
                AppError::new(ErrorKind::Config, format!("the {} is not stored in {reference}", purpose.name()))
                    .with_hint(purpose.store_hint())
            }
            _ => self.into(),
        }
    }
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<SecretRef, SecretError> {
        let (scheme, rest) = text.split_once(':').ok_or(SecretError::NotAReference)?;
        if rest.is_empty() {
            return Err(SecretError::NotAReference);
        }
        match scheme {
            "keyring" => {
                let (service, account) = rest.split_once('/').unwrap_or(("ausi", rest));
                if service.is_empty() || account.is_empty() {
                    return Err(SecretError::NotAReference);
                }
                Ok(SecretRef::Keyring { service: service.to_owned(), account: account.to_owned() })
            }
            "file" => Ok(SecretRef::File(PathBuf::from(rest))),
            "env" => Ok(SecretRef::Env(rest.to_owned())),
            _ => Err(SecretError::NotAReference),
        }
    }

    /// Reads the secret. A missing secret is `Missing`, so callers can fall back to a prompt.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                _ => Err(self.missing()),
            },
            SecretRef::File(path) => {
                let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
                resolve_file(path, credentials.as_deref(), self)
            }
            SecretRef::Keyring { service, account } => {
                let entry = keyring_entry(service, account, self)?;
                match entry.get_password() {
                    Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                    Ok(_) | Err(keyring_core::Error::NoEntry) => Err(self.missing()),
                    Err(e) => Err(SecretError::Store { reference: self.to_string(), detail: e.to_string() }),
                }
            }
        }
    }

    /// Stores `secret` where this reference points (a 0600 file, or the credential store).
    pub fn store(&self, secret: &SecretString) -> Result<(), SecretError> {
        match self {
            SecretRef::Env(_) => Err(SecretError::ReadOnly { reference: self.to_string() }),
            SecretRef::File(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    create_private_dir(parent).map_err(|source| self.io(source))?;
                }
                // The owner of a file that was there is kept; the mode is always 0600.
                crate::config::write_atomic(path, secret.expose_secret().as_bytes(), 0o600)
                    .and_then(|()| private_mode(path))
                    .map_err(|source| self.io(source))
            }
            SecretRef::Keyring { service, account } => keyring_entry(service, account, self)?
                .set_password(secret.expose_secret())
                .map_err(|e| SecretError::Store { reference: self.to_string(), detail: e.to_string() }),
        }
    }

    fn missing(&self) -> SecretError {
        SecretError::Missing { reference: self.to_string() }
    }

    fn io(&self, source: std::io::Error) -> SecretError {
        SecretError::Io { reference: self.to_string(), source }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Keyring { service, account } => write!(f, "keyring:{service}/{account}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Env(var) => write!(f, "env:{var}"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

/// The name under which systemd hands the secret file `path` to the service
/// (`LoadCredential=NAME:PATH`, written by `install-service`): the absolute path with `/` as `_`
/// (`%` and `_` escaped first, so two paths never share a name), e.g. `etc_ausi_bind.pw`.
pub fn credential_name(path: &Path) -> String {
    let text = path.to_string_lossy();
    let text = text.trim_start_matches(['/', '\\']);
    text.replace('%', "%25").replace('_', "%5F").replace(['/', '\\'], "_")
}

/// A `file:` secret, taken from the service's credentials directory when systemd put it there
/// (so the unit can make the original file inaccessible), else from the file itself.
fn resolve_file(path: &Path, credentials: Option<&Path>, reference: &SecretRef) -> Result<SecretString, SecretError> {
    if let Some(dir) = credentials {
        let passed = dir.join(credential_name(path));
        if passed.is_file() {
            return read_secret_file(&passed, reference);
        }
    }
    read_secret_file(path, reference)
}

fn read_secret_file(path: &Path, reference: &SecretRef) -> Result<SecretString, SecretError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(reference.missing()),
        Err(source) => return Err(reference.io(source)),
    };
    check_private(path, &meta)?;
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| reference.io(source))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        reference.io(std::io::Error::new(std::io::ErrorKind::InvalidData, "the secret file is not UTF-8 text"))
    })?;
    // One trailing line ending is an editor's, not the secret's.
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
    if value.is_empty() {
        return Err(reference.missing());
    }
    Ok(SecretString::from(value.to_owned()))
}

/// Where a `file:` reference's file is for this process: the copy systemd passed in the
/// service's credentials directory (`LoadCredential=`, as `install-service` writes for every
/// `file:` reference), else the file itself. For files that a library opens by path (a keytab).
pub fn passed_file(path: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) {
        let passed = dir.join(credential_name(path));
        if passed.is_file() {
            return passed;
        }
    }
    path.to_owned()
}

/// A file of keys ausi reads but does not parse itself (a Kerberos keytab): it must exist and be
/// as private as a `file:` secret (no access for group or others; owned by us or root).
pub fn check_private_file(path: &Path) -> Result<(), SecretError> {
    let reference = format!("file:{}", path.display());
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SecretError::Missing { reference }),
        Err(source) => return Err(SecretError::Io { reference, source }),
    };
    check_private(path, &meta)
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen { path: path.to_owned(), mode });
    }
    let me = current_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SecretError::WrongOwner { path: path.to_owned(), owner: meta.uid() });
    }
    Ok(())
}

#[cfg(unix)]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just created is our effective uid; /proc/self is ours on Linux.
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), SecretError> {
    // On Windows the file inherits the ACL of %ProgramData%\ausi; the credential store is preferred.
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn keyring_entry(service: &str, account: &str, reference: &SecretRef) -> Result<keyring_core::Entry, SecretError> {
    static STORE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    STORE
        .get_or_init(install_default_store)
        .clone()
        .map_err(|detail| SecretError::Store { reference: reference.to_string(), detail })?;
    keyring_core::Entry::new(service, account)
        .map_err(|e| SecretError::Store { reference: reference.to_string(), detail: e.to_string() })
}

#[cfg(windows)]
fn install_default_store() -> Result<(), String> {
    let store = windows_native_keyring_store::Store::new().map_err(|e| e.to_string())?;
    keyring_core::set_default_store(store);
    Ok(())
}

#[cfg(target_os = "linux")]
fn install_default_store() -> Result<(), String> {
    let store = linux_keyutils_keyring_store::Store::new().map_err(|e| e.to_string())?;
    keyring_core::set_default_store(store);
    Ok(())
}

#[cfg(not(any(windows, target_os = "linux")))]
fn install_default_store() -> Result<(), String> {
    Err("no OS credential store is supported on this platform: use a file: or env: reference".into())
}

#[cfg(unix)]
fn private_mode(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn private_mode(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            SecretRef::parse("keyring:ausi/ldap-bind").unwrap(),
            SecretRef::Keyring { service: "ausi".into(), account: "ldap-bind".into() }
        );
        assert_eq!(
            SecretRef::parse("keyring:ldap-bind").unwrap(),
            SecretRef::Keyring { service: "ausi".into(), account: "ldap-bind".into() }
        );
        assert_eq!(SecretRef::parse("file:/etc/ausi/bind.pw").unwrap(), SecretRef::File("/etc/ausi/bind.pw".into()));
        assert_eq!(SecretRef::parse("env:AUSI_BIND_PASSWORD").unwrap(), SecretRef::Env("AUSI_BIND_PASSWORD".into()));
        for bad in ["Passw0rd!", "keyring:", "file:", "ldap:x", "keyring:/x", ""] {
            assert!(SecretRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_string_debug_is_redacted() {
        let s = SecretString::from("hunter2-very-secret".to_owned());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn file_store_round_trip_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/bind.pw");
        let r = SecretRef::File(path.clone());
        assert!(matches!(r.resolve(), Err(SecretError::Missing { .. })));
        r.store(&SecretString::from("s3cr3t!".to_owned())).unwrap();
        assert_eq!(r.resolve().unwrap().expose_secret(), "s3cr3t!");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = r.resolve().unwrap_err();
            assert!(matches!(e, SecretError::TooOpen { .. }), "{e}");
            assert!(!e.to_string().contains("s3cr3t"));
        }
    }

    #[test]
    fn file_secret_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        crate::config::write_atomic(&path, b"pa ss\r\n", 0o600).unwrap();
        assert_eq!(SecretRef::File(path).resolve().unwrap().expose_secret(), "pa ss");
    }

    #[test]
    fn a_file_secret_comes_from_the_systemd_credentials_directory_when_passed() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("etc/bind_pw");
        let r = SecretRef::File(original.clone());
        let credentials = dir.path().join("creds");
        std::fs::create_dir(&credentials).unwrap();
        // Not passed as a credential and no file: missing, as before.
        assert!(matches!(resolve_file(&original, Some(&credentials), &r), Err(SecretError::Missing { .. })));
        let name = credential_name(&original);
        assert!(!name.contains('/') && name.ends_with("etc_bind%5Fpw"), "{name}");
        crate::config::write_atomic(&credentials.join(&name), b"from-systemd\n", 0o400).unwrap();
        assert_eq!(resolve_file(&original, Some(&credentials), &r).unwrap().expose_secret(), "from-systemd");
        // Outside a service the file itself is read.
        crate::config::write_atomic(&original, b"from-file", 0o600).unwrap();
        assert_eq!(resolve_file(&original, None, &r).unwrap().expose_secret(), "from-file");
        assert_ne!(credential_name(Path::new("/a/b_c")), credential_name(Path::new("/a/b/c")));
    }

    #[test]
    fn a_missing_secret_is_named_and_its_hint_names_the_option_that_stores_it() {
        let missing = || SecretRef::Env("AUSI_TEST_NEVER_SET_VARIABLE".into()).resolve().unwrap_err();
        let token = missing().about(Purpose::TenantToken);
        assert_eq!(token.message, "the tenant token is not stored in env:AUSI_TEST_NEVER_SET_VARIABLE");
        assert!(token.hints[0].contains("register") && token.hints[0].contains("--token-stdin"), "{:?}", token.hints);
        let bind = missing().about(Purpose::BindPassword);
        assert!(bind.hints[0].contains("--bind-password-stdin"), "{:?}", bind.hints);
        for e in [token, bind] {
            assert_eq!(e.kind, ErrorKind::Config);
        }
        // Without a purpose, no option is named.
        let plain = AppError::from(missing());
        assert!(!plain.hints.iter().any(|h| h.contains("--")), "{:?}", plain.hints);
    }

    #[test]
    fn env_reference_cannot_be_written() {
        let r = SecretRef::Env("AUSI_TEST_NEVER_SET_VARIABLE".into());
        assert!(matches!(r.resolve(), Err(SecretError::Missing { .. })));
        assert!(matches!(r.store(&SecretString::from("x".to_owned())), Err(SecretError::ReadOnly { .. })));
    }
}
