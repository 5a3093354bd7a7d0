#!/usr/bin/env python3
r"""Generate the seed data of the ausi test directory (EXAMPLE.TEST, DC=example,DC=test).

Usage: seed_directory.py --out-dir DIR
Writes DIR/seed.ldif (fed to ldapadd by scripts/testbed) and DIR/expected.json (the model the
integration tests compare against). Python 3 stdlib only. Deterministic: fixed random seed, no
timestamps, so the same script always writes byte-identical files (scripts/testbed keys its
snapshot cache on this file's hash).

The directory
=============
OUs (depth = RDNs below DC=example,DC=test; users and groups are direct counts):

    OU=Corp                                        depth 1    60 users
      OU=Sales                                     depth 2   260 users
        OU=EMEA                                    depth 3   120 users
        OU=Empty                                   depth 3   nothing at all (empty OU)
      OU=Engineering                               depth 2   150 users, 1 group (Eng Leads)
        OU=Backend                                 depth 3   460 users
        OU=Frontend                                depth 3   360 users
      OU=Research\, Development                    depth 2   220 users (an OU name with a comma)
    OU=Groups                                      depth 1   10 groups, no users
    OU=Partners                                    depth 1    70 users (sibling tree, not selected
      OU=Vendors                                   depth 2    90 users  in tests)
    CN=Users (default container, not an OU)                   40 users

1,830 seeded users in all (1,630 under OU=Corp). All are objectClass top/person/
organizationalPerson/user (sAMAccountType 805306368), created WITHOUT passwords:
userAccountControl 544 (enabled) or 546 (disabled, ~12 %, never a user with a defect).
Names are deterministic and include unicode (Zoë, Łukasz, José, Søren, 王芳, Ольга, Müller, ...),
apostrophes (O'Brien; the mail local part keeps the apostrophe, which RFC 5322 allows), one
non-ASCII sAMAccountName, and CNs that need DN escaping: `Doe\, John`, `Anna\+Lee Park`,
`\#1 Fan` (leading #), `Trailing Space\ ` (trailing blank), `\ Leading Space`,
`Bob \"The Builder\" Stone`, `Ann \<Admin\> Lee`, `Back\\Slash`, and `Semi\3Bcolon Eq\3Dual`
(Samba returns `;` and `=` hex-escaped). DNs in expected.json are exactly as the DC returns them
(Samba's ldb escaping: `,+"\<>#` and leading/trailing blanks as `\c`, `;=` CR LF as `\XX`,
non-ASCII raw UTF-8).

Defects (rule ids used in expected.json `problems`, sorted alphabetically):
  givenName.required / sn.required / mail.required / userPrincipalName.required:
      attribute absent, or present but only blanks (a blank givenName "   ", a blank sn " " and
      a blank mail "  " are seeded). A missing/blank value is never also a syntax problem.
  mail.syntax: present, non-blank, not `local@domain` with local = RFC 5322 dot-atom
      (atext incl. ' and +, no leading/trailing/double dot) and domain = >= 2 labels of
      [A-Za-z0-9-] (no empty label, no label starting/ending with '-', no trailing dot).
      Seeded: no-at-sign.example.test, two@@example.test, trailing.dot@example.test.,
      @example.test, dots..double@example.test.
  userPrincipalName.syntax: same check as mail. Seeded: noatsign, nodomain@, x@y@example.test.
  mail.duplicate: two users whose mails are equal case-insensitively (both users carry it).
      Two pairs: one across OU=Backend and OU=Partners, one inside OU=Sales.
  userPrincipalName.duplicate: NOT seeded - Samba 4.17 refuses it (also in different case):
      `0000202F: samldb: userPrincipalName 'X' is already in use` (constraintViolation 19).
  sAMAccountName.duplicate: NOT seeded - Samba refuses it (case-insensitively):
      `00002071: samldb: samAccountName 'X' already in use!` (entryAlreadyExists 68).
  32 users carry defects, some several. Defective users sit at every depth, in OU=Partners and in
  CN=Users. Every other user is valid: givenName, sn, mail, UPN present, well-formed, unique
  case-insensitively. Problems are computed by a rule engine over the model below and checked
  against the defects each user was built with.

Non-users (must never be taken for users), listed in expected.json `non_users`:
  computers CN=WS001,CN=Computers and CN=SRV-APP01,OU=Corp (objectClass computer, which is a
  subclass of user: sAMAccountType 805306369); contacts CN=External Contact,OU=Corp and
  CN=Vendor Rep,OU=Backend,OU=Engineering,OU=Corp (objectClass contact, with givenName/sn/mail).
  The DC's own computer account CN=DC1,OU=Domain Controllers exists too (built in, not listed).

Groups (global security, groupType -2147483646), in OU=Groups unless said otherwise:
  All Staff (1,600 members: more than the 1,500 of one range; the LDIF adds it with 1,000
  members and then a `changetype: modify` adds the rest), Sales Team, Backend Devs,
  Frontend Devs, Eng Leads (in OU=Engineering), Engineers (nested: has Backend Devs,
  Frontend Devs, Eng Leads as members), R&D Staff\, All (a CN with a comma), Partner Access,
  Everyone Nested (has All Staff, Engineers, Partner Access: nesting three deep), Mixed Members
  (users + a contact + a computer as members), Empty Group (no members).
  expected.json `members` = the direct `member` values (users, groups, and the non-users in
  Mixed Members), DNs as the DC returns them; order is not significant.

Not in expected.json: the built-in accounts (Administrator, Guest, krbtgt) and the bind account
CN=svc-ausi,CN=Users (created by scripts/testbed), although they are users in CN=Users; and
the built-in containers/OUs (OU=Domain Controllers, CN=Computers, ...). `ous` lists only the
seeded OUs; users_subtree/groups_subtree count the OU and everything below it.

expected.json shape:
  {"base_dn": "DC=example,DC=test",
   "ous": [{"dn", "name", "depth", "users_direct", "groups_direct", "users_subtree",
            "groups_subtree"}],                      parents before children
   "users": [{"dn", "sam", "upn"|null, "mail"|null, "given_name"|null, "sn"|null,
              "disabled", "problems": [rule ids]}],  every seeded user, LDIF order
   "groups": [{"dn", "sam", "members": [dn]}],
   "non_users": [dn]}
"""

