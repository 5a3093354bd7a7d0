
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'ausi' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'ausi'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'ausi' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('register', 'register', [CompletionResultType]::ParameterValue, 'Register this agent with the identity tenant (home realm, agent name, access token)')
            [CompletionResult]::new('install-service', 'install-service', [CompletionResultType]::ParameterValue, 'Install the scheduled task (Windows) or systemd timer (Linux) that runs the sync unattended')
            [CompletionResult]::new('list-ous', 'list-ous', [CompletionResultType]::ParameterValue, 'List the Organizational Units and default containers, with user and group counts')
            [CompletionResult]::new('select-ous', 'select-ous', [CompletionResultType]::ParameterValue, 'Choose which OUs are synchronised (and which sub-trees inside them are left out)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check every user in scope for the attributes the tenant needs')
            [CompletionResult]::new('sync', 'sync', [CompletionResultType]::ParameterValue, 'Synchronise users, groups and OUs into the tenant (incremental unless --full)')
            [CompletionResult]::new('password-push', 'password-push', [CompletionResultType]::ParameterValue, 'Write passwords changed in the tenant (or given here) into Active Directory')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the agent''s health, registration, schedule and recent runs (exit code 1 when unhealthy)')
            [CompletionResult]::new('generate-docs', 'generate-docs', [CompletionResultType]::ParameterValue, 'Write shell completions and man pages (for packagers)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'ausi;register' {
            [CompletionResult]::new('--home-realm', '--home-realm', [CompletionResultType]::ParameterName, 'The tenant''s home realm URL (organisation or sub-organisation realm), e.g. https://acme.example.com')
            [CompletionResult]::new('--agent-name', '--agent-name', [CompletionResultType]::ParameterName, 'Name of this agent in the tenant [default: this machine''s host name]')
            [CompletionResult]::new('--provisioning-policy', '--provisioning-policy', [CompletionResultType]::ParameterName, 'Provisioning policy to apply')
            [CompletionResult]::new('--scim-url', '--scim-url', [CompletionResultType]::ParameterName, 'SCIM base URL, when it is not {home realm}/scim/v2')
            [CompletionResult]::new('--token-ref', '--token-ref', [CompletionResultType]::ParameterName, 'Where to keep the token [default: keyring:ausi/tenant-token on Windows, file:tenant.token beside the configuration elsewhere]')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--token-stdin', '--token-stdin', [CompletionResultType]::ParameterName, 'Read the tenant''s access token from standard input (it is never accepted as an argument)')
            [CompletionResult]::new('--password-sync', '--password-sync', [CompletionResultType]::ParameterName, 'Write passwords changed in the tenant into AD on every sync (needs the tenant''s agent API, an LDAPS or StartTLS connection and Reset Password rights on the selected OUs)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;install-service' {
            [CompletionResult]::new('--interval', '--interval', [CompletionResultType]::ParameterName, 'Minutes between incremental syncs (at least 1)')
            [CompletionResult]::new('--full-sync-at', '--full-sync-at', [CompletionResultType]::ParameterName, 'Local time of the daily full sync, HH:MM')
            [CompletionResult]::new('--time-limit', '--time-limit', [CompletionResultType]::ParameterName, 'Stop a run still going after this many minutes')
            [CompletionResult]::new('--run-as', '--run-as', [CompletionResultType]::ParameterName, 'Account the runs use [default: SYSTEM on Windows, root on Linux]. On Windows a gMSA (DOMAIN\name$) needs no password; any other account''s password is asked by schtasks at the terminal. No password is ever accepted as an argument')
            [CompletionResult]::new('--ou', '--ou', [CompletionResultType]::ParameterName, 'Where a new service account is created [default: CN=Users under the naming context]')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The service account''s logon name (sAMAccountName) [default: svc-ausi]')
            [CompletionResult]::new('--gmsa-allowed', '--gmsa-allowed', [CompletionResultType]::ParameterName, 'With --gmsa: an account (sAMAccountName, e.g. the computer `HOST$` that runs ausi, or a group of such computers) allowed to retrieve the gMSA''s password; repeatable')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]')
            [CompletionResult]::new('--bind-dn', '--bind-dn', [CompletionResultType]::ParameterName, 'Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)')
            [CompletionResult]::new('--root', '--root', [CompletionResultType]::ParameterName, 'Write the unit or task files under this directory instead of / (tests, packaging); systemctl and schtasks are then not run')
            [CompletionResult]::new('--scheduler', '--scheduler', [CompletionResultType]::ParameterName, 'Render for this scheduler instead of this machine''s (only with --print or --root)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--print', '--print', [CompletionResultType]::ParameterName, 'Write what would be installed to stdout and change nothing')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Install even when a check predicts the scheduled service cannot work (its state directory hidden from the hardened unit, a secret in the kernel keyring, timers that cannot be enabled here)')
            [CompletionResult]::new('--uninstall', '--uninstall', [CompletionResultType]::ParameterName, 'Remove the installed task or timer')
            [CompletionResult]::new('--create-service-account', '--create-service-account', [CompletionResultType]::ParameterName, 'Create (or reuse) the AD account the sync binds as, store its random password, and show the rights it needs on the selected OUs. Binds as an administrator, over LDAPS or StartTLS only')
            [CompletionResult]::new('--gmsa', '--gmsa', [CompletionResultType]::ParameterName, 'Create a group managed service account (gMSA, Windows Server 2012+ domains) instead of a user: the domain sets and rotates its password, ausi stores none, and the agent binds with Kerberos (bind = "kerberos") when installed with --run-as DOMAIN\NAME$')
            [CompletionResult]::new('--grant-rights', '--grant-rights', [CompletionResultType]::ParameterName, 'Grant the account exactly the rights it needs: one ACE per right on each selected OU, nothing domain-wide')
            [CompletionResult]::new('--password-sync', '--password-sync', [CompletionResultType]::ParameterName, 'Count Reset Password (on the users of the selected OUs) among the rights, as when the agent is registered with --password-sync (tenant.password_sync), before it is')
            [CompletionResult]::new('--bind-password-stdin', '--bind-password-stdin', [CompletionResultType]::ParameterName, 'Read the bind password from the first line of standard input')
            [CompletionResult]::new('--save-bind-password', '--save-bind-password', [CompletionResultType]::ParameterName, 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration''s `bind_password` reference names')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Upgrade an ldap:// connection with StartTLS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;list-ous' {
            [CompletionResult]::new('--base', '--base', [CompletionResultType]::ParameterName, 'List only this sub-tree (DN) instead of the whole naming context')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]')
            [CompletionResult]::new('--bind-dn', '--bind-dn', [CompletionResultType]::ParameterName, 'Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--bind-password-stdin', '--bind-password-stdin', [CompletionResultType]::ParameterName, 'Read the bind password from the first line of standard input')
            [CompletionResult]::new('--save-bind-password', '--save-bind-password', [CompletionResultType]::ParameterName, 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration''s `bind_password` reference names')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Upgrade an ldap:// connection with StartTLS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;select-ous' {
            [CompletionResult]::new('--add', '--add', [CompletionResultType]::ParameterName, 'Add OUs (DN or objectGUID) to the selection')
            [CompletionResult]::new('--remove', '--remove', [CompletionResultType]::ParameterName, 'Remove OUs (DN or objectGUID) from the selection')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Replace the whole selection with these OUs (exclusions outside them are dropped)')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Leave this sub-tree (an OU or container inside a selected OU) out of the sync')
            [CompletionResult]::new('--unexclude', '--unexclude', [CompletionResultType]::ParameterName, 'Take an excluded sub-tree back into the sync')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]')
            [CompletionResult]::new('--bind-dn', '--bind-dn', [CompletionResultType]::ParameterName, 'Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--clear', '--clear', [CompletionResultType]::ParameterName, 'Remove every selected OU and every exclusion')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show the scope change without saving it')
            [CompletionResult]::new('--bind-password-stdin', '--bind-password-stdin', [CompletionResultType]::ParameterName, 'Read the bind password from the first line of standard input')
            [CompletionResult]::new('--save-bind-password', '--save-bind-password', [CompletionResultType]::ParameterName, 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration''s `bind_password` reference names')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Upgrade an ldap:// connection with StartTLS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;validate' {
            [CompletionResult]::new('--base', '--base', [CompletionResultType]::ParameterName, 'Validate every user under this DN instead of the selected OUs')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Explain one user rule by rule (userPrincipalName or sAMAccountName)')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'Judge by this provisioning policy (Default or one of [policies.NAME]) instead of the active one')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]')
            [CompletionResult]::new('--bind-dn', '--bind-dn', [CompletionResultType]::ParameterName, 'Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--bind-password-stdin', '--bind-password-stdin', [CompletionResultType]::ParameterName, 'Read the bind password from the first line of standard input')
            [CompletionResult]::new('--save-bind-password', '--save-bind-password', [CompletionResultType]::ParameterName, 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration''s `bind_password` reference names')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Upgrade an ldap:// connection with StartTLS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;sync' {
            [CompletionResult]::new('--allow-deletes', '--allow-deletes', [CompletionResultType]::ParameterName, 'Allow this run to deactivate or delete up to N objects, above the configured threshold')
            [CompletionResult]::new('--allow-renames', '--allow-renames', [CompletionResultType]::ParameterName, 'Allow this run to change the userName of up to N users, above [sync] max_renames')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'With --dry-run: explain one user end to end (scope, rules, the SCIM resource, the operation)')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'With --dry-run: preview the run under this provisioning policy (Default or one of [policies.NAME]) instead of the active one: who enters and leaves the scope, how many objects change per attribute, and whether the rename guard would stop it')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Read from here instead of the configured directory: ldif:PATH (an ldifde or ldapsearch export; no domain controller needed), ldaps://HOST[:PORT] or ldap://HOST[:PORT]')
            [CompletionResult]::new('--bind-dn', '--bind-dn', [CompletionResultType]::ParameterName, 'Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--full', '--full', [CompletionResultType]::ParameterName, 'Read the whole selected scope instead of the changes since the last run')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Plan and report every change without writing anything to the tenant')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'All or nothing: when any user in scope is invalid, write nothing (exit 1)')
            [CompletionResult]::new('--bind-password-stdin', '--bind-password-stdin', [CompletionResultType]::ParameterName, 'Read the bind password from the first line of standard input')
            [CompletionResult]::new('--save-bind-password', '--save-bind-password', [CompletionResultType]::ParameterName, 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration''s `bind_password` reference names')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Upgrade an ldap:// connection with StartTLS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;password-push' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Set the password of this user (userPrincipalName, sAMAccountName or objectGUID); the password is prompted for on a terminal, or read with --password-stdin')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'JSON Lines file of {"user": ..., "password": ...} (or - for standard input); every line is checked before any password is sent')
            [CompletionResult]::new('--bind-dn', '--bind-dn', [CompletionResultType]::ParameterName, 'Bind as this account (DN, user@domain or DOMAIN\user) instead of the configured one')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust this PEM file of CA certificates for LDAPS/StartTLS (a private enterprise CA)')
            [CompletionResult]::new('--source', '--source', [CompletionResultType]::ParameterName, 'Write to this domain controller instead of the configured one: ldaps://HOST[:PORT] or ldap://HOST[:PORT] with StartTLS (not an LDIF export)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('--from-tenant', '--from-tenant', [CompletionResultType]::ParameterName, 'Apply the password changes queued in the tenant and report each result back')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the new password for --user from the first line of standard input')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Find each user and check each password against the domain''s policy, without writing anything to AD or answering the tenant')
            [CompletionResult]::new('--bind-password-stdin', '--bind-password-stdin', [CompletionResultType]::ParameterName, 'Read the bind password from the first line of standard input')
            [CompletionResult]::new('--save-bind-password', '--save-bind-password', [CompletionResultType]::ParameterName, 'Store the password given by prompt or --bind-password-stdin in the secret store that the configuration''s `bind_password` reference names')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Upgrade an ldap:// connection with StartTLS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;status' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;generate-docs' {
            [CompletionResult]::new('--out-dir', '--out-dir', [CompletionResultType]::ParameterName, 'Directory that receives completions/ and man/')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Agent configuration file [default: /etc/ausi/agent.toml, or %ProgramData%\ausi\agent.toml on Windows]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Report format on stdout [default: table on a terminal, json otherwise]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Format of the log lines (on stderr and in the --log-file)')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Also log to this file (info level, rotated daily and above 10 MiB, 14 kept), with a summary line per run; the units and tasks of install-service pass it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log detail on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr, and no progress display')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'ausi;help' {
            [CompletionResult]::new('register', 'register', [CompletionResultType]::ParameterValue, 'Register this agent with the identity tenant (home realm, agent name, access token)')
            [CompletionResult]::new('install-service', 'install-service', [CompletionResultType]::ParameterValue, 'Install the scheduled task (Windows) or systemd timer (Linux) that runs the sync unattended')
            [CompletionResult]::new('list-ous', 'list-ous', [CompletionResultType]::ParameterValue, 'List the Organizational Units and default containers, with user and group counts')
            [CompletionResult]::new('select-ous', 'select-ous', [CompletionResultType]::ParameterValue, 'Choose which OUs are synchronised (and which sub-trees inside them are left out)')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check every user in scope for the attributes the tenant needs')
            [CompletionResult]::new('sync', 'sync', [CompletionResultType]::ParameterValue, 'Synchronise users, groups and OUs into the tenant (incremental unless --full)')
            [CompletionResult]::new('password-push', 'password-push', [CompletionResultType]::ParameterValue, 'Write passwords changed in the tenant (or given here) into Active Directory')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the agent''s health, registration, schedule and recent runs (exit code 1 when unhealthy)')
            [CompletionResult]::new('generate-docs', 'generate-docs', [CompletionResultType]::ParameterValue, 'Write shell completions and man pages (for packagers)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'ausi;help;register' {
            break
        }
        'ausi;help;install-service' {
            break
        }
        'ausi;help;list-ous' {
            break
        }
        'ausi;help;select-ous' {
            break
        }
        'ausi;help;validate' {
            break
        }
        'ausi;help;sync' {
            break
        }
        'ausi;help;password-push' {
            break
        }
        'ausi;help;status' {
            break
        }
        'ausi;help;generate-docs' {
            break
        }
        'ausi;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
