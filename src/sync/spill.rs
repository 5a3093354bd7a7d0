//! The run's plan as the report shows it, without holding it in memory: every planned item is
//! written as one JSON line to an anonymous scratch file beside the state store as it is
//! planned, and streamed back when the report is written. The counts are kept exactly as the
//! items arrive, and the first [`KEPT`] items of each list stay in memory for the terminal
//! table. A million planned creates cost a file, not a gigabyte.
//!
//! A scratch file that cannot be created or written (a full disk) is not an error: the items
//! are then held in memory, as before, and the report is the same.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::apply::Counts;
use super::plan::{Kind, MembershipChange, Plan, Removal, RemoveAction, Repair, Write};

/// How many items of each list stay in memory (the terminal table shows at most this many).
pub const KEPT: usize = 20;

/// A list of planned items: the first [`KEPT`] in memory, the rest in a scratch file.
pub struct Spill<T> {
    dir: Option<PathBuf>,
    head: Vec<T>,
    len: usize,
    /// The items after the head, as JSON lines; `None` before the first or when it failed.
    file: Mutex<Option<BufWriter<File>>>,
    /// Items after the head that could not be spilled (no scratch file): held here, in order
    /// after the file's.
    held: Vec<Value>,
}

impl<T> fmt::Debug for Spill<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spill").field("len", &self.len).finish_non_exhaustive()
    }
}

impl<T: Serialize> Spill<T> {
    /// An empty list whose scratch file (made on the first item past the head) goes in `dir`,
    /// or the system's temporary directory.
    pub fn new(dir: Option<&Path>) -> Spill<T> {
        Spill { dir: dir.map(Path::to_owned), head: Vec::new(), len: 0, file: Mutex::new(None), held: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first [`KEPT`] items.
    pub fn head(&self) -> &[T] {
        &self.head
    }

    pub fn push(&mut self, item: T) {
        self.len += 1;
        if self.head.len() < KEPT {
            self.head.push(item);
            return;
        }
        let line = match serde_json::to_string(&item) {
            Ok(line) => line,
            Err(_) => return, // the report's own types always serialise
        };
        if self.held.is_empty() && self.spill(&line).is_ok() {
            return;
        }
        // No scratch file (or it failed): hold the rest in memory, after what was spilled.
        self.held.push(serde_json::from_str(&line).unwrap_or(Value::Null));
    }

    fn spill(&mut self, line: &str) -> std::io::Result<()> {
        let file = self.file.get_mut().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            let made = match &self.dir {
                Some(dir) => tempfile::tempfile_in(dir).or_else(|_| tempfile::tempfile()),
                None => tempfile::tempfile(),
            }?;
            *file = Some(BufWriter::with_capacity(1 << 16, made));
        }
        let writer = file.as_mut().expect("made above");
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")
    }

    /// Every item as JSON, in order, until `f` returns false.
    pub fn each(&self, mut f: impl FnMut(Value) -> bool) -> std::io::Result<()> {
        for item in &self.head {
            if !f(serde_json::to_value(item).unwrap_or(Value::Null)) {
                return Ok(());
            }
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = file.as_mut() {
            writer.flush()?;
            let mut reader = BufReader::with_capacity(1 << 16, writer.get_mut());
            reader.seek(SeekFrom::Start(0))?;
            let mut line = String::new();
            let mut going = true;
            // Read to the end even when `f` is done, so that the file's offset is where the
            // next item is appended.
            while reader.read_line(&mut line)? > 0 {
                if going {
                    let value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
                    going = f(value);
                }
                line.clear();
            }
            if !going {
                return Ok(());
            }
        }
        for value in &self.held {
            if !f(value.clone()) {
                break;
            }
        }
        Ok(())
    }
}

impl<T: Serialize> Spill<T> {
    /// The first item (as JSON) that `hit` picks; `None` too when the file cannot be read back.
    pub fn find(&self, hit: impl Fn(&Value) -> bool) -> Option<Value> {
        let mut found = None;
        let _ = self.each(|v| match hit(&v) {
            true => {
                found = Some(v);
                false
            }
            false => true,
        });
        found
    }
}

/// Streams the list back: the head as itself, the spilled lines as the JSON they were.
impl<T: Serialize> Serialize for Spill<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        let mut failed = None;
        self.each(|value| match seq.serialize_element(&value) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })
        .map_err(serde::ser::Error::custom)?;
        if let Some(e) = failed {
            return Err(e);
        }
        seq.end()
    }
}

/// The run's whole plan for the report: the lists spilled as they are planned (without the
/// bodies: the report never shows them), the counts exact. Serialises as [`Plan`] does.
#[derive(Debug)]
pub struct PlanLog {
    pub creates: Spill<Write>,
    pub updates: Spill<Write>,
    pub memberships: Spill<MembershipChange>,
    pub removals: Spill<Removal>,
    pub repairs: Spill<Repair>,
    pub released: Spill<String>,
    /// What the plan counts, as a real run would count its writes (`failed` stays 0).
    pub tally: Counts,
    /// The tenant ids the plan's writes go to (updates, adoptions, re-pointed objects).
    pub write_ids: Vec<String>,
    /// Per SCIM attribute, how many of the plan's updates (not repairs) give it another value.
    pub changed_attributes: BTreeMap<String, u64>,
}

