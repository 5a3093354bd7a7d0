//! The directory mirror: what the selected scope of AD held at the last watermark, in the state
//! store. A full sync rebuilds it; a delta patches it with what changed. Either way the planner
//! then works on the *dirty* objects only (a full sync: all of them), looking up everything else
//! — group members, managers, duplicate values — in the mirror, so one engine serves both.
//!
//! Links (group members, managers) are kept by objectGUID and refreshed from whichever end was
//! read: a group's `member`, a user's `manager`, and in a delta also `memberOf` and
//! `directReports`, so an object moving into the scope finds the groups that already listed it.
//!
//! Dirtiness is persistent (table `dirty`) and cleared only with the watermark's advance: a run
//! killed at any point leaves the same work for the next one, even though the next delta reads
//! fewer changes (the mirror already holds them).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::attrs::Attrs;
use super::schema::MEMBERS_BY_MEMBER;
use super::{StateError, StateStore};
use crate::directory::{Defect, DirObject, Dn, ObjectGuid, ObjectKind};

/// The value the duplicate rules compare (`None` for a blank value, which never collides).
pub fn duplicate_key(value: Option<&str>) -> Option<String> {
    value.filter(|v| !crate::directory::is_blank(v)).map(|v| v.trim().to_lowercase())
}

/// A member of a group as the planner weighs it: (objectGUID, is a group, a valid user).
pub type Member = (String, bool, bool);

/// One user or group from the mirror.
#[derive(Debug, Clone)]
pub struct Mirrored {
    pub guid: String,
    pub object: DirObject,
    /// The manager's objectGUID, when the manager is in scope.
    pub manager: Option<String>,
    /// Users: the last validation's verdict (`None` before the first).
    pub valid: Option<bool>,
    /// The row's place in the table (SQLite's rowid): where a full pass's page ends.
    row: i64,
}

impl Mirrored {
    /// Where the next [`StateStore::work_page`] starts when this object ends a page.
    pub fn page_end(&self) -> PageEnd {
        PageEnd { row: self.row, guid: self.guid.clone() }
    }
}

/// Where a [`StateStore::work_page`] starts: after the object that ended the page before
/// ([`Mirrored::page_end`]); `PageEnd::default()` for the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageEnd {
    row: i64,
    guid: String,
}

/// The watermark of the last successful run against one DC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watermark {
    pub dc: String,
    pub invocation_id: String,
    pub usn: u64,
    pub taken_at: String,
    /// A fingerprint of the selected OUs the mirror was built for.
    pub scope: String,
}

pub const KEY_COLUMNS: [&str; 3] = ["mail_key", "upn_key", "sam_key"];

/// A mirror row `o` the policy's scope takes (status `out`: in the OUs, but excluded by the
/// policy's scope or group options; kept in the mirror for its links, treated as gone).
const IN_SCOPE: &str = "COALESCE(o.status, '') <> 'out'";

fn kind_text(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::User => "user",
        ObjectKind::Group => "group",
    }
}

/// The duplicate keys of an object as read ([`KEY_COLUMNS`] order): Default's, whose rules compare
/// mail, userPrincipalName and sAMAccountName. A configured policy's compare what it maps
/// (`sync::validate::duplicate_keys`), and [`StateStore::mirror_put`] stores whichever it is given.
pub fn directory_keys(o: &DirObject) -> [Option<String>; 3] {
    [
        duplicate_key(o.mail.as_deref()),
        duplicate_key(o.user_principal_name.as_deref()),
        duplicate_key(o.sam_account_name.as_deref()),
    ]
}

/// A text column borrowed from the row (for what is only read: kind, DN text, JSON).
fn row_text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// A mirror row read with [`SELECT`]'s columns (as [`OBJECT_COLUMNS`] in a join), first.
fn row_to_mirrored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mirrored> {
    let text = |i: usize| row_text(r, i);
    let guid: String = r.get(0)?;
    let kind = text(1)?;
    let dn = text(2)?;
    let a = Attrs::read(r.get_ref(3)?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Blob, e.into()))?;
    let valid = match r.get_ref(5)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(text(5)? == "valid"),
    };
    let object = DirObject {
        kind: if kind == "group" { ObjectKind::Group } else { ObjectKind::User },
        dn: Dn::parse(dn)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.message.into()))?,
        guid: ObjectGuid::parse(&guid),
        sam_account_name: a.sam.map(Cow::into_owned),
        user_principal_name: a.upn.map(Cow::into_owned),
        given_name: a.given.map(Cow::into_owned),
        sn: a.sn.map(Cow::into_owned),
        mail: a.mail.map(Cow::into_owned),
        display_name: a.display.map(Cow::into_owned),
        user_account_control: a.uac,
        cn: a.cn.map(Cow::into_owned),
        title: a.title.map(Cow::into_owned),
        telephone_number: a.phone.map(Cow::into_owned),
        department: a.department.map(Cow::into_owned),
        employee_number: a.employee.map(Cow::into_owned),
        defects: a.defects.into_owned(),
        extra: a.extra.into_owned(),
        ..DirObject::default()
    };
    Ok(Mirrored { guid, object, manager: r.get(4)?, valid, row: r.get(6)? })
}

const SELECT: &str = "SELECT guid, kind, dn, data, manager, status, rowid FROM dir_objects";
/// [`SELECT`]'s columns of `dir_objects o` in a join.
const OBJECT_COLUMNS: &str = "o.guid, o.kind, o.dn, o.data, o.manager, o.status, o.rowid";
/// The body an object was last sent.
const SENT_BODY: &str = "SELECT body FROM anchors WHERE guid = ?1 AND body IS NOT NULL";

impl StateStore {
    /// The watermark of the last successful run, whichever DC it was on.
    pub fn watermark(&self) -> Result<Option<Watermark>, StateError> {
        Ok(self.watermarks()?.into_iter().next())
    }

    /// One watermark per DC (`dsServiceName`) a successful run was on, the newest first: a run
    /// on DC B keeps DC A's, so coming back to A continues from where A was left.
    pub fn watermarks(&self) -> Result<Vec<Watermark>, StateError> {
        let result = (|| {
            let mut stmt = self
                .conn
                .prepare("SELECT dc, invocation_id, usn, taken_at, scope FROM watermarks ORDER BY taken_at DESC, dc")?;
            let rows = stmt.query_map([], |r| {
                Ok(Watermark {
                    dc: r.get(0)?,
                    invocation_id: r.get(1)?,
                    usn: r.get::<_, i64>(2)?.max(0) as u64,
                    taken_at: r.get(3)?,
                    scope: r.get(4)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })();
        result.map_err(|e| self.sql(e))
    }

    /// The end of a successful run: the new watermark of the DC it ran on (none from a source
    /// without change tracking, an export; the other DCs' stay), an empty dirty set, and no
    /// full sync owed any more — one transaction, so a kill before it leaves all the work to redo.
    ///
    /// Another DC's older watermark stays valid: the mirror now holds at least what that DC
    /// held at its watermark (changes replicate), and a delta from there re-reads what changed
    /// on it since, which is harmless to apply again.
    pub fn settle(&mut self, mark: Option<&Watermark>) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            if let Some(mark) = mark {
                tx.execute("DELETE FROM watermarks WHERE dc = ?1", [&mark.dc])?;
                tx.execute(
                    "INSERT INTO watermarks (dc, invocation_id, usn, taken_at, scope) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        mark.dc,
                        mark.invocation_id,
                        i64::try_from(mark.usn).unwrap_or(i64::MAX),
                        mark.taken_at,
                        mark.scope
                    ],
                )?;
            }
            tx.execute("DELETE FROM dirty", [])?;
            tx.execute("DELETE FROM meta WHERE key IN ('full_pending', 'full_sync_requested')", [])?;
            Ok(())
        })
    }

