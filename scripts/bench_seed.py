#!/usr/bin/env python3
"""Bench data for scripts/bench: OU=Bench,DC=example,DC=test with N users and G groups.

    bench_seed.py --users N --groups G --out-dir DIR

    bench_seed.py --users N --groups G --export FILE [--policy-attributes]

Writes DIR/0-ous.ldif, DIR/1-users-a.ldif, DIR/1-users-b.ldif, DIR/2-groups-a.ldif,
DIR/2-groups-b.ldif (fed to ldapadd by scripts/bench, 2 parallel streams) and DIR/model.json.
With --export: one LDIF export of the same directory instead, as `ldapsearch` or ldifde would
write it (the domain object, the OUs, then every user and group with an objectGUID derived from
its index and sAMAccountType), for `ausi ... --source ldif:FILE` (scripts/bench --source ldif).
--policy-attributes adds the attributes the example policies in examples/policies/ read (see
policy_entry), so that `scripts/bench --policy` maps real values.
Deterministic (fixed random seed). Python 3 stdlib only.

Layout: user i sits in OU=P<i % 5>,OU=Bench (so OU=P0 holds N/5 users); groups sit in
OU=Groups,OU=Bench. Group 0 ("Bench Big") has min(5000, N/2) members (users 0..big-1); every
user is in 1-3 groups in all (user i in 1 + i % 3), the others drawn from groups 1..G-1.
Users are valid for ausi (givenName, sn, mail, UPN present and unique), enabled, no password
(userAccountControl 544).
"""
import argparse
import base64
import json
import os
import random
import uuid

BASE_DN = "DC=example,DC=test"
BENCH = "OU=Bench," + BASE_DN
PARTS = 5


def user_dn(i):
    return f"CN=Bench User {i:06d},OU=P{i % PARTS},{BENCH}"


def group_dn(j):
    return f"CN=Bench Big,OU=Groups,{BENCH}" if j == 0 else f"CN=Bench Group {j:04d},OU=Groups,{BENCH}"