import argparse
import base64
import json
import os
import random
import re
import sys

BASE_DN = "DC=example,DC=test"
DOMAIN = "example.test"
SEED = 20240611

UAC_ENABLED = 544  # NORMAL_ACCOUNT | PASSWD_NOTREQD
UAC_DISABLED = 546  # + ACCOUNTDISABLE
GROUP_TYPE_GLOBAL_SECURITY = -2147483646
BIG_GROUP_SIZE = 1600
MEMBERS_PER_OPERATION = 1000  # the big group is written as an add plus modify operations

RULE_ORDER = (  # every rule id that expected.json may use
    "givenName.required", "sn.required", "mail.required", "userPrincipalName.required",
    "mail.syntax", "userPrincipalName.syntax", "mail.duplicate",
    "userPrincipalName.duplicate", "sAMAccountName.duplicate",
)

# (display form, ASCII form used for sAMAccountName / mail)
GIVEN_NAMES = [
    ("Alice", "alice"), ("Bob", "bob"), ("Carol", "carol"), ("David", "david"),
    ("Emma", "emma"), ("Frank", "frank"), ("Grace", "grace"), ("Henry", "henry"),
    ("Isabel", "isabel"), ("Jack", "jack"), ("Karen", "karen"), ("Liam", "liam"),
    ("Mia", "mia"), ("Noah", "noah"), ("Olivia", "olivia"), ("Paul", "paul"),
    ("Quinn", "quinn"), ("Rosa", "rosa"), ("Samuel", "samuel"), ("Tina", "tina"),
    ("Uma", "uma"), ("Victor", "victor"), ("Wendy", "wendy"), ("Xavier", "xavier"),
    ("Yara", "yara"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("José", "jose"),
    ("Søren", "soren"), ("Ольга", "olga"), ("Chloé", "chloe"), ("Björn", "bjorn"),
    ("Siobhán", "siobhan"), ("Ahmet", "ahmet"), ("Ingrid", "ingrid"), ("Mateo", "mateo"),
]
SURNAMES = [
    ("Smith", "smith"), ("Jones", "jones"), ("O'Brien", "o'brien"), ("Müller", "muller"),
    ("García", "garcia"), ("Nowak", "nowak"), ("Andersen", "andersen"), ("Dubois", "dubois"),
    ("Kowalski", "kowalski"), ("Nakamura", "nakamura"), ("Rossi", "rossi"),
    ("Иванова", "ivanova"), ("Fernández", "fernandez"), ("Brown", "brown"),
    ("Taylor", "taylor"), ("Wilson", "wilson"), ("Lefèvre", "lefevre"), ("Jensen", "jensen"),
    ("Novák", "novak"), ("Yılmaz", "yilmaz"), ("D'Angelo", "d'angelo"), ("Clarke", "clarke"),
    ("Schmidt", "schmidt"), ("Costa", "costa"), ("Walker", "walker"), ("Hughes", "hughes"),
    ("Larsen", "larsen"), ("Moreau", "moreau"), ("Khan", "khan"), ("Patel", "patel"),
]
TITLES = ["Engineer", "Analyst", "Manager", "Consultant", "Specialist", "Associate", "Director"]

# OU tree: (rdn value, parent key or None, number of generated users)
OU_TREE = [
    ("Corp", None, 60),
    ("Sales", "Corp", 260),
    ("EMEA", "Corp/Sales", 120),
    ("Empty", "Corp/Sales", 0),
    ("Engineering", "Corp", 150),
    ("Backend", "Corp/Engineering", 460),
    ("Frontend", "Corp/Engineering", 360),
    ("Research, Development", "Corp", 220),
    ("Groups", None, 0),
    ("Partners", None, 70),
    ("Vendors", "Partners", 90),
]
USERS_CONTAINER = "CN=Users," + BASE_DN
USERS_CONTAINER_COUNT = 40

# Special users: (container key, given, sn, mail, upn, cn override, sam override, defects).
# AUTO means "the normal generated value"; None means "attribute absent". `defects` is what the
# user was built to carry; the rule engine (compute_problems) must find exactly that.
AUTO = object()
GN, SN, MR, UR = "givenName.required", "sn.required", "mail.required", "userPrincipalName.required"
MS, US, MD = "mail.syntax", "userPrincipalName.syntax", "mail.duplicate"
SPECIAL_USERS = [
    # CNs that need DN escaping, unicode, apostrophes (all valid users)
    ("Corp/Research, Development", "John", "Doe", AUTO, AUTO, "Doe, John", None, []),
    ("Corp/Engineering/Frontend", "Anna", "Park", AUTO, AUTO, "Anna+Lee Park", None, []),
    ("Corp", "Fan", "Number", AUTO, AUTO, "#1 Fan", None, []),
    ("Corp/Sales", "Trailing", "Space", AUTO, AUTO, "Trailing Space ", None, []),
    ("users", "Leading", "Space", AUTO, AUTO, " Leading Space", None, []),
    ("Corp/Engineering/Backend", "Bob", "Stone", AUTO, AUTO, 'Bob "The Builder" Stone', None, []),
    ("Corp/Engineering", "Ann", "Lee", AUTO, AUTO, "Ann <Admin> Lee", None, []),
    ("users", "Back", "Slash", AUTO, AUTO, "Back\\Slash", None, []),
    ("Corp/Sales/EMEA", "Semi", "Colon", AUTO, AUTO, "Semi;colon Eq=ual", None, []),
    ("Corp/Sales/EMEA", "芳", "王", AUTO, AUTO, None, None, []),
    ("Partners", "Ольга", "Иванова", AUTO, AUTO, None, None, []),
    ("Corp/Engineering/Backend", "Søren", "Kierkegaard", AUTO, "soren.k@example.test", None,
     "søren.k", []),
    ("Corp/Research, Development", "Liam", "O'Brien", AUTO, AUTO, None, None, []),
    ("Corp/Engineering/Frontend", "Zoë", "Łukasz-José", AUTO, AUTO, None, None, []),
    # missing or blank givenName
    ("Corp/Engineering/Backend", None, "Nogiven", AUTO, AUTO, None, None, [GN]),
    ("Partners", None, "Partnerless", AUTO, AUTO, None, None, [GN]),
    ("users", None, "Anonymous", AUTO, AUTO, None, None, [GN]),
    ("Corp/Sales", None, "Seller", AUTO, AUTO, None, None, [GN]),
    ("Corp/Sales/EMEA", "   ", "Blankgiven", AUTO, AUTO, None, None, [GN]),
    # missing or blank sn
    ("Corp/Engineering/Frontend", "Nosur", None, AUTO, AUTO, None, None, [SN]),
    ("Partners/Vendors", "Vendo", None, AUTO, AUTO, None, None, [SN]),
    ("Corp", "Cher", None, AUTO, AUTO, None, None, [SN]),
    ("Corp/Research, Development", "Blanksur", " ", AUTO, AUTO, None, None, [SN]),
    # missing or blank mail
    ("Corp/Engineering/Backend", "Nomail", "Backend", None, AUTO, None, None, [MR]),
    ("Corp/Sales", "Nomail", "Sales", None, AUTO, None, None, [MR]),
    ("Partners", "Nomail", "Partner", None, AUTO, None, None, [MR]),
    ("users", "Nomail", "Default", None, AUTO, None, None, [MR]),
    ("Corp/Engineering/Frontend", "Blankmail", "Frontend", "  ", AUTO, None, None, [MR]),
    # missing userPrincipalName
    ("Corp/Engineering", "Noupn", "Engineering", AUTO, None, None, None, [UR]),
    ("Partners/Vendors", "Noupn", "Vendor", AUTO, None, None, None, [UR]),
    ("users", "Noupn", "Default", AUTO, None, None, None, [UR]),
    # invalid mail syntax
    ("Corp/Sales", "Bad", "Mailone", "no-at-sign.example.test", AUTO, None, None, [MS]),
    ("Corp/Engineering/Backend", "Bad", "Mailtwo", "two@@example.test", AUTO, None, None, [MS]),
    ("Partners", "Bad", "Mailthree", "trailing.dot@example.test.", AUTO, None, None, [MS]),
    ("Corp/Research, Development", "Bad", "Mailfour", "@example.test", AUTO, None, None, [MS]),
    ("Corp/Sales/EMEA", "Bad", "Mailfive", "dots..double@example.test", AUTO, None, None, [MS]),
    # invalid userPrincipalName syntax
    ("Corp/Engineering/Frontend", "Bad", "Upnone", AUTO, "noatsign", None, None, [US]),
    ("Partners/Vendors", "Bad", "Upntwo", AUTO, "nodomain@", None, None, [US]),
    ("Corp", "Bad", "Upnthree", AUTO, "x@y@example.test", None, None, [US]),
    # duplicate mails in different case (both users of a pair are problems)
    ("Corp/Engineering/Backend", "Dup", "Mailone", "Dup.Mail@example.test", AUTO, None, None, [MD]),
    ("Partners", "Dup", "Mailtwo", "dup.mail@EXAMPLE.TEST", AUTO, None, None, [MD]),
    ("Corp/Sales", "Twin", "Alpha", "twin.mail@example.test", AUTO, None, None, [MD]),
    ("Corp/Sales", "Twin", "Beta", "TWIN.MAIL@example.test", AUTO, None, None, [MD]),
    # several defects at once
    ("Corp/Engineering/Backend", None, "Multi", None, AUTO, None, None, [GN, MR]),
    ("Partners/Vendors", "Multi", None, "bad@@vendor.example.test", "also@bad@", None, None,
     [SN, MS, US]),
    ("users", "   ", " ", "  ", None, None, None, [GN, SN, MR, UR]),
]

LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
ADDR_RE = re.compile(
    r"^" + LOCAL_ATOM + r"(?:\." + LOCAL_ATOM + r")*@" + DOMAIN_LABEL + r"(?:\." + DOMAIN_LABEL + r")+$"
)


def escape_rdn_value(value):
    """Escape an RDN value exactly like Samba's ldb_dn_escape_internal (lib/ldb/common/ldb_dn.c)."""
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch == " ":
            out.append("\\ " if i in (0, last) else " ")
        elif ch in '#,+"\\<>':
            out.append("\\" + ch)
        elif ch in ";=\r\n\0":
            out.append("\\%02X" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def ldif_line(attr, value):
    """One LDIF attribute line; base64 when RFC 2849 SAFE-STRING rules require it."""
    if isinstance(value, int):
        value = str(value)
    unsafe = (
        value == ""
        or any(ord(c) > 126 or c in "\0\r\n" for c in value)
        or value[0] in " :<"
        or value[-1] == " "
    )
    if unsafe:
        return "%s:: %s" % (attr, base64.b64encode(value.encode("utf-8")).decode("ascii"))
    return "%s: %s" % (attr, value)


def blank(value):
    return value is None or value.strip() == ""


def addr_ok(value):
    return bool(ADDR_RE.match(value))


class Model:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.ous = []  # dicts: key, dn, name, depth, parent
        self.ou_by_key = {}
        self.users = []
        self.groups = []
        self.non_users = []  # dicts: dn, ldif lines
        self.used_sam = {"administrator", "guest", "krbtgt", "svc-ausi"}
        self.used_mail = set()
        self.used_cn = {}  # container dn -> set of lower-case cn

    # ---------------------------------------------------------------- containers
    def build_ous(self):
        for name, parent, _count in OU_TREE:
            parent_ou = self.ou_by_key[parent] if parent else None
            key = (parent + "/" + name) if parent else name
            parent_dn = parent_ou["dn"] if parent_ou else BASE_DN
            ou = {
                "key": key,
                "dn": "OU=%s,%s" % (escape_rdn_value(name), parent_dn),
                "name": name,
                "depth": (parent_ou["depth"] + 1) if parent_ou else 1,
                "parent": parent_ou["key"] if parent_ou else None,
            }
            self.ous.append(ou)
            self.ou_by_key[key] = ou

    def container_dn(self, key):
        return USERS_CONTAINER if key == "users" else self.ou_by_key[key]["dn"]

    # ---------------------------------------------------------------- users
    def unique_cn(self, container, cn):
        taken = self.used_cn.setdefault(container, set())
        candidate, n = cn, 2
        while candidate.lower() in taken:
            candidate = "%s %d" % (cn, n)
            n += 1
        taken.add(candidate.lower())
        return candidate

    def unique_sam(self, base):
        base = re.sub(r"[^a-z0-9.\u00c0-\uffff]", "", base.lower())[:20] or "user"
        candidate, n = base, 2
        while candidate.lower() in self.used_sam:
            suffix = str(n)
            candidate = base[: 20 - len(suffix)] + suffix
            n += 1
        self.used_sam.add(candidate.lower())
        return candidate

    def unique_mail(self, local):
        local = re.sub(r"[^a-z0-9.'-]", "", local.lower())
        candidate, n = local, 2
        while ("%s@%s" % (candidate, DOMAIN)).lower() in self.used_mail:
            candidate = "%s%d" % (local, n)
            n += 1
        mail = "%s@%s" % (candidate, DOMAIN)
        self.used_mail.add(mail.lower())
        return mail

    @staticmethod
    def ascii_of(value, table):
        for display, ascii_form in table:
            if display == value:
                return ascii_form
        return re.sub(r"[^a-z0-9']", "", value.lower()) or "x"

    def add_user(self, container_key, given, sn, mail=AUTO, upn=AUTO, cn=None, sam=None,
                 disabled=False, title=None, defects=()):
        container = self.container_dn(container_key)
        g_ascii = self.ascii_of(given, GIVEN_NAMES) if not blank(given) else "nogiven"
        s_ascii = self.ascii_of(sn, SURNAMES) if not blank(sn) else "nosn"
        if cn is None:
            if given and sn and all(ord(c) > 0x2E7F for c in given + sn):
                cn = sn + given  # CJK order: family name first, no blank
            else:
                cn = " ".join(p for p in (given, sn) if not blank(p)) or "Blank User"
        cn = self.unique_cn(container, cn)
        sam = self.unique_sam(sam if sam else g_ascii[0] + s_ascii.replace("'", ""))
        if mail is AUTO:
            mail = self.unique_mail("%s.%s" % (g_ascii, s_ascii))
        elif mail is not None:
            self.used_mail.add(mail.lower())
        if upn is AUTO:
            upn = "%s@%s" % (sam, DOMAIN)
        user = {
            "dn": "CN=%s,%s" % (escape_rdn_value(cn), container),
            "container": container,
            "sam": sam,
            "upn": upn,
            "mail": mail,
            "given_name": given,
            "sn": sn,
            "disabled": disabled,
            "display_name": cn.strip(),
            "title": title,
            "department": container_key.rsplit("/", 1)[-1] if container_key != "users" else None,
            "defects": list(defects),
        }
        self.users.append(user)
        return user

    def build_users(self):
        # Special users first (their names must not be taken by generated ones).
        specials = []
        for key, given, sn, mail, upn, cn, sam, defects in SPECIAL_USERS:
            specials.append(self.add_user(key, given, sn, mail, upn, cn, sam, title="Specialist",
                                          defects=defects))
        by_container = {}
        for u in specials:
            by_container.setdefault(u["container"], 0)
            by_container[u["container"]] += 1
        plan = [(ou["key"], count) for (name, parent, count), ou in zip(OU_TREE, self.ous)]
        plan.append(("users", USERS_CONTAINER_COUNT))
        for key, count in plan:
            missing = count - by_container.get(self.container_dn(key), 0)
            for _ in range(max(missing, 0)):
                given = self.rng.choice(GIVEN_NAMES)[0]
                sn = self.rng.choice(SURNAMES)[0]
                disabled = self.rng.random() < 0.12
                self.add_user(key, given, sn, disabled=disabled, title=self.rng.choice(TITLES))
        # Keep LDIF order stable and readable: by container (in OU order), then creation order.
        order = {ou["dn"]: i for i, ou in enumerate(self.ous)}
        order[USERS_CONTAINER] = len(order)
        self.users.sort(key=lambda u: order[u["container"]])  # stable sort

    # ---------------------------------------------------------------- problems
    def compute_problems(self):
        for u in self.users:
            u["problems"] = set()
            for field, rule in (("given_name", "givenName.required"), ("sn", "sn.required"),
                                ("mail", "mail.required"), ("upn", "userPrincipalName.required")):
                if blank(u[field]):
                    u["problems"].add(rule)
            for field, rule in (("mail", "mail.syntax"), ("upn", "userPrincipalName.syntax")):
                if not blank(u[field]) and not addr_ok(u[field].strip()):
                    u["problems"].add(rule)
        for field, rule in (("mail", "mail.duplicate"), ("upn", "userPrincipalName.duplicate"),
                            ("sam", "sAMAccountName.duplicate")):
            seen = {}
            for u in self.users:
                if not blank(u[field]):
                    seen.setdefault(u[field].strip().lower(), []).append(u)
            for same in seen.values():
                if len(same) > 1:
                    for u in same:
                        u["problems"].add(rule)
        for u in self.users:
            u["problems"] = sorted(u["problems"])
            assert set(u["problems"]) <= set(RULE_ORDER), u["problems"]
            if u["problems"] and u["disabled"]:
                raise SystemExit("internal error: a disabled user has defects: " + u["dn"])

    def check_defects(self):
        """The rule engine must find exactly the defects each user was built with."""
        for u in self.users:
            if u["problems"] != sorted(u["defects"]):
                raise SystemExit("internal error: %s: computed %s, built with %s"
                                 % (u["dn"], u["problems"], sorted(u["defects"])))
        return sum(1 for u in self.users if u["problems"])

    # ---------------------------------------------------------------- groups & non-users
    def add_group(self, container_dn, cn, sam, members):
        group = {"dn": "CN=%s,%s" % (escape_rdn_value(cn), container_dn), "sam": sam,
                 "cn": cn, "members": list(members), "container": container_dn}
        self.groups.append(group)
        return group

    def build_non_users(self):
        corp = self.ou_by_key["Corp"]["dn"]
        backend = self.ou_by_key["Corp/Engineering/Backend"]["dn"]
        for cn, container, sam in (("WS001", "CN=Computers," + BASE_DN, "WS001$"),
                                   ("SRV-APP01", corp, "SRV-APP01$")):
            self.used_sam.add(sam.lower())
            self.non_users.append({
                "dn": "CN=%s,%s" % (cn, container),
                "lines": ["objectClass: top", "objectClass: computer", "sAMAccountName: " + sam,
                          "userAccountControl: 4096", "dNSHostName: %s.%s" % (cn.lower(), DOMAIN)],
            })
        for cn, container, given, sn, mail in (
                ("External Contact", corp, "External", "Contact", "external.contact@partner.example.test"),
                ("Vendor Rep", backend, "Vendor", "Rep", "vendor.rep@vendor.example.test")):
            self.non_users.append({
                "dn": "CN=%s,%s" % (cn, container),
                "lines": ["objectClass: top", "objectClass: contact", ldif_line("givenName", given),
                          ldif_line("sn", sn), ldif_line("mail", mail)],
            })

    def build_groups(self):
        groups_ou = self.ou_by_key["Groups"]["dn"]
        eng_ou = self.ou_by_key["Corp/Engineering"]["dn"]

        def users_in(*keys, subtree=False):
            dns = [self.container_dn(k) for k in keys]
            out = []
            for u in self.users:
                if any(u["container"] == d or (subtree and u["container"].endswith("," + d))
                       for d in dns):
                    out.append(u["dn"])
            return out

        corp_users = users_in("Corp", subtree=True)
        assert len(corp_users) >= BIG_GROUP_SIZE
        self.add_group(groups_ou, "All Staff", "all-staff", corp_users[:BIG_GROUP_SIZE])
        self.add_group(groups_ou, "Sales Team", "sales-team", users_in("Corp/Sales", "Corp/Sales/EMEA"))
        backend = self.add_group(groups_ou, "Backend Devs", "backend-devs",
                                 users_in("Corp/Engineering/Backend"))
        frontend = self.add_group(groups_ou, "Frontend Devs", "frontend-devs",
                                  users_in("Corp/Engineering/Frontend"))
        leads = self.add_group(eng_ou, "Eng Leads", "eng-leads",
                               users_in("Corp/Engineering")[:3]
                               + users_in("Corp/Engineering/Backend")[-2:]
                               + users_in("users")[-1:])
        engineers = self.add_group(groups_ou, "Engineers", "engineers",
                                   [backend["dn"], frontend["dn"], leads["dn"]]
                                   + users_in("Corp/Engineering")[:20])
        self.add_group(groups_ou, "R&D Staff, All", "rnd-staff-all",
                       users_in("Corp/Research, Development"))
        partners = self.add_group(groups_ou, "Partner Access", "partner-access",
                                  users_in("Partners", subtree=True))
        self.add_group(groups_ou, "Everyone Nested", "everyone-nested",
                       [self.groups[0]["dn"], engineers["dn"], partners["dn"]])
        self.add_group(groups_ou, "Mixed Members", "mixed-members",
                       users_in("users")[:2] + users_in("Corp/Sales")[:2]
                       + [self.non_users[0]["dn"], self.non_users[2]["dn"]])
        self.add_group(groups_ou, "Empty Group", "empty-group", [])
        # members must exist before the group that lists them
        seen = set()
        for g in self.groups:
            for m in g["members"]:
                if m.startswith("CN=") and any(m == h["dn"] for h in self.groups):
                    assert m in seen, "group %s listed before its member %s" % (m, g["dn"])
            seen.add(g["dn"])

    # ---------------------------------------------------------------- output
    def ou_counts(self):
        out = []
        for ou in self.ous:
            d = ou["dn"]
            def direct(items):
                return sum(1 for x in items if x["container"] == d)
            def subtree(items):
                return sum(1 for x in items if x["container"] == d or x["container"].endswith("," + d))
            out.append({
                "dn": d, "name": ou["name"], "depth": ou["depth"],
                "users_direct": direct(self.users), "groups_direct": direct(self.groups),
                "users_subtree": subtree(self.users), "groups_subtree": subtree(self.groups),
            })
        return out

    def ldif(self):
        records = []
        for ou in self.ous:
            records.append([ldif_line("dn", ou["dn"]), "objectClass: top",
                            "objectClass: organizationalUnit", ldif_line("ou", ou["name"])])
        for u in self.users:
            lines = [ldif_line("dn", u["dn"]), "objectClass: top", "objectClass: person",
                     "objectClass: organizationalPerson", "objectClass: user",
                     ldif_line("sAMAccountName", u["sam"])]
            for attr, key in (("givenName", "given_name"), ("sn", "sn"), ("mail", "mail"),
                              ("userPrincipalName", "upn"), ("displayName", "display_name"),
                              ("title", "title"), ("department", "department")):
                if u[key] is not None:
                    lines.append(ldif_line(attr, u[key]))
            lines.append("userAccountControl: %d" % (UAC_DISABLED if u["disabled"] else UAC_ENABLED))
            records.append(lines)
        for n in self.non_users:
            records.append([ldif_line("dn", n["dn"])] + n["lines"])
        for g in self.groups:
            first = g["members"][:MEMBERS_PER_OPERATION]
            records.append([ldif_line("dn", g["dn"]), "objectClass: top", "objectClass: group",
                            ldif_line("sAMAccountName", g["sam"]),
                            "groupType: %d" % GROUP_TYPE_GLOBAL_SECURITY,
                            ldif_line("description", "Seeded test group " + g["cn"])]
                           + [ldif_line("member", m) for m in first])
            rest = g["members"][MEMBERS_PER_OPERATION:]
            while rest:
                chunk, rest = rest[:MEMBERS_PER_OPERATION], rest[MEMBERS_PER_OPERATION:]
                records.append([ldif_line("dn", g["dn"]), "changetype: modify", "add: member"]
                               + [ldif_line("member", m) for m in chunk] + ["-"])
        header = "# seed data for the ausi testbed, generated by scripts/seed_directory.py\n"
        return header + "\n" + "\n\n".join("\n".join(r) for r in records) + "\n"

    def expected(self):
        return {
            "base_dn": BASE_DN,
            "ous": self.ou_counts(),
            "users": [{"dn": u["dn"], "sam": u["sam"], "upn": u["upn"], "mail": u["mail"],
                       "given_name": u["given_name"], "sn": u["sn"], "disabled": u["disabled"],
                       "problems": u["problems"]} for u in self.users],
            "groups": [{"dn": g["dn"], "sam": g["sam"], "members": g["members"]} for g in self.groups],
            "non_users": [n["dn"] for n in self.non_users],
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out-dir", required=True, help="where to write seed.ldif and expected.json")
    args = parser.parse_args(argv)

    model = Model()
    model.build_ous()
    model.build_users()
    model.compute_problems()
    n_problem = model.check_defects()
    model.build_non_users()
    model.build_groups()

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "seed.ldif"), "w", encoding="utf-8", newline="\n") as f:
        f.write(model.ldif())
    with open(os.path.join(args.out_dir, "expected.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(model.expected(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("seed_directory: %d OUs, %d users (%d with problems, %d disabled), %d groups, %d non-users"
          % (len(model.ous), len(model.users), n_problem, sum(u["disabled"] for u in model.users),
             len(model.groups), len(model.non_users)), file=sys.stderr)


if __name__ == "__main__":
    main()