    /// A full rebuild starts: until [`StateStore::settle`], the next run is a full sync too.
    pub fn begin_full(&mut self) -> Result<(), StateError> {
        self.set_meta("full_pending", Some("1"))
    }

    /// Writes objects read from the directory into the mirror (one transaction). In a delta
    /// (`delta = true`) each object, the users sharing an old or new duplicate value with it,
    /// and the groups whose membership it changes become dirty, and its back-links are taken.
    ///
    /// Returns the positions in `objects` of those whose objectGUID an object written earlier
    /// in the same run already holds (a corrupt export): they are not written, and the first
    /// holder's row stays as it was, so the caller can quarantine every holder.
    ///
    /// `keys` gives a user's duplicate keys under the run's policy: the key columns hold what
    /// the policy's duplicate rules compare, so that finding the holders of a key is one indexed
    /// query whatever the policy (a changed policy re-reads, and so re-keys, every object). A
    /// group has none: no rule compares groups, and the key indexes then hold users only.
    pub fn mirror_put(
        &mut self,
        objects: &[DirObject],
        run: i64,
        delta: bool,
        keys: &dyn Fn(&DirObject) -> [Option<String>; 3],
    ) -> Result<Vec<usize>, StateError> {
        self.mirror_sql(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO dir_objects (guid, kind, dn, dn_key, data, mail_key, upn_key, sam_key, seen_run)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (guid) DO UPDATE SET kind = ?2, dn = ?3, dn_key = ?4, data = ?5, mail_key = ?6,
                   upn_key = ?7, sam_key = ?8, seen_run = ?9, manager = NULL
                 WHERE ?10 OR dir_objects.seen_run IS NOT ?9",
            )?;
            // A full read finds most rows as they are: only `seen_run` is written then, which
            // touches none of the five indexes. The manager column stays when the link that sets
            // it again follows; without one it must be empty already.
            let mut seen = tx.prepare_cached(
                "UPDATE dir_objects SET seen_run = ?9
                 WHERE guid = ?1 AND seen_run IS NOT ?9 AND kind = ?2 AND dn = ?3 AND dn_key = ?4 AND data = ?5
                   AND mail_key IS ?6 AND upn_key IS ?7 AND sam_key IS ?8 AND (?10 OR manager IS NULL)",
            )?;
            let mut link = tx.prepare_cached("INSERT INTO temp.links (from_guid, kind, target) VALUES (?1, ?2, ?3)")?;
            let mut again = Vec::new();
            for (position, o) in objects.iter().enumerate() {
                let Some(guid) = o.guid.map(|g| g.to_string()) else { continue };
                let keys = if o.kind == ObjectKind::User { keys(o) } else { Default::default() };
                if delta {
                    mark_dirty(tx, &guid)?;
                    let old: Option<[Option<String>; 3]> = tx
                        .prepare_cached("SELECT mail_key, upn_key, sam_key FROM dir_objects WHERE guid = ?1")?
                        .query_row([&guid], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]))
                        .optional()?;
                    for (i, column) in KEY_COLUMNS.iter().enumerate() {
                        let old_key = old.as_ref().and_then(|k| k[i].clone());
                        for key in [old_key, keys[i].clone()].into_iter().flatten() {
                            tx.prepare_cached(&format!(
                                "INSERT OR IGNORE INTO dirty (guid) SELECT guid FROM dir_objects WHERE {column} = ?1"
                            ))?
                            .execute([&key])?;
                        }
                    }
                }
                let data = Attrs::of(o).pack();
                let (kind, dn, dn_key) = (kind_text(o.kind), o.dn.to_string(), o.dn.normalized());
                let [mail, upn, sam] = &keys;
                let unchanged = !delta
                    && seen.execute(params![guid, kind, dn, dn_key, data, mail, upn, sam, run, o.manager.is_some()])?
                        == 1;
                let written = unchanged
                    || upsert.execute(params![guid, kind, dn, dn_key, data, mail, upn, sam, run, delta])? == 1;
                if !written {
                    again.push(position); // held by an object written earlier in this run
                    continue;
                }
                if o.kind == ObjectKind::Group {
                    link.execute(params![guid, "member", ""])?; // even with none: an emptied group
                    for m in &o.members {
                        link.execute(params![guid, "member", m])?;
                    }
                }
                // The row's manager was reset above; the link sets it again. A delta also records
                // "no manager", so the manager's directReports cannot override what was read.
                match &o.manager {
                    Some(m) => link.execute(params![guid, "manager", m.normalized()])?,
                    None if delta => link.execute(params![guid, "manager", ""])?,
                    None => 0,
                };
                if delta {
                    link.execute(params![guid, "memberOf", ""])?; // even with none: the old rows go
                    for g in &o.member_of {
                        link.execute(params![guid, "memberOf", g])?;
                    }
                    for r in &o.direct_reports {
                        link.execute(params![guid, "directReports", r])?;
                    }
                }
            }
            Ok(again)
        })
    }

    /// Adds a defect to a mirror row (a duplicate objectGUID found after the row was written).
    pub fn mirror_add_defect(&mut self, guid: &str, defect: Defect) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            let data: Option<rusqlite::types::Value> =
                tx.query_row("SELECT data FROM dir_objects WHERE guid = ?1", [guid], |r| r.get(0)).optional()?;
            let Some(data) = data else { return Ok(()) };
            let mut attrs = Attrs::read((&data).into())
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into()))?;
            attrs.defects.to_mut().push(defect);
            tx.execute("UPDATE dir_objects SET data = ?2 WHERE guid = ?1", params![guid, attrs.pack()])?;
            Ok(())
        })
    }

    /// Turns the links gathered by [`StateStore::mirror_put`] into objectGUID pairs, once every
    /// object of the run is in the mirror (a link's target may be read after its source). In a
    /// delta, groups whose membership changes become dirty.
    pub fn mirror_resolve_links(&mut self, delta: bool) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            // Indexed here, in one sorted pass over the links gathered, not link by link as they
            // were gathered: at 100,000 users, keeping two indexes of random DN keys up to date
            // through a 2 MB page cache read and wrote the temporary file ~750,000 times. Each
            // index holds all three columns, so the joins below read the indexes only: looking
            // each link up in the table, in index order, read the temporary file once per link.
            tx.execute_batch(
                "CREATE INDEX IF NOT EXISTS temp.links_from ON links (from_guid, kind, target);
                 CREATE INDEX IF NOT EXISTS temp.links_target ON links (kind, target, from_guid);",
            )?;
            // The member lists of the groups read: replaced (old rows kept aside to compare).
            if delta {
                tx.execute_batch(
                    "DELETE FROM temp.old_members;
                     INSERT INTO temp.old_members SELECT group_guid, member_guid FROM dir_members
                       WHERE group_guid IN (SELECT from_guid FROM temp.links WHERE kind = 'member')
                          OR member_guid IN (SELECT from_guid FROM temp.links WHERE kind = 'memberOf');",
                )?;
            }
            tx.execute_batch(
                "DELETE FROM dir_members WHERE member_guid IN (SELECT from_guid FROM temp.links WHERE kind = 'memberOf');",
            )?;
            // A full read replaces the member list of every group, so the index by member is
            // built again after, in one sort, rather than kept up to date row by row: at
            // 1,000,000 users (2,000,000 memberships) that took the insert below from 12.0 s to
            // 2.8 s, and 1.0 s to build the index (issue 13). The rows go in in key order.
            if !delta {
                tx.execute_batch("DROP INDEX IF EXISTS dir_members_by_member;")?;
            }
            tx.execute_batch(
                "DELETE FROM dir_members WHERE group_guid IN (SELECT from_guid FROM temp.links WHERE kind = 'member');
                 INSERT OR IGNORE INTO dir_members (group_guid, member_guid)
                   SELECT l.from_guid, o.guid FROM temp.links l JOIN dir_objects o ON o.dn_key = l.target
                   WHERE l.kind = 'member' AND o.guid <> l.from_guid ORDER BY 1, 2;",
            )?;
            tx.execute_batch(MEMBERS_BY_MEMBER)?;
            tx.execute_batch(
                "INSERT OR IGNORE INTO dir_members (group_guid, member_guid)
                   SELECT g.guid, l.from_guid FROM temp.links l JOIN dir_objects g ON g.dn_key = l.target
                   WHERE l.kind = 'memberOf' AND g.kind = 'group' AND g.guid <> l.from_guid;
                 UPDATE dir_objects SET manager = (
                     SELECT m.guid FROM temp.links l JOIN dir_objects m ON m.dn_key = l.target
                     WHERE l.from_guid = dir_objects.guid AND l.kind = 'manager' AND m.kind = 'user' LIMIT 1)
                   WHERE guid IN (SELECT from_guid FROM temp.links WHERE kind = 'manager');
                 UPDATE dir_objects SET manager = (
                     SELECT l.from_guid FROM temp.links l WHERE l.kind = 'directReports' AND l.target = dir_objects.dn_key LIMIT 1)
                   WHERE dn_key IN (SELECT target FROM temp.links WHERE kind = 'directReports')
                     AND guid NOT IN (SELECT from_guid FROM temp.links WHERE kind = 'manager');",
            )?;
            if delta {
                // Groups that gained or lost a member (from either end), and reports whose
                // manager changed from the manager's end.
                tx.execute_batch(
                    "INSERT OR IGNORE INTO dirty (guid) SELECT group_guid FROM (
                         SELECT group_guid, member_guid FROM temp.old_members
                         EXCEPT SELECT group_guid, member_guid FROM dir_members);
                     INSERT OR IGNORE INTO dirty (guid) SELECT group_guid FROM (
                         SELECT group_guid, member_guid FROM dir_members
                           WHERE member_guid IN (SELECT from_guid FROM temp.links WHERE kind = 'memberOf')
                              OR group_guid IN (SELECT from_guid FROM temp.links WHERE kind = 'member')
                         EXCEPT SELECT group_guid, member_guid FROM temp.old_members);
                     INSERT OR IGNORE INTO dirty (guid)
                       SELECT o.guid FROM dir_objects o JOIN temp.links l
                         ON l.kind = 'directReports' AND l.target = o.dn_key;",
                )?;
            }
            tx.execute_batch(
                "DROP INDEX temp.links_from; DROP INDEX temp.links_target;
                 DELETE FROM temp.links; DELETE FROM temp.old_members;",
            )?;
            Ok(())
        })
    }

    /// Removes objects on evidence (a tombstone, a move out of the scope, absence from a complete
    /// read): the groups that held them, their reports and the users sharing a duplicate value
    /// with them become dirty. Returns how many rows went.
    pub fn mirror_remove(&mut self, guids: &[String]) -> Result<usize, StateError> {
        self.mirror_sql(|tx| {
            let mut removed = 0;
            for guid in guids {
                dirty_neighbours(tx, guid)?;
                tx.prepare_cached("DELETE FROM dir_members WHERE group_guid = ?1 OR member_guid = ?1")?
                    .execute([guid])?;
                tx.prepare_cached("UPDATE dir_objects SET manager = NULL WHERE manager = ?1")?.execute([guid])?;
                removed += tx.prepare_cached("DELETE FROM dir_objects WHERE guid = ?1")?.execute([guid])?;
            }
            Ok(removed)
        })
    }

    /// After a complete read: whatever the read did not see is gone from the scope.
    pub fn mirror_unseen(&self, run: i64) -> Result<Vec<String>, StateError> {
        self.query_strings("SELECT guid FROM dir_objects WHERE seen_run <> ?1", params![run])
    }

    /// Mirror rows whose DN lies under `dn` (an OU that moved or was renamed).
    pub fn mirror_under(&self, dn: &Dn) -> Result<Vec<(String, String)>, StateError> {
        let key = dn.normalized();
        let read = || -> rusqlite::Result<Vec<(String, String)>> {
            let mut stmt =
                self.conn.prepare_cached("SELECT guid, dn FROM dir_objects WHERE dn_key LIKE ?1 ESCAPE '\\'")?;
            let like = format!("%,{}", key.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            let rows = stmt.query_map([like], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        let rows = read().map_err(|e| self.sql(e))?;
        Ok(rows.into_iter().filter(|(_, d)| Dn::parse(d).is_ok_and(|d| d.is_descendant_of(dn))).collect())
    }

    /// The OUs of the scope as the mirror knows them: guid → DN.
    pub fn mirror_ous(&self) -> Result<HashMap<String, String>, StateError> {
        let read = || -> rusqlite::Result<HashMap<String, String>> {
            let mut stmt = self.conn.prepare("SELECT guid, dn FROM dir_ous")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Replaces the recorded OUs (`replace_all`, after a full read) or updates some of them.
    pub fn mirror_set_ous(
        &mut self,
        ous: &[(String, String)],
        gone: &[String],
        replace_all: bool,
    ) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            if replace_all {
                tx.execute("DELETE FROM dir_ous", [])?;
            }
            for guid in gone {
                tx.execute("DELETE FROM dir_ous WHERE guid = ?1", [guid])?;
            }
            for (guid, dn) in ous {
                tx.prepare_cached("INSERT OR REPLACE INTO dir_ous (guid, dn) VALUES (?1, ?2)")?.execute([guid, dn])?;
            }
            Ok(())
        })
    }

    pub fn mirror_contains(&self, guid: &str) -> Result<bool, StateError> {
        self.conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM dir_objects WHERE guid = ?1)")
            .and_then(|mut s| s.query_row([guid], |r| r.get(0)))
            .map_err(|e| self.sql(e))
    }

    /// The objects to look at, `kind` only, in pages: `all` (a full sync) or the dirty ones.
    ///
    /// All of them are read in the table's order, each page of the file once: in objectGUID
    /// order (the index's), every row was a look-up of its own in a table larger than the page
    /// cache, and a full sync read the file about once per object. The dirty ones (few) are read
    /// in their objectGUID order.
    pub fn work_page(
        &self,
        kind: ObjectKind,
        all: bool,
        after: &PageEnd,
        limit: usize,
    ) -> Result<Vec<Mirrored>, StateError> {
        let (sql, after): (String, &dyn rusqlite::ToSql) = if all {
            (format!("{SELECT} WHERE kind = ?1 AND rowid > ?2 ORDER BY rowid LIMIT ?3"), &after.row)
        } else {
            // Driven by the (small) dirty set, not by a scan of the mirror.
            let sql = format!(
                "SELECT {OBJECT_COLUMNS} FROM dirty d CROSS JOIN dir_objects o
                   ON o.guid = d.guid WHERE o.kind = ?1 AND d.guid > ?2 ORDER BY d.guid LIMIT ?3"
            );
            (sql, &after.guid)
        };
        let read = || -> rusqlite::Result<Vec<Mirrored>> {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![kind_text(kind), after, limit as i64], row_to_mirrored)?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// [`StateStore::work_page`] of the objects the tenant holds a body of (as last sent), with
    /// that body's JSON text: what a change of their mapping would rewrite. On a tenant never
    /// written to, no row is read at all.
    pub fn bodied_page(
        &self,
        kind: ObjectKind,
        all: bool,
        after: &PageEnd,
        limit: usize,
    ) -> Result<Vec<(Mirrored, String)>, StateError> {
        // Driven by the anchors (in their objectGUID order, [`PageEnd`]'s), not by the mirror.
        let columns = format!("{OBJECT_COLUMNS}, a.body");
        let sql = if all {
            format!(
                "SELECT {columns} FROM anchors a JOIN dir_objects o ON o.guid = a.guid
                  WHERE o.kind = ?1 AND a.body IS NOT NULL AND a.guid > ?2 ORDER BY a.guid LIMIT ?3"
            )
        } else {
            format!(
                "SELECT {columns} FROM dirty d JOIN anchors a ON a.guid = d.guid JOIN dir_objects o ON o.guid = d.guid
                  WHERE o.kind = ?1 AND a.body IS NOT NULL AND d.guid > ?2 ORDER BY d.guid LIMIT ?3"
            )
        };
        let after = &after.guid;
        let read = || -> rusqlite::Result<Vec<(Mirrored, String)>> {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![kind_text(kind), after, limit as i64], |r| {
                Ok((row_to_mirrored(r)?, row_text(r, 7)?.to_owned()))
            })?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    pub fn mirrored(&self, guid: &str) -> Result<Option<Mirrored>, StateError> {
        self.conn
            .prepare_cached(&format!("{SELECT} WHERE guid = ?1"))
            .and_then(|mut s| s.query_row([guid], row_to_mirrored))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The user whose userPrincipalName or sAMAccountName is `name` (for `sync --user`).
    pub fn mirrored_user(&self, name: &str) -> Result<Option<Mirrored>, StateError> {
        let key = name.trim().to_lowercase();
        self.conn
            .query_row(
                &format!("{SELECT} WHERE kind = 'user' AND (upn_key = ?1 OR sam_key = ?1) ORDER BY guid LIMIT 1"),
                [key],
                row_to_mirrored,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// The DNs of the users other than `guid` whose value for duplicate rule `slot` is `key` (at
    /// most `limit`, by DN), and how many there are in all.
    pub fn holders(
        &self,
        slot: usize,
        key: &str,
        guid: &str,
        limit: usize,
    ) -> Result<(Vec<String>, usize), StateError> {
        let column = KEY_COLUMNS[slot];
        let read = || -> rusqlite::Result<(Vec<String>, usize)> {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT dn, COUNT(*) OVER () FROM dir_objects WHERE {column} = ?1 AND kind = 'user' AND guid <> ?2
                 ORDER BY dn_key LIMIT ?3"
            ))?;
            let mut total = 0;
            let mut dns = Vec::new();
            let rows = stmt
                .query_map(params![key, guid, limit as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (dn, n) = row?;
                total = usize::try_from(n).unwrap_or(0);
                dns.push(dn);
            }
            Ok((dns, total))
        };
        read().map_err(|e| self.sql(e))
    }

    /// Per duplicate rule, the values more than one user holds, read from the key's index alone
    /// (only users have keys, see [`StateStore::mirror_put`]; a row written by an older release
    /// may still give a group one, which only costs the caller a look-up: it checks holders with
    /// [`StateStore::holders`], which counts users).
    pub fn shared_keys(&self) -> Result<[BTreeSet<String>; 3], StateError> {
        let mut out: [BTreeSet<String>; 3] = Default::default();
        for (slot, column) in KEY_COLUMNS.iter().enumerate() {
            out[slot] = self
                .query_strings(
                    &format!("SELECT {column} FROM dir_objects WHERE {column} IS NOT NULL GROUP BY {column} HAVING COUNT(*) > 1"),
                    [],
                )?
                .into_iter()
                .collect();
        }
        Ok(out)
    }

    /// Records validation verdicts; in a delta, a user whose verdict changed makes the groups
    /// holding it and the users it manages dirty (they are mapped from its eligibility).
    pub fn set_verdicts(&mut self, verdicts: &[(String, bool)], delta: bool) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            let mut old = tx.prepare_cached("SELECT status FROM dir_objects WHERE guid = ?1")?;
            let mut set =
                tx.prepare_cached("UPDATE dir_objects SET status = ?2 WHERE guid = ?1 AND status IS NOT ?2")?;
            for (guid, valid) in verdicts {
                let new = if *valid { "valid" } else { "invalid" };
                if delta {
                    let was: Option<Option<String>> = old.query_row([guid], |r| r.get(0)).optional()?;
                    if was.flatten().as_deref() != Some(new) {
                        dirty_neighbours(tx, guid)?;
                    }
                }
                set.execute([guid, new])?;
            }
            Ok(())
        })
    }

    /// The members of each of `groups` in the mirror, with what decides whether the tenant gets
    /// them: (guid, is a group, valid user), in objectGUID order. One query for them all, which
    /// looks the members up in that order: group by group, the members of a page of groups were
    /// spread over the whole mirror, and at 1,000,000 users nearly every look-up read a page of
    /// it from outside SQLite's cache (issue 13).
    pub fn groups_members(&self, groups: &[&str]) -> Result<HashMap<String, Vec<Member>>, StateError> {
        let read = || -> rusqlite::Result<HashMap<String, Vec<Member>>> {
            let mut stmt = self.conn.prepare_cached(
                // A group validated by no run yet (a mirror from an older release) counts as valid.
                "WITH pairs AS MATERIALIZED (
                     SELECT group_guid, member_guid FROM dir_members
                     WHERE group_guid IN (SELECT value FROM json_each(?1)) ORDER BY member_guid)
                 SELECT p.group_guid, o.guid, o.kind = 'group',
                   CASE o.kind WHEN 'group' THEN COALESCE(o.status, 'valid') = 'valid' ELSE COALESCE(o.status = 'valid', 0) END
                 FROM pairs p
                 JOIN dir_objects o INDEXED BY dir_objects_state ON o.guid = p.member_guid
                 WHERE COALESCE(o.status, '') <> 'out'",
            )?;
            let list = serde_json::to_string(groups).expect("strings serialize");
            let mut out: HashMap<String, Vec<Member>> = groups.iter().map(|g| ((*g).to_owned(), Vec::new())).collect();
            let mut rows = stmt.query([list])?;
            while let Some(r) = rows.next()? {
                let group: String = r.get(0)?;
                out.entry(group).or_default().push((r.get(1)?, r.get(2)?, r.get(3)?));
            }
            Ok(out)
        };
        read().map_err(|e| self.sql(e))
    }

    /// Whether `guid` is a valid user in the mirror (a manager the tenant can point to).
    pub fn is_valid_user(&self, guid: &str) -> Result<bool, StateError> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM dir_objects INDEXED BY dir_objects_state
                   WHERE guid = ?1 AND kind = 'user' AND status = 'valid')",
            )
            .and_then(|mut s| s.query_row([guid], |r| r.get(0)))
            .map_err(|e| self.sql(e))
    }

    /// Anchors (active or pending) with no mirror row, or whose row the policy scope took out: deprovisioned per policy. A full sync
    /// looks at every anchor; a delta only at the dirty ones (a mirror row leaves only through
    /// [`StateStore::mirror_remove`], which marks it dirty).
    pub fn anchors_gone(&self, all: bool) -> Result<BTreeSet<String>, StateError> {
        let rows = self.query_strings(
            &format!(
                "SELECT guid FROM anchors WHERE state IN ('active', 'pending')
                   AND NOT EXISTS (SELECT 1 FROM dir_objects o WHERE o.guid = anchors.guid AND {IN_SCOPE}) {}",
                if all { "" } else { "AND guid IN (SELECT guid FROM dirty)" }
            ),
            [],
        )?;
        Ok(rows.into_iter().collect())
    }

    /// How many users the tenant has from this agent (active anchors).
    pub fn active_users(&self) -> Result<usize, StateError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM anchors WHERE kind = 'user' AND state = 'active'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as usize)
            .map_err(|e| self.sql(e))
    }

    /// Quarantined users that left the mirror (deleted or moved out): released.
    pub fn quarantine_gone(&self) -> Result<Vec<String>, StateError> {
        self.query_strings(
            &format!("SELECT guid FROM quarantine WHERE NOT EXISTS (SELECT 1 FROM dir_objects o WHERE o.guid = quarantine.guid AND {IN_SCOPE})"),
            [],
        )
    }

    /// Objects a run must look at again whatever changed: failed writes, pending creates,
    /// users never validated.
    pub fn mark_unsettled_dirty(&mut self) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            tx.execute_batch(
                "INSERT OR IGNORE INTO dirty (guid) SELECT guid FROM failures WHERE guid IN (SELECT guid FROM dir_objects);
                 INSERT OR IGNORE INTO dirty (guid) SELECT guid FROM anchors WHERE state = 'pending'
                   AND guid IN (SELECT guid FROM dir_objects);
                 INSERT OR IGNORE INTO dirty (guid) SELECT guid FROM dir_objects WHERE kind = 'user' AND status IS NULL;",
            )
        })
    }

    /// The resources as last sent, for these guids.
    pub fn bodies_for(&self, guids: &[&str]) -> Result<HashMap<String, serde_json::Value>, StateError> {
        let mut out = HashMap::new();
        let read = |out: &mut HashMap<String, serde_json::Value>| -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare_cached(SENT_BODY)?;
            for guid in guids {
                let body: Option<String> = stmt.query_row([guid], |r| r.get(0)).optional()?;
                if let Some(value) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                    out.insert((*guid).to_owned(), value);
                }
            }
            Ok(())
        };
        read(&mut out).map_err(|e| self.sql(e))?;
        Ok(out)
    }

    /// The userName of the body `guid` was last sent (`Some(None)`: it had none), read without
    /// building the rest; `None` when it was never sent or its body is not a JSON object.
    pub fn sent_user_name(&self, guid: &str) -> Result<Option<Option<serde_json::Value>>, StateError> {
        /// The one attribute read of a body (the others are skipped, not built).
        #[derive(serde::Deserialize)]
        struct Sent {
            #[serde(rename = "userName")]
            user_name: Option<serde_json::Value>,
        }
        let body: Option<String> = self
            .conn
            .prepare_cached(SENT_BODY)
            .and_then(|mut s| s.query_row([guid], |r| r.get(0)).optional())
            .map_err(|e| self.sql(e))?;
        let sent = body.filter(|b| b.starts_with('{')).and_then(|b| serde_json::from_str::<Sent>(&b).ok());
        Ok(sent.map(|s| s.user_name))
    }

    /// The tenant membership last applied, for these groups.
    pub fn members_for(&self, groups: &[&str]) -> Result<HashMap<String, BTreeSet<String>>, StateError> {
        let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
        let read = |out: &mut HashMap<String, BTreeSet<String>>| -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare_cached("SELECT member_guid FROM members WHERE group_guid = ?1")?;
            for g in groups {
                let rows = stmt.query_map([g], |r| r.get::<_, String>(0))?;
                let set = out.entry((*g).to_owned()).or_default();
                for row in rows {
                    set.insert(row?);
                }
            }
            Ok(())
        };
        read(&mut out).map_err(|e| self.sql(e))?;
        Ok(out)
    }

    /// The users that are members of any of `groups` (objectGUIDs), directly or, with
    /// `transitive`, through any chain of groups of the mirror; cycles end (each group once).
    pub fn users_in_groups(&self, groups: &[String], transitive: bool) -> Result<HashSet<String>, StateError> {
        let mut out = HashSet::new();
        let read = |out: &mut HashSet<String>| -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare_cached(if transitive { CLOSURE_USERS } else { DIRECT_USERS })?;
            for g in groups {
                for row in stmt.query_map([g], |r| r.get::<_, String>(0))? {
                    out.insert(row?);
                }
            }
            Ok(())
        };
        read(&mut out).map_err(|e| self.sql(e))?;
        Ok(out)
    }

    /// A group's users for a flattened group: every user reached from `group` through any chain
    /// of groups (synced or not; each group once, so a cycle ends), in the policy's scope, with
    /// whether it is valid — the shape of [`StateStore::groups_members`], never a group.
    pub fn flattened_members(&self, group: &str) -> Result<Vec<Member>, StateError> {
        let read = || -> rusqlite::Result<Vec<Member>> {
            let mut stmt = self.conn.prepare_cached(&format!(
                "WITH RECURSIVE reached(guid) AS (
                   SELECT ?1 UNION
                   SELECT m.member_guid FROM dir_members m JOIN reached r ON m.group_guid = r.guid
                     JOIN dir_objects g INDEXED BY dir_objects_state ON g.guid = m.member_guid AND g.kind = 'group')
                 SELECT DISTINCT o.guid, 0, COALESCE(o.status = 'valid', 0)
                 FROM reached r JOIN dir_members m ON m.group_guid = r.guid
                 JOIN dir_objects o INDEXED BY dir_objects_state ON o.guid = m.member_guid AND o.kind = 'user'
                 WHERE {IN_SCOPE}"
            ))?;
            let rows = stmt.query_map([group], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Records the objects the policy's scope takes out (status `out`); like a verdict, a change
    /// in a delta makes the groups holding it, its reports and its duplicate peers dirty.
    pub fn set_out_of_scope(&mut self, guids: &[String], delta: bool) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            let mut old = tx.prepare_cached("SELECT status FROM dir_objects WHERE guid = ?1")?;
            let mut set =
                tx.prepare_cached("UPDATE dir_objects SET status = 'out' WHERE guid = ?1 AND status IS NOT 'out'")?;
            for guid in guids {
                if delta {
                    let was: Option<Option<String>> = old.query_row([guid], |r| r.get(0)).optional()?;
                    if was.flatten().as_deref() != Some("out") {
                        dirty_neighbours(tx, guid)?;
                    }
                }
                set.execute([guid])?;
            }
            Ok(())
        })
    }

    /// Delta, scope by group: the users whose membership of the scoping groups no longer agrees
    /// with their recorded scope (`in_groups`: the members now) become dirty, so a user removed
    /// from a scoping group (or from a group nested in it) leaves, and one added comes back,
    /// although AD changed only the group.
    pub fn mark_scope_membership_dirty(&mut self, in_groups: &HashSet<String>) -> Result<(), StateError> {
        let rows = {
            let read = || -> rusqlite::Result<Vec<(String, String)>> {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT guid, status FROM dir_objects WHERE kind = 'user' AND status IS NOT NULL",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            read().map_err(|e| self.sql(e))?
        };
        let changed: Vec<String> = rows
            .into_iter()
            .filter(|(guid, status)| (status == "out") == in_groups.contains(guid))
            .map(|(guid, _)| guid)
            .collect();
        self.mirror_sql(|tx| changed.iter().try_for_each(|g| mark_dirty(tx, g)))
    }

    /// Flattened groups, delta: the groups that hold a dirty group, directly or through others,
    /// become dirty too (their users are the dirty group's).
    pub fn mark_parent_groups_dirty(&mut self) -> Result<(), StateError> {
        self.mirror_sql(|tx| {
            tx.execute_batch(
                "WITH RECURSIVE up(guid) AS (
                   SELECT d.guid FROM dirty d JOIN dir_objects o ON o.guid = d.guid AND o.kind = 'group'
                   UNION SELECT m.group_guid FROM dir_members m JOIN up ON m.member_guid = up.guid)
                 INSERT OR IGNORE INTO dirty (guid) SELECT guid FROM up;",
            )
        })
    }
}