def big_size(users):
    return min(5000, users // 2)


def memberships(users, groups):
    """members[j] = list of user indexes of group j."""
    rng = random.Random(4242)
    big = big_size(users)
    members = [[] for _ in range(groups)]
    for i in range(users):
        want = 1 + i % 3
        if i < big:
            members[0].append(i)
            want -= 1
        if groups > 1 and want:
            for j in rng.sample(range(1, groups), min(want, groups - 1)):
                members[j].append(i)
    return members


def user_entry(i):
    return (f"cn: Bench User {i:06d}\nsAMAccountName: bench{i}\nuserPrincipalName: bench{i}@example.test\n"
            f"givenName: Given{i}\nsn: Surname{i}\nmail: bench{i}@example.test\n"
            f"displayName: Given{i} Surname{i}\ntitle: Title {i % 37}\ndepartment: Dept {i % 11}\n"
            f"employeeNumber: E{i:06d}\nuserAccountControl: 544\n")


def policy_entry(i):
    """The attributes the example policies read, beyond Default's: proxyAddresses with an `SMTP:`
    primary address that differs from mail (none for every 10th user, who falls back to mail),
    two `smtp:` secondaries and an X500 address; a cost centre in extensionAttribute1 for 3
    users in 4; employeeType, "Contractor" for every 20th user. Every user stays valid under
    each example (no duplicate primary address, no user with two)."""
    text = f"proxyAddresses: SMTP:Given{i}.Surname{i}@mail.example.test\n" if i % 10 != 9 else ""
    text += (f"proxyAddresses: smtp:bench{i}@example.test\nproxyAddresses: smtp:b{i}@old.example.test\n"
             f"proxyAddresses: X500:/o=Bench/ou=Exchange/cn=Recipients/cn=bench{i}\n")
    if i % 4:
        text += f"extensionAttribute1: CC-{i % 97:04d}\n"
    return text + f"employeeType: {'Contractor' if i % 20 == 0 else 'Employee'}\n"


def guid(kind, k):
    """A stable objectGUID (base64 of the little-endian bytes, as exported) for user/group k."""
    return base64.b64encode(uuid.UUID(int=(kind << 64) | (k + 1)).bytes_le).decode()


def group_guid_text(j):
    """Group j's objectGUID as ausi prints it (the text form of the little-endian bytes)."""
    return str(uuid.UUID(int=(2 << 64) | (j + 1)))


def write_export(path, users, groups, policy_attributes=False):
    """One LDIF export of the whole bench directory; returns the model (as model.json).
    policy_attributes: each user also carries policy_entry's attributes."""
    members = memberships(users, groups)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"version: 1\n\ndn: {BASE_DN}\nobjectClass: top\nobjectClass: domain\nobjectClass: domainDNS\n"
                "dc: example\n\n")
        for k, (dn, ou) in enumerate([(BENCH, "Bench"), (f"OU=Groups,{BENCH}", "Groups")]
                                     + [(f"OU=P{k},{BENCH}", f"P{k}") for k in range(PARTS)]):
            f.write(f"dn: {dn}\nobjectClass: top\nobjectClass: organizationalUnit\nou: {ou}\n"
                    f"objectGUID:: {guid(3, k)}\n\n")
        for i in range(users):
            f.write(f"dn: {user_dn(i)}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n"
                    f"objectClass: user\nobjectGUID:: {guid(1, i)}\nsAMAccountType: 805306368\n"
                    + user_entry(i) + (policy_entry(i) if policy_attributes else "") + "\n")
        for j in range(groups):
            cn = "Bench Big" if j == 0 else f"Bench Group {j:04d}"
            f.write(f"dn: {group_dn(j)}\nobjectClass: top\nobjectClass: group\nobjectGUID:: {guid(2, j)}\n"
                    f"sAMAccountType: 268435456\ncn: {cn}\nsAMAccountName: bench-g{j}\n"
                    + "".join(f"member: {user_dn(i)}\n" for i in members[j]) + "\n")
    return {"users": users, "groups": groups, "big": big_size(users),
            "memberships": sum(len(m) for m in members)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--groups", type=int, required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", help="the ldapadd files for a DC (scripts/bench's default mode)")
    where.add_argument("--export", metavar="FILE", help="one LDIF export of the same directory instead")
    p.add_argument("--policy-attributes", action="store_true",
                   help="--export: add the attributes the example policies read (proxyAddresses, ...)")
    a = p.parse_args()
    if a.export:
        print(json.dumps(write_export(a.export, a.users, a.groups, a.policy_attributes)))
        return
    if a.policy_attributes:
        p.error("--policy-attributes goes with --export (Samba's schema has no extensionAttribute1)")
    os.makedirs(a.out_dir, exist_ok=True)
    out = lambda name: open(os.path.join(a.out_dir, name), "w", encoding="utf-8")  # noqa: E731

    with out("0-ous.ldif") as f:
        for dn, ou in [(BENCH, "Bench"), (f"OU=Groups,{BENCH}", "Groups")] + [
            (f"OU=P{k},{BENCH}", f"P{k}") for k in range(PARTS)
        ]:
            f.write(f"dn: {dn}\nobjectClass: top\nobjectClass: organizationalUnit\nou: {ou}\n\n")

    streams = [out("1-users-a.ldif"), out("1-users-b.ldif")]
    for i in range(a.users):
        streams[i % 2].write(
            f"dn: {user_dn(i)}\n"
            "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n"
            + user_entry(i) + "\n"
        )
    for s in streams:
        s.close()

    members = memberships(a.users, a.groups)
    streams = [out("2-groups-a.ldif"), out("2-groups-b.ldif")]
    for j in range(a.groups):
        cn = "Bench Big" if j == 0 else f"Bench Group {j:04d}"
        text = f"dn: {group_dn(j)}\nobjectClass: top\nobjectClass: group\ncn: {cn}\nsAMAccountName: bench-g{j}\n"
        text += "".join(f"member: {user_dn(i)}\n" for i in members[j])
        # the big group alone in stream a, the rest alternating
        streams[0 if j == 0 else (j % 2)].write(text + "\n")
    for s in streams:
        s.close()

    with out("model.json") as f:
        json.dump({"users": a.users, "groups": a.groups, "big": big_size(a.users),
                   "memberships": sum(len(m) for m in members)}, f)


if __name__ == "__main__":
    main()