impl Default for PlanLog {
    fn default() -> Self {
        PlanLog::new(None)
    }
}

impl PlanLog {
    /// An empty plan whose scratch files go in `dir` (the state store's folder, which only its
    /// owner may read: the plan lists DNs), or the system's temporary directory.
    pub fn new(dir: Option<&Path>) -> PlanLog {
        PlanLog {
            creates: Spill::new(dir),
            updates: Spill::new(dir),
            memberships: Spill::new(dir),
            removals: Spill::new(dir),
            repairs: Spill::new(dir),
            released: Spill::new(dir),
            tally: Counts::default(),
            write_ids: Vec::new(),
            changed_attributes: BTreeMap::new(),
        }
    }

    /// Adds a page's (or a window's) plan: counted, and its items spilled without their bodies.
    pub fn absorb(&mut self, page: Plan) {
        let t = &mut self.tally;
        for w in &page.creates {
            if !w.repair {
                match w.scim_id.is_some() {
                    true => t.adopted += 1,
                    false => t.created += 1,
                }
            }
        }
        t.updated += page.updates.iter().filter(|w| !w.repair).count() as u64;
        for attribute in page.updates.iter().filter(|w| !w.repair).flat_map(|w| &w.changed) {
            *self.changed_attributes.entry(attribute.clone()).or_default() += 1;
        }
        t.unchanged += page.unchanged.len() as u64;
        t.deactivated += page.removals.iter().filter(|r| r.action != RemoveAction::Delete).count() as u64;
        t.deleted += page.removals.iter().filter(|r| r.action == RemoveAction::Delete).count() as u64;
        t.membership_changes += page.memberships.iter().filter(|m| m.changes_membership()).count() as u64;
        let repaired = |kind: Kind| page.repairs.iter().filter(|r| r.kind == kind && r.drift != "members").count();
        t.repaired_users += repaired(Kind::User) as u64;
        t.repaired_groups += repaired(Kind::Group) as u64;
        t.repaired_memberships += page.repairs.iter().map(|r| r.members.len() as u64).sum::<u64>();
        t.quarantined += page.quarantine.len() as u64;
        for mut w in page.creates {
            self.write_ids.extend(w.scim_id.clone());
            strip(&mut w);
            self.creates.push(w);
        }
        for mut w in page.updates {
            self.write_ids.extend(w.scim_id.clone());
            strip(&mut w);
            self.updates.push(w);
        }
        page.memberships.into_iter().for_each(|m| self.memberships.push(m));
        page.removals.into_iter().for_each(|r| self.removals.push(r));
        page.repairs.into_iter().for_each(|r| self.repairs.push(r));
        page.released.into_iter().for_each(|r| self.released.push(r));
    }
}

impl PlanLog {
    /// The run's membership changes, spilled as they were planned (see [`Spill`]), with how
    /// many of them change a membership: they replace any the plan held (a run plans its
    /// memberships in one place, [`super::engine::Engine::run`]).
    pub fn set_memberships(&mut self, memberships: Spill<MembershipChange>, changed: u64) {
        self.memberships = memberships;
        self.tally.membership_changes = changed;
    }
}

/// What the report never shows of a write.
fn strip(w: &mut Write) {
    w.body = Value::Null;
    w.hash = String::new();
    w.members = None;
    w.keep_members = Vec::new();
}