/// The users listed by a group (the group's guid is the parameter).
const DIRECT_USERS: &str = "SELECT m.member_guid FROM dir_members m
     JOIN dir_objects o ON o.guid = m.member_guid AND o.kind = 'user' WHERE m.group_guid = ?1";
/// The users reached from a group through any chain of groups; UNION (not UNION ALL) visits each
/// group once, so a cycle of groups ends.
const CLOSURE_USERS: &str = "WITH RECURSIVE reached(guid) AS (
       SELECT ?1 UNION
       SELECT m.member_guid FROM dir_members m JOIN reached r ON m.group_guid = r.guid
         JOIN dir_objects g ON g.guid = m.member_guid AND g.kind = 'group')
     SELECT DISTINCT m.member_guid FROM reached r JOIN dir_members m ON m.group_guid = r.guid
     JOIN dir_objects o ON o.guid = m.member_guid AND o.kind = 'user'";

fn mark_dirty(tx: &Connection, guid: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO dirty (guid) VALUES (?1)")?.execute([guid]).map(|_| ())
}

/// The objects whose tenant form depends on `guid`'s presence or validity: the groups holding
/// it, the users it manages, and the users sharing a duplicate-checked value with it.
fn dirty_neighbours(tx: &Connection, guid: &str) -> rusqlite::Result<()> {
    mark_dirty(tx, guid)?;
    tx.prepare_cached("INSERT OR IGNORE INTO dirty (guid) SELECT group_guid FROM dir_members WHERE member_guid = ?1")?
        .execute([guid])?;
    tx.prepare_cached("INSERT OR IGNORE INTO dirty (guid) SELECT guid FROM dir_objects WHERE manager = ?1")?
        .execute([guid])?;
    for column in KEY_COLUMNS {
        tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO dirty (guid) SELECT o.guid FROM dir_objects o JOIN dir_objects me
               ON me.guid = ?1 AND o.{column} = me.{column}"
        ))?
        .execute([guid])?;
    }
    Ok(())
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    fn guid(id: u8) -> String {
        ObjectGuid([id; 16]).to_string()
    }

    fn dn(id: u8) -> Dn {
        Dn::parse(&format!("CN=o{id},OU=In,DC=x")).unwrap()
    }

    fn object(id: u8, kind: ObjectKind, members: &[u8]) -> DirObject {
        DirObject {
            kind,
            dn: dn(id),
            guid: Some(ObjectGuid([id; 16])),
            sam_account_name: Some(format!("o{id}")),
            members: members.iter().map(|m| dn(*m).normalized()).collect(),
            ..DirObject::default()
        }
    }

    fn empty() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.db"), "2026-05-01T10:00:00Z").unwrap();
        (dir, store)
    }

    /// Users 1..=5; groups: 10 = {1, 11}, 11 = {2, 12}, 12 = {3, 10} (a cycle 10 → 11 → 12 → 10),
    /// 13 = {4}, 14 = {13} (13 is not synced: status `out`).
    fn mirror() -> (tempfile::TempDir, StateStore) {
        let (dir, mut store) = empty();
        let mut objects: Vec<DirObject> = (1..=5).map(|u| object(u, ObjectKind::User, &[])).collect();
        for (g, members) in [(10, &[1, 11][..]), (11, &[2, 12]), (12, &[3, 10]), (13, &[4]), (14, &[13])] {
            objects.push(object(g, ObjectKind::Group, members));
        }
        store.mirror_put(&objects, 1, false, &directory_keys).unwrap();
        store.mirror_resolve_links(false).unwrap();
        let verdicts: Vec<(String, bool)> = [1, 2, 3, 4, 5, 10, 11, 12, 14].iter().map(|i| (guid(*i), true)).collect();
        store.set_verdicts(&verdicts, false).unwrap();
        store.set_out_of_scope(&[guid(13)], false).unwrap();
        (dir, store)
    }

    /// Member lists read replace the mirror's, from either end: a group's `member`, and in a
    /// delta a member's `memberOf`; lists not read again stay.
    #[test]
    fn a_re_read_replaces_member_lists_from_either_end() {
        let (_dir, mut store) = mirror();
        let members = |store: &StateStore, g: u8| -> Vec<String> {
            let mut m: Vec<String> = members(store, g).into_iter().map(|(m, ..)| m).collect();
            m.sort();
            m
        };
        // A full read: group 10 = {1, 11} becomes {1, 5}.
        store.mirror_put(&[object(10, ObjectKind::Group, &[1, 5])], 2, false, &directory_keys).unwrap();
        store.mirror_resolve_links(false).unwrap();
        assert_eq!(members(&store, 10), [guid(1), guid(5)]);
        assert_eq!(members(&store, 11), [guid(2), guid(12)], "a list not read again stays");
        let by_member = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'dir_members_by_member')";
        assert!(store.conn.query_row(by_member, [], |r| r.get::<_, bool>(0)).unwrap(), "built again after a full read");
        // A delta: user 4 is now in 10 and no longer in 13 (from its own end), group 12 = {3}.
        let four = DirObject { member_of: vec![dn(10).normalized()], ..object(4, ObjectKind::User, &[]) };
        store.mirror_put(&[four, object(12, ObjectKind::Group, &[3])], 3, true, &directory_keys).unwrap();
        store.mirror_resolve_links(true).unwrap();
        assert_eq!(members(&store, 10), [guid(1), guid(4), guid(5)]);
        assert_eq!(members(&store, 12), [guid(3)]);
        assert_eq!(members(&store, 13), Vec::<String>::new());
    }

    /// A full read writes an unchanged row's `seen_run` only; what the row says stays exactly as
    /// a rewrite would leave it: the manager from the link read, none without one (also when a
    /// delta set it from the manager's `directReports`), and a second holder of an objectGUID
    /// is still turned away.
    #[test]
    fn a_full_read_of_unchanged_rows_keeps_them_as_a_rewrite_would() {
        let (_dir, mut store) = mirror();
        let managed =
            |id: u8, manager: u8| DirObject { manager: Some(dn(manager)), ..object(id, ObjectKind::User, &[]) };
        let manager = |store: &StateStore, id: u8| store.mirrored(&guid(id)).unwrap().unwrap().manager;
        let full = |store: &mut StateStore, objects: &[DirObject], run: i64| {
            let again = store.mirror_put(objects, run, false, &directory_keys).unwrap();
            store.mirror_resolve_links(false).unwrap();
            again
        };
        let all = |run_objects: Vec<DirObject>| -> Vec<DirObject> {
            let mut objects: Vec<DirObject> = (1..=5).map(|u| object(u, ObjectKind::User, &[])).collect();
            objects.retain(|o| !run_objects.iter().any(|r| r.guid == o.guid));
            objects.extend(run_objects);
            objects
        };
        full(&mut store, &all(vec![managed(1, 2)]), 2);
        assert_eq!(manager(&store, 1), Some(guid(2)));
        // Read again unchanged: the manager stays; user 2, managing nobody it is told of, has none.
        full(&mut store, &all(vec![managed(1, 2)]), 3);
        assert_eq!((manager(&store, 1), manager(&store, 2)), (Some(guid(2)), None));
        // A delta reads user 3, who now manages user 4 (user 4 itself is not read).
        let three = DirObject { direct_reports: vec![dn(4).normalized()], ..object(3, ObjectKind::User, &[]) };
        store.mirror_put(&[three], 4, true, &directory_keys).unwrap();
        store.mirror_resolve_links(true).unwrap();
        assert_eq!(manager(&store, 4), Some(guid(3)));
        // A full read of user 4 as before, without a manager: none, as a rewrite leaves it. User 1's
        // manager, the same DN, is now another object (in the scope): the link finds the new one.
        let mut five = object(5, ObjectKind::User, &[]);
        five.dn = dn(2);
        let mut two = object(2, ObjectKind::User, &[]);
        two.dn = dn(6);
        let objects = [managed(1, 2), two, object(3, ObjectKind::User, &[]), object(4, ObjectKind::User, &[]), five];
        assert!(full(&mut store, &objects, 5).is_empty());
        assert_eq!((manager(&store, 4), manager(&store, 1)), (None, Some(guid(5))));
        assert_eq!(store.mirror_unseen(5).unwrap().len(), 5, "the groups, not read, are unseen; every user is seen");
        // The same objectGUID twice in one read, the second as the first: the second is refused.
        let again = full(&mut store, &[object(3, ObjectKind::User, &[]), object(3, ObjectKind::User, &[])], 6);
        assert_eq!(again, [1]);
    }

    /// Only users have duplicate keys: a group holding a user's sAMAccountName or mail shares
    /// nothing with that user, and two users holding one value do.
    #[test]
    fn only_users_have_duplicate_keys() {
        let (_dir, mut store) = empty();
        let with = |id: u8, kind: ObjectKind, sam: &str, mail: &str| DirObject {
            sam_account_name: Some(sam.into()),
            mail: Some(mail.into()),
            ..object(id, kind, &[])
        };
        let objects = [
            with(1, ObjectKind::User, "ann", "a@x"),
            with(2, ObjectKind::Group, "ann", "a@x"),
            with(3, ObjectKind::User, "bob", "team@x"),
            with(4, ObjectKind::User, "cy", "team@x"),
        ];
        store.mirror_put(&objects, 1, false, &directory_keys).unwrap();
        let [mail, _, sam] = store.shared_keys().unwrap();
        assert_eq!((mail.into_iter().collect::<Vec<_>>(), sam.len()), (vec!["team@x".to_owned()], 0));
        assert_eq!(store.holders(0, "a@x", &guid(1), 10).unwrap(), (vec![], 0));
    }

    /// A full pass reads every object of a kind once, in the table's order (the order written,
    /// not the objectGUIDs'), whatever the page size; a delta's pass reads the dirty ones once, in
    /// objectGUID order. Groups and users are interleaved in the table.
    #[test]
    fn work_pages_read_each_object_once_in_table_order_and_the_dirty_ones_in_guid_order() {
        let (_dir, mut store) = empty();
        let written = [9u8, 3, 40, 7, 1, 30, 5, 2, 20, 8];
        let kind = |id: u8| if id >= 20 { ObjectKind::Group } else { ObjectKind::User };
        let objects: Vec<DirObject> = written.iter().map(|&id| object(id, kind(id), &[])).collect();
        store.mirror_put(&objects, 1, false, &directory_keys).unwrap();
        store.mirror_sql(|tx| [8u8, 1, 40, 5].iter().try_for_each(|&id| mark_dirty(tx, &guid(id)))).unwrap();
        let pass = |k: ObjectKind, all: bool, limit: usize| {
            let (mut seen, mut after) = (Vec::new(), PageEnd::default());
            loop {
                let page = store.work_page(k, all, &after, limit).unwrap();
                let Some(last) = page.last() else { break };
                assert!(page.len() <= limit);
                after = last.page_end();
                seen.extend(page.iter().map(|m| m.guid.clone()));
            }
            seen
        };
        let ids = |ids: &[u8]| ids.iter().map(|&id| guid(id)).collect::<Vec<_>>();
        for limit in [1, 2, 3, 500] {
            assert_eq!(pass(ObjectKind::User, true, limit), ids(&[9, 3, 7, 1, 5, 2, 8]), "limit {limit}");
            assert_eq!(pass(ObjectKind::Group, true, limit), ids(&[40, 30, 20]), "limit {limit}");
            assert_eq!(pass(ObjectKind::User, false, limit), ids(&[1, 5, 8]), "limit {limit}");
            assert_eq!(pass(ObjectKind::Group, false, limit), ids(&[40]), "limit {limit}");
        }
    }

    #[test]
    fn a_rows_attributes_keep_their_text_and_read_back_whole() {
        let full = DirObject {
            sam_account_name: Some("jdoe".into()),
            user_principal_name: Some("jdoe@x".into()),
            given_name: Some("J\u{f6}rg \"J\"".into()),
            sn: Some("Doe".into()),
            mail: Some("j@x".into()),
            display_name: Some("D".into()),
            user_account_control: Some(512),
            cn: Some("cn".into()),
            title: Some("t".into()),
            telephone_number: Some("1".into()),
            department: Some("d".into()),
            employee_number: Some("7".into()),
            defects: vec![Defect::UacSyntax { value: "x".into() }],
            extra: [("employeeType", ["a", "b"])].into_iter().collect(),
            ..object(1, ObjectKind::User, &[])
        };
        let sparse = DirObject { sam_account_name: None, ..object(2, ObjectKind::Group, &[1]) };
        // The bytes of a row (rows outlive releases: a change here is a migration).
        let packed = Attrs::of(&full).pack();
        let hex: String = packed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "017f7f03046a646f65066a646f654078094ac3b6726720224a2203446f65036a4078014402636e017401310164013740\
             08255b7b22646566656374223a227561632d73796e746178222c2276616c7565223a2278227d5d010c656d706c6f7965\
             65547970650201610162"
        );
        // Rows written before the packed form hold JSON: still read, as the same attributes.
        let json = r#"{"sam":"jdoe","upn":"jdoe@x","given":"Jörg \"J\"","sn":"Doe","mail":"j@x","display":"D","uac":512,"cn":"cn","title":"t","phone":"1","department":"d","employee":"7","defects":[{"defect":"uac-syntax","value":"x"}],"extra":{"employeeType":["a","b"]}}"#;
        assert_eq!(Attrs::read(rusqlite::types::ValueRef::Text(json.as_bytes())).unwrap(), Attrs::of(&full));
        let (dir, mut store) = mirror();
        store.mirror_put(&[full.clone(), sparse.clone()], 7, false, &directory_keys).unwrap();
        store.conn.execute("UPDATE dir_objects SET data = ?1 WHERE guid = ?2", params![json, guid(1)]).unwrap();
        for (id, o) in [(1, full), (2, sparse)] {
            let back = store.mirrored(&guid(id)).unwrap().unwrap().object;
            assert_eq!(Attrs::of(&back), Attrs::of(&o));
        }
        drop(dir);
    }

    fn guids(ids: &[u8]) -> HashSet<String> {
        ids.iter().map(|i| guid(*i)).collect()
    }

    #[test]
    fn scoping_groups_direct_or_transitive_and_a_cycle_ends() {
        let (_dir, store) = mirror();
        assert_eq!(store.users_in_groups(&[guid(10)], false).unwrap(), guids(&[1]));
        assert_eq!(store.users_in_groups(&[guid(10)], true).unwrap(), guids(&[1, 2, 3]));
        assert_eq!(store.users_in_groups(&[guid(12)], true).unwrap(), guids(&[1, 2, 3]), "from anywhere in the cycle");
        assert_eq!(store.users_in_groups(&[guid(14)], true).unwrap(), guids(&[4]), "through a group not synced");
        assert_eq!(store.users_in_groups(&[guid(14)], false).unwrap(), guids(&[]));
        assert_eq!(store.users_in_groups(&[guid(13), guid(11)], false).unwrap(), guids(&[2, 4]));
        assert_eq!(store.users_in_groups(&[guid(99)], true).unwrap(), guids(&[]));
    }

    fn members(store: &StateStore, g: u8) -> Vec<Member> {
        store.groups_members(&[&guid(g)]).unwrap().remove(&guid(g)).unwrap()
    }

    fn flat(store: &StateStore, g: u8) -> Vec<Member> {
        let mut m = store.flattened_members(&guid(g)).unwrap();
        m.sort();
        m
    }

    #[test]
    fn flattened_members_are_the_transitive_users_in_scope() {
        let (_dir, mut store) = mirror();
        let all: Vec<(String, bool, bool)> = {
            let mut v: Vec<_> = [1, 2, 3].iter().map(|i| (guid(*i), false, true)).collect();
            v.sort();
            v
        };
        assert_eq!(flat(&store, 10), all, "a cycle of groups ends, and every group in it has the same users");
        assert_eq!(flat(&store, 11), all);
        assert_eq!(flat(&store, 14), vec![(guid(4), false, true)], "a group not synced still gives its users");
        // A user the scope takes out is no member; an invalid one is listed as such.
        store.set_out_of_scope(&[guid(2)], false).unwrap();
        store.set_verdicts(&[(guid(3), false)], false).unwrap();
        assert_eq!(flat(&store, 10), {
            let mut v = vec![(guid(1), false, true), (guid(3), false, false)];
            v.sort();
            v
        });
    }

    #[test]
    fn an_object_out_of_scope_is_no_member_and_its_anchor_is_gone() {
        let (_dir, mut store) = mirror();
        let members = |store: &StateStore, g: u8| {
            let mut m: Vec<String> = members(store, g).into_iter().map(|r| r.0).collect();
            m.sort();
            m
        };
        assert!(members(&store, 14).is_empty(), "the group not synced is no nested member");
        assert_eq!(members(&store, 10).len(), 2);
        let mut batch = crate::store::Batch::default();
        for u in [1, 2] {
            batch.anchor(&guid(u), crate::store::AnchorKind::User, &format!("scim-{u}"), &dn(u).to_string(), "", 1);
        }
        store.commit(&batch, "2026-05-01T10:00:00Z").unwrap();
        assert!(store.anchors_gone(true).unwrap().is_empty());
        store.mirror_sql(|tx| tx.execute_batch("DELETE FROM dirty")).unwrap();
        store.set_out_of_scope(&[guid(1)], true).unwrap();
        assert_eq!(members(&store, 10), [guid(11)]);
        assert_eq!(store.anchors_gone(false).unwrap(), [guid(1)].into_iter().collect(), "a delta sees it leave");
        let dirty = store.query_strings("SELECT guid FROM dirty", []).unwrap();
        assert!(dirty.contains(&guid(10)), "the group that held it is planned again");
        // Back in scope: valid again, and nothing is gone.
        store.set_verdicts(&[(guid(1), true)], true).unwrap();
        assert!(store.anchors_gone(true).unwrap().is_empty());
    }

    #[test]
    fn a_delta_marks_users_whose_group_scope_changed_and_the_groups_above_a_changed_group() {
        let (_dir, mut store) = mirror();
        store.set_out_of_scope(&[guid(5)], false).unwrap();
        store.mirror_sql(|tx| tx.execute_batch("DELETE FROM dirty")).unwrap();
        // In the groups now: 1, 2 and 5 (user 3 left, user 5 joined).
        store.mark_scope_membership_dirty(&guids(&[1, 2, 5])).unwrap();
        let dirty: HashSet<String> = store.query_strings("SELECT guid FROM dirty", []).unwrap().into_iter().collect();
        assert_eq!(dirty, guids(&[3, 4, 5]), "3 and 4 must leave, 5 may come back");
        store.mirror_sql(|tx| tx.execute_batch("DELETE FROM dirty")).unwrap();
        store.mirror_sql(|tx| mark_dirty(tx, &guid(13))).unwrap();
        store.mark_parent_groups_dirty().unwrap();
        let dirty: HashSet<String> = store.query_strings("SELECT guid FROM dirty", []).unwrap().into_iter().collect();
        assert_eq!(dirty, guids(&[13, 14]));
        store.mirror_sql(|tx| mark_dirty(tx, &guid(12))).unwrap();
        store.mark_parent_groups_dirty().unwrap();
        let dirty: HashSet<String> = store.query_strings("SELECT guid FROM dirty", []).unwrap().into_iter().collect();
        assert_eq!(dirty, guids(&[10, 11, 12, 13, 14]), "up through a cycle, which ends");
    }
}
