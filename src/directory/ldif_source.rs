//! An LDIF export (ldifde, ldapsearch) as a directory: the same model and rules as a live DC,
//! read in two streaming passes (containers and naming context first, then objects).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::ldif::{LdifError, LdifReader, LdifRecord};
use super::{
    Change, ChangeTracking, Container, Decoded, DirObject, Directory, DirectoryError, DirectoryInfo, Dn, ObjectKind,
    ObjectQuery, RawEntry, ReadAttributes, ReadSummary, Unreadable, decode, decode_with,
};

pub struct LdifDirectory {
    path: PathBuf,
    info: DirectoryInfo,
    containers: Vec<Container>,
    /// What a DC would be asked for (the active policy's attributes and ausi's own): the rest of
    /// an entry is dropped, so an export and a DC give the mirror the same.
    pub(super) attributes: ReadAttributes,
}

impl LdifDirectory {
    pub fn open(path: &Path) -> Result<LdifDirectory, DirectoryError> {
        let mut suffix: Option<Dn> = None;
        let mut domain: Option<Dn> = None;
        let mut candidates = Vec::new();
        for record in reader(path)? {
            let record = match record {
                Ok(record) => record,
                Err(LdifError::Syntax { .. }) => continue, // reported by the object pass
                Err(LdifError::Io(source)) => return Err(file_error(path, source)),
            };
            let Ok(dn) = Dn::parse(&record.dn) else { continue };
            suffix = match suffix {
                None => Some(dn.clone()),
                Some(s) if dn.is_descendant_of(&s) => Some(s),
                Some(s) => Some(common_suffix(&s, &dn)),
            };
            // Only containers are kept: the class test reads the record as it is.
            let has = |class: &str| {
                record.attrs.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case("objectclass") && value.eq_ignore_ascii_case(class.as_bytes())
                })
            };
            if has("domainDNS") && domain.is_none() {
                domain = Some(dn);
            } else if has("organizationalUnit") || has("container") || has("builtinDomain") {
                candidates.push(raw_entry(record));
            }
        }
        let naming_context = domain.unwrap_or_else(|| domain_part(suffix.unwrap_or_default()));
        let mut containers = Vec::new();
        for raw in candidates {
            if let Ok(Decoded::Container(c)) = decode(&raw, &naming_context) {
                containers.push(c);
            }
        }
        Ok(LdifDirectory {
            path: path.to_owned(),
            info: DirectoryInfo {
                source: format!("ldif:{}", path.display()),
                naming_context,
                dns_host_name: None,
                highest_committed_usn: None,
                skipped: Vec::new(),
            },
            containers,
            attributes: ReadAttributes::default(),
        })
    }
}

/// Records read between two yields to the rest of the task (see `objects`).
const YIELD_EVERY: u64 = 1000;

impl Directory for LdifDirectory {
    async fn info(&mut self) -> Result<DirectoryInfo, DirectoryError> {
        Ok(self.info.clone())
    }

    async fn containers(&mut self, base: &Dn) -> Result<Vec<Container>, DirectoryError> {
        Ok(self
            .containers
            .iter()
            .filter(|c| c.dn.is_descendant_of(base) && (c.dn != *base || base != &self.info.naming_context))
            .cloned()
            .collect())
    }

    async fn objects(
        &mut self,
        base: &Dn,
        query: ObjectQuery,
        sink: &mut dyn FnMut(DirObject),
        progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        let mut summary = ReadSummary::default();
        for record in reader(&self.path)? {
            let record = match record {
                Ok(record) => record,
                Err(LdifError::Syntax { line, message }) => {
                    summary.unreadable.push(Unreadable { location: format!("line {line}"), message });
                    continue;
                }
                Err(LdifError::Io(source)) => return Err(file_error(&self.path, source)),
            };
            summary.entries += 1;
            progress(summary.entries);
            // A file never makes the read wait: let a full sync's listing of the tenant (the
            // other future of its task) put its requests on the wire while the file is read.
            if summary.entries.is_multiple_of(YIELD_EVERY) {
                tokio::task::yield_now().await;
            }
            let line = record.line;
            let mut raw = raw_entry(record);
            self.attributes.cut(&mut raw);
            match decode_with(&raw, &self.info.naming_context, self.attributes.extra()) {
                Ok(Decoded::Object(object)) => {
                    let wanted = match object.kind {
                        ObjectKind::User => query.users,
                        ObjectKind::Group => query.groups,
                    };
                    if wanted && object.dn.is_descendant_of(base) {
                        sink(*object);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    summary.unreadable.push(Unreadable { location: format!("line {line}"), message: e.to_string() })
                }
            }
        }
        Ok(summary)
    }

    /// An export is a snapshot: every sync of it is a full sync.
    async fn change_tracking(&mut self) -> Result<Option<ChangeTracking>, DirectoryError> {
        Ok(None)
    }

    async fn changes(
        &mut self,
        _usn: u64,
        _sink: &mut dyn FnMut(Change),
        _progress: &dyn Fn(u64),
    ) -> Result<ReadSummary, DirectoryError> {
        Ok(ReadSummary::default())
    }
}

fn reader(path: &Path) -> Result<LdifReader<BufReader<File>>, DirectoryError> {
    let file = File::open(path).map_err(|source| file_error(path, source))?;
    Ok(LdifReader::new(BufReader::with_capacity(256 * 1024, file)))
}

fn file_error(path: &Path, source: std::io::Error) -> DirectoryError {
    DirectoryError::File { path: path.to_owned(), source }
}

fn raw_entry(record: LdifRecord) -> RawEntry {
    let mut raw = RawEntry { dn: record.dn, attrs: Vec::new() };
    for (name, value) in record.attrs {
        raw.push_named(name, value);
    }
    raw
}

/// The longest run of trailing RDNs that `a` and `b` share.
fn common_suffix(a: &Dn, b: &Dn) -> Dn {
    let mut candidate = a.clone();
    loop {
        if b.is_descendant_of(&candidate) {
            return candidate;
        }
        match candidate.parent() {
            Some(parent) => candidate = parent,
            None => return Dn::default(),
        }
    }
}

/// `OU=Corp,DC=example,DC=test` → `DC=example,DC=test`: an export of one sub-tree still lives
/// in its domain, so depths are counted from the domain as on a live DC.
fn domain_part(dn: Dn) -> Dn {
    let mut current = dn;
    loop {
        let is_dc = current.rdn_type().is_some_and(|t| t.eq_ignore_ascii_case("dc"));
        if is_dc || current.is_root() {
            return current;
        }
        match current.parent() {
            Some(parent) => current = parent,
            None => return current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    #[test]
    fn naming_context_of_a_subtree_export_is_its_domain() {
        let s = common_suffix(&dn("CN=a,OU=Sales,OU=Corp,DC=example,DC=test"), &dn("CN=b,OU=Corp,DC=example,DC=test"));
        assert_eq!(s, dn("OU=Corp,DC=example,DC=test"));
        assert_eq!(domain_part(s), dn("DC=example,DC=test"));
        assert_eq!(domain_part(dn("CN=x,O=Org")), dn(""));
    }
}
