# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ausi_global_optspecs
    string join \n c/config= o/output= v/verbose q/quiet log-format= log-file= h/help V/version
end

function __fish_ausi_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ausi_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ausi_using_subcommand
    set -l cmd (__fish_ausi_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ausi -n "__fish_ausi_needs_command" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_needs_command" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_needs_command" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_needs_command" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_needs_command" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_needs_command" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_needs_command" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "register" -d 'Register this agent with the identity tenant (home realm, agent name, access token)'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "install-service" -d 'Install the scheduled task (Windows) or systemd timer (Linux) that runs the sync unattended'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "list-ous" -d 'List the Organizational Units and default containers, with user and group counts'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "select-ous" -d 'Choose which OUs are synchronised (and which sub-trees inside them are left out)'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "validate" -d 'Check every user in scope for the attributes the tenant needs'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "sync" -d 'Synchronise users, groups and OUs into the tenant (incremental unless --full)'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "password-push" -d 'Write passwords changed in the tenant (or given here) into Active Directory'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "status" -d 'Show the agent\'s health, registration, schedule and recent runs (exit code 1 when unhealthy)'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "generate-docs" -d 'Write shell completions and man pages (for packagers)'
complete -c ausi -n "__fish_ausi_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ausi -n "__fish_ausi_using_subcommand register" -l home-realm -d 'The tenant\'s home realm URL (organisation or sub-organisation realm), e.g. https://acme.example.com' -r
complete -c ausi -n "__fish_ausi_using_subcommand register" -l agent-name -d 'Name of this agent in the tenant [default: this machine\'s host name]' -r
complete -c ausi -n "__fish_ausi_using_subcommand register" -l provisioning-policy -d 'Provisioning policy to apply' -r
complete -c ausi -n "__fish_ausi_using_subcommand register" -l scim-url -d 'SCIM base URL, when it is not {home realm}/scim/v2' -r
complete -c ausi -n "__fish_ausi_using_subcommand register" -l token-ref -d 'Where to keep the token [default: keyring:ausi/tenant-token on Windows, file:tenant.token beside the configuration elsewhere]' -r
complete -c ausi -n "__fish_ausi_using_subcommand register" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand register" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand register" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand register" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand register" -l token-stdin -d 'Read the tenant\'s access token from standard input (it is never accepted as an argument)'
complete -c ausi -n "__fish_ausi_using_subcommand register" -l password-sync -d 'Write passwords changed in the tenant into AD on every sync (needs the tenant\'s agent API, an LDAPS or StartTLS connection and Reset Password rights on the selected OUs)'
complete -c ausi -n "__fish_ausi_using_subcommand register" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand register" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand register" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand register" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l interval -d 'Minutes between incremental syncs (at least 1)' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l full-sync-at -d 'Local time of the daily full sync, HH:MM' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l time-limit -d 'Stop a run still going after this many minutes' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l run-as -d 'Account the runs use [default: SYSTEM on Windows, root on Linux]. On Windows a gMSA (DOMAIN\\name$) needs no password; any other account\'s password is asked by schtasks at the terminal. No password is ever accepted as an argument' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l ou -d 'Where a new service account is created [default: CN=Users under the naming context]' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l name -d 'The service account\'s logon name (sAMAccountName) [default: svc-ausi]' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l gmsa-allowed -d 'With --gmsa: an account (sAMAccountName, e.g. the computer `HOST$` that runs ausi, or a group of such computers) allowed to retrieve the gMSA\'s password; repeatable' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l source -d 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l bind-dn -d 'Bind as this account (DN, user@domain or DOMAIN\\user) instead of the configured one' -r
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l ca-file -d 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l root -d 'Write the unit or task files under this directory instead of / (tests, packaging); systemctl and schtasks are then not run' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l scheduler -d 'Render for this scheduler instead of this machine\'s (only with --print or --root)' -r -f -a "systemd\t''
task-scheduler\t''"
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l print -d 'Write what would be installed to stdout and change nothing'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l force -d 'Install even when a check predicts the scheduled service cannot work (its state directory hidden from the hardened unit, a secret in the kernel keyring, timers that cannot be enabled here)'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l uninstall -d 'Remove the installed task or timer'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l create-service-account -d 'Create (or reuse) the AD account the sync binds as, store its random password, and show the rights it needs on the selected OUs. Binds as an administrator, over LDAPS or StartTLS only'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l gmsa -d 'Create a group managed service account (gMSA, Windows Server 2012+ domains) instead of a user: the domain sets and rotates its password, ausi stores none, and the agent binds with Kerberos (bind = "kerberos") when installed with --run-as DOMAIN\\NAME$'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l grant-rights -d 'Grant the account exactly the rights it needs: one ACE per right on each selected OU, nothing domain-wide'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l password-sync -d 'Count Reset Password (on the users of the selected OUs) among the rights, as when the agent is registered with --password-sync (tenant.password_sync), before it is'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l bind-password-stdin -d 'Read the bind password from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l save-bind-password -d 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration\'s `bind_password` reference names'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -l starttls -d 'Upgrade an ldap:// connection with StartTLS'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand install-service" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l base -d 'List only this sub-tree (DN) instead of the whole naming context' -r
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l source -d 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]' -r
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l bind-dn -d 'Bind as this account (DN, user@domain or DOMAIN\\user) instead of the configured one' -r
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l ca-file -d 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l bind-password-stdin -d 'Read the bind password from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l save-bind-password -d 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration\'s `bind_password` reference names'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -l starttls -d 'Upgrade an ldap:// connection with StartTLS'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand list-ous" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l add -d 'Add OUs (DN or objectGUID) to the selection' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l remove -d 'Remove OUs (DN or objectGUID) from the selection' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l set -d 'Replace the whole selection with these OUs (exclusions outside them are dropped)' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l exclude -d 'Leave this sub-tree (an OU or container inside a selected OU) out of the sync' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l unexclude -d 'Take an excluded sub-tree back into the sync' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l source -d 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l bind-dn -d 'Bind as this account (DN, user@domain or DOMAIN\\user) instead of the configured one' -r
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l ca-file -d 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l clear -d 'Remove every selected OU and every exclusion'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l dry-run -d 'Show the scope change without saving it'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l bind-password-stdin -d 'Read the bind password from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l save-bind-password -d 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration\'s `bind_password` reference names'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -l starttls -d 'Upgrade an ldap:// connection with StartTLS'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand select-ous" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l base -d 'Validate every user under this DN instead of the selected OUs' -r
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l user -d 'Explain one user rule by rule (userPrincipalName or sAMAccountName)' -r
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l policy -d 'Judge by this provisioning policy (Default or one of [policies.NAME]) instead of the active one' -r
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l source -d 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]' -r
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l bind-dn -d 'Bind as this account (DN, user@domain or DOMAIN\\user) instead of the configured one' -r
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l ca-file -d 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand validate" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand validate" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l bind-password-stdin -d 'Read the bind password from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l save-bind-password -d 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration\'s `bind_password` reference names'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -l starttls -d 'Upgrade an ldap:// connection with StartTLS'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand validate" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l allow-deletes -d 'Allow this run to deactivate or delete up to N objects, above the configured threshold' -r
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l allow-renames -d 'Allow this run to change the userName of up to N users, above [sync] max_renames' -r
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l user -d 'With --dry-run: explain one user end to end (scope, rules, the SCIM resource, the operation)' -r
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l policy -d 'With --dry-run: preview the run under this provisioning policy (Default or one of [policies.NAME]) instead of the active one: who enters and leaves the scope, how many objects change per attribute, and whether the rename guard would stop it' -r
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l source -d 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]' -r
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l bind-dn -d 'Bind as this account (DN, user@domain or DOMAIN\\user) instead of the configured one' -r
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l ca-file -d 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand sync" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand sync" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l full -d 'Read the whole selected scope instead of the changes since the last run'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l dry-run -d 'Plan and report every change without writing anything to the tenant'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l strict -d 'All or nothing: when any user in scope is invalid, write nothing (exit 1)'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l bind-password-stdin -d 'Read the bind password from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l save-bind-password -d 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration\'s `bind_password` reference names'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -l starttls -d 'Upgrade an ldap:// connection with StartTLS'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand sync" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l user -d 'Set the password of this user (userPrincipalName, sAMAccountName or objectGUID); the password is prompted for on a terminal, or read with --password-stdin' -r
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l batch -d 'JSON Lines file of {"user": ..., "password": ...} (or - for standard input); every line is checked before any password is sent' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l bind-dn -d 'Bind as this account (DN, user@domain or DOMAIN\\user) instead of the configured one' -r
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l ca-file -d 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l source -d 'Write to this domain controller instead of the configured one: ldaps://HOST[:PORT] or ldap://HOST[:PORT] with StartTLS (not an LDIF export)' -r
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l from-tenant -d 'Apply the password changes queued in the tenant and report each result back'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l password-stdin -d 'Read the new password for --user from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l dry-run -d 'Find each user and check each password against the domain\'s policy, without writing anything to AD or answering the tenant'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l bind-password-stdin -d 'Read the bind password from the first line of standard input'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l save-bind-password -d 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration\'s `bind_password` reference names'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -l starttls -d 'Upgrade an ldap:// connection with StartTLS'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand password-push" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand status" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand status" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand status" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand status" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand status" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand status" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand status" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -l out-dir -d 'Directory that receives completions/ and man/' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -s c -l config -d 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\\ausi\\agent.toml on Windows]' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -s o -l output -d 'Report format on stdout [default: table on a terminal, json otherwise]' -r -f -a "json\t'One JSON envelope (for scripts: `ausi validate | ConvertFrom-Json`)'
table\t'A human-readable table'
jsonl\t'One JSON object per line: each listed item, then the envelope'"
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -l log-format -d 'Format of the log lines (on stderr and in the --log-file)' -r -f -a "text\t''
json\t''"
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -l log-file -d 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it' -r -F
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -s v -l verbose -d 'More log detail on stderr (-v info, -vv debug, -vvv trace)'
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -s q -l quiet -d 'Only errors on stderr, and no progress display'
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ausi -n "__fish_ausi_using_subcommand generate-docs" -s V -l version -d 'Print version'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "register" -d 'Register this agent with the identity tenant (home realm, agent name, access token)'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "install-service" -d 'Install the scheduled task (Windows) or systemd timer (Linux) that runs the sync unattended'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "list-ous" -d 'List the Organizational Units and default containers, with user and group counts'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "select-ous" -d 'Choose which OUs are synchronised (and which sub-trees inside them are left out)'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "validate" -d 'Check every user in scope for the attributes the tenant needs'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "sync" -d 'Synchronise users, groups and OUs into the tenant (incremental unless --full)'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "password-push" -d 'Write passwords changed in the tenant (or given here) into Active Directory'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "status" -d 'Show the agent\'s health, registration, schedule and recent runs (exit code 1 when unhealthy)'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "generate-docs" -d 'Write shell completions and man pages (for packagers)'
complete -c ausi -n "__fish_ausi_using_subcommand help; and not __fish_seen_subcommand_from register install-service list-ous select-ous validate sync password-push status generate-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