impl Serialize for PlanLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The fields [`Plan`] serialises, in its order.
        let mut s = serializer.serialize_struct("Plan", 6)?;
        s.serialize_field("creates", &self.creates)?;
        s.serialize_field("updates", &self.updates)?;
        s.serialize_field("memberships", &self.memberships)?;
        s.serialize_field("removals", &self.removals)?;
        s.serialize_field("repairs", &self.repairs)?;
        s.serialize_field("released", &self.released)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::{InlineMembers, Quarantined};
    use std::collections::BTreeSet;

    fn write(kind: Kind, i: usize, scim_id: Option<String>, repair: bool) -> Write {
        Write {
            kind,
            guid: format!("g{i}"),
            dn: format!("CN=\u{202e}u{i},OU=\"P\",DC=x"),
            scim_id,
            body: serde_json::json!({"userName": format!("u{i}")}),
            hash: format!("h{i}"),
            verify_first: i.is_multiple_of(7),
            absent: i.is_multiple_of(3),
            repair,
            changed: if i.is_multiple_of(2) { vec!["title".into()] } else { vec![] },
            members: Some(InlineMembers { guids: BTreeSet::from(["m".to_string()]), changed: true, restored: 1 }),
            keep_members: vec!["k".into()],
        }
    }

    /// Pages as a run plans them: creates, adoptions, updates, repairs, memberships, removals.
    fn pages(n: usize) -> Vec<Plan> {
        (0..n)
            .map(|p| {
                let i = p * 10;
                Plan {
                    creates: vec![
                        write(Kind::User, i, None, false),
                        write(Kind::User, i + 1, Some(format!("id{i}")), false),
                    ],
                    updates: vec![write(Kind::Group, i + 2, Some("x".into()), p % 2 == 0)],
                    memberships: vec![MembershipChange {
                        group_guid: format!("grp{p}"),
                        group_dn: format!("CN=grp{p}"),
                        add: vec![format!("g{i}")],
                        remove: if p % 3 == 0 { vec!["old".into()] } else { vec![] },
                        restore: if p % 4 == 0 { vec![format!("g{i}")] } else { vec![] },
                        inline: false,
                    }],
                    removals: vec![Removal {
                        kind: Kind::User,
                        guid: format!("r{p}"),
                        dn: format!("CN=r{p}"),
                        scim_id: Some(format!("rid{p}")),
                        action: if p % 2 == 0 { RemoveAction::Delete } else { RemoveAction::Deactivate },
                        reason: "gone",
                    }],
                    repairs: vec![Repair {
                        kind: if p % 2 == 0 { Kind::User } else { Kind::Group },
                        guid: format!("g{}", i + 2),
                        dn: "CN=x".into(),
                        drift: if p % 3 == 0 { "members" } else { "attributes" },
                        attributes: vec!["name.familyName".into()],
                        members: vec!["a".into(), "b".into()],
                    }],
                    unchanged: vec![(format!("same{p}"), "CN=same".into())],
                    quarantine: vec![Quarantined { guid: format!("q{p}"), dn: "CN=q".into(), reasons: vec![] }],
                    released: vec![format!("rel{p}")],
                }
            })
            .collect()
    }

    /// The report's plan, spilled, is byte for byte the plan held in memory (compact and
    /// pretty), and its counts are the ones counted over the whole plan.
    #[test]
    fn the_spilled_plan_reports_what_the_held_plan_did() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 3, 40] {
            let mut held = Plan::default();
            let mut log = PlanLog::new(Some(dir.path()));
            for page in pages(n) {
                let mut stripped = page.clone();
                stripped.creates.iter_mut().chain(stripped.updates.iter_mut()).for_each(strip);
                held.append(stripped);
                log.absorb(page);
            }
            assert_eq!(serde_json::to_string(&log).unwrap(), serde_json::to_string(&held).unwrap(), "n={n}");
            assert_eq!(serde_json::to_string_pretty(&log).unwrap(), serde_json::to_string_pretty(&held).unwrap());
            let expected = Counts {
                created: held.creates.iter().filter(|w| !w.repair && w.scim_id.is_none()).count() as u64,
                adopted: held.creates.iter().filter(|w| !w.repair && w.scim_id.is_some()).count() as u64,
                updated: held.updates.iter().filter(|w| !w.repair).count() as u64,
                unchanged: held.unchanged.len() as u64,
                deactivated: held.removals.iter().filter(|r| r.action != RemoveAction::Delete).count() as u64,
                deleted: held.removals.iter().filter(|r| r.action == RemoveAction::Delete).count() as u64,
                membership_changes: held.memberships.iter().filter(|m| m.changes_membership()).count() as u64,
                repaired_users: held.repairs.iter().filter(|r| r.kind == Kind::User && r.drift != "members").count()
                    as u64,
                repaired_groups: held.repairs.iter().filter(|r| r.kind == Kind::Group && r.drift != "members").count()
                    as u64,
                repaired_memberships: held.repairs.iter().map(|r| r.members.len() as u64).sum(),
                quarantined: held.quarantine.len() as u64,
                failed: 0,
            };
            assert_eq!(log.tally, expected, "n={n}");
            assert_eq!(log.creates.len(), held.creates.len());
            assert_eq!(log.creates.head(), &held.creates[..held.creates.len().min(KEPT)]);
            // Serialised twice: the file is read back from its start each time.
            assert_eq!(serde_json::to_string(&log).unwrap(), serde_json::to_string(&held).unwrap());
        }
    }

    /// Past the head the items are in the scratch file, not in memory; items added after a
    /// read come back after the earlier ones; a scan can stop early.
    #[test]
    fn items_past_the_head_are_spilled_and_streamed_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s: Spill<String> = Spill::new(Some(dir.path()));
        (0..100).for_each(|i| s.push(format!("v{i}")));
        assert_eq!((s.len(), s.head().len(), s.held.len()), (100, KEPT, 0));
        let mut first = Vec::new();
        s.each(|v| {
            first.push(v);
            first.len() < 30
        })
        .unwrap();
        assert_eq!(first.len(), 30);
        s.push("late".into());
        let all = serde_json::to_value(&s).unwrap();
        let expected: Vec<String> = (0..100).map(|i| format!("v{i}")).chain(["late".to_string()]).collect();
        assert_eq!(all, serde_json::json!(expected));
        // No scratch folder: the system's, or (failing that) memory; the same list either way.
        let mut s: Spill<String> = Spill::new(Some(&dir.path().join("missing")));
        (0..30).for_each(|i| s.push(format!("v{i}")));
        assert_eq!(serde_json::to_value(&s).unwrap(), serde_json::json!(expected[..30]));
    }
}
