//! systemd units: a oneshot service per kind of run and a timer for each, hardened so that the
//! service can write only its state directory and reads its secrets as credentials.

use super::{RESTART_INTERVAL_MINUTES, Rendered, RunAs, Settings, marker};

pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const SYNC_SERVICE: &str = "ausi-sync.service";
pub const SYNC_TIMER: &str = "ausi-sync.timer";
pub const FULL_SERVICE: &str = "ausi-sync-full.service";
pub const FULL_TIMER: &str = "ausi-sync-full.timer";
/// Every file this renderer writes.
pub const FILES: [&str; 4] = [SYNC_SERVICE, SYNC_TIMER, FULL_SERVICE, FULL_TIMER];
/// The units `systemctl enable --now` starts.
pub const TIMERS: [&str; 2] = [SYNC_TIMER, FULL_TIMER];

pub fn render(s: &Settings) -> Vec<Rendered> {
    vec![
        Rendered { name: SYNC_SERVICE, contents: service(s, false) },
        Rendered { name: SYNC_TIMER, contents: timer(s, false) },
        Rendered { name: FULL_SERVICE, contents: service(s, true) },
        Rendered { name: FULL_TIMER, contents: timer(s, true) },
    ]
}

/// The README section on running unattended (a URL: `systemd-analyze verify` checks man: links
/// against the installed man pages).
const DOCS: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "#run-it-unattended");

const HEADER: &str = "# Written by `ausi install-service`; `ausi install-service --uninstall` removes it.\n";

fn service(s: &Settings, full: bool) -> String {
    let what = if full { "daily full sync" } else { "incremental sync" };
    let mut exec = vec![quote(&s.exe)];
    exec.extend(s.run_args(full).iter().map(|a| quote(a)));
    let mut out = format!(
        "{HEADER}[Unit]\n\
         Description=ausi {what}: Active Directory to the SCIM tenant\n\
         Documentation={DOCS}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n",
        exec = exec.join(" ")
    );
    if let RunAs::Account(name) | RunAs::ManagedServiceAccount(name) = &s.run_as {
        out.push_str(&format!("User={name}\n"));
    }
    out.push_str(&format!(
        "# The report goes to the log file as a one-line summary; warnings and errors reach the journal.\n\
         StandardOutput=null\n\
         TimeoutStartSec={limit}min\n\
         # Exit codes: 1 findings (a finished run), 75 retry later; 3 safety stop, 77 permission and\n\
         # 78 configuration need a human, so they are not retried.\n\
         SuccessExitStatus=1\n\
         Restart=on-failure\n\
         RestartSec={RESTART_INTERVAL_MINUTES}min\n\
         RestartPreventExitStatus=3 77 78\n",
        limit = s.time_limit_minutes
    ));
    if !s.credentials.is_empty() {
        out.push_str("# Secrets reach the service as credentials ($CREDENTIALS_DIRECTORY), not as readable files.\n");
        for c in &s.credentials {
            out.push_str(&format!("LoadCredential={}:{}\n", c.name, escape_specifiers(&c.path)));
        }
        for c in &s.credentials {
            out.push_str(&format!("InaccessiblePaths=-{}\n", quote(&c.path)));
        }
    }
    out.push_str(&format!(
        "# Hardening: the state directory (state, logs) is the only writable place.\n\
         ReadWritePaths={state}\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictRealtime=yes\n\
         RestrictNamespaces=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
         CapabilityBoundingSet=\n\
         UMask=0077\n",
        state = quote(&s.state_dir)
    ));
    out
}

fn timer(s: &Settings, full: bool) -> String {
    let (unit, description, schedule) = if full {
        (
            FULL_SERVICE,
            format!("ausi daily full sync at {}", s.full_sync_at),
            format!("OnCalendar=*-*-* {:02}:{:02}:00\n", s.full_sync_at.hour, s.full_sync_at.minute),
        )
    } else {
        (
            SYNC_SERVICE,
            format!("ausi incremental sync every {} minutes", s.interval_minutes),
            interval_schedule(s.interval_minutes, s.incremental_start_secs()),
        )
    };
    format!(
        "{HEADER}# {marker}\n\
         [Unit]\n\
         Description={description}\n\
         Documentation={DOCS}\n\
         \n\
         [Timer]\n\
         {schedule}\
         AccuracySec=1s\n\
         # A run missed while the machine was off happens when it is back.\n\
         Persistent=true\n\
         Unit={unit}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        marker = marker(s)
    )
}

/// Calendar times when the interval divides the hour (or the day), on a grid that starts at
/// `start` seconds after midnight (half an interval after the full sync, see
/// [`Settings::incremental_start_secs`]); otherwise every N minutes after the previous run ended.
fn interval_schedule(minutes: u32, start: u32) -> String {
    let period = minutes * 60;
    if 60u32.is_multiple_of(minutes) {
        let offset = start % period;
        format!("OnCalendar=*-*-* *:{:02}/{minutes}:{:02}\n", offset / 60, offset % 60)
    } else if minutes == 1440 {
        format!("OnCalendar=*-*-* {:02}:{:02}:{:02}\n", start / 3600, start / 60 % 60, start % 60)
    } else if minutes.is_multiple_of(60) && 1440u32.is_multiple_of(minutes) {
        let offset = start % period;
        format!("OnCalendar=*-*-* {:02}/{}:{:02}:{:02}\n", offset / 3600, minutes / 60, offset / 60 % 60, offset % 60)
    } else {
        format!("OnActiveSec=1min\nOnUnitInactiveSec={minutes}min\n")
    }
}

/// One word of a unit-file command line: `%` and `$` are not expanded, spaces and quotes survive.
pub fn quote(word: &str) -> String {
    let word = escape_specifiers(word).replace('$', "$$");
    if !word.is_empty() && !word.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';')) {
        return word;
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::super::sample_settings;
    use super::*;

    fn file<'a>(files: &'a [Rendered], name: &str) -> &'a str {
        &files.iter().find(|f| f.name == name).unwrap().contents
    }

    #[test]
    fn the_service_is_hardened_and_gets_its_secrets_as_credentials() {
        let files = render(&sample_settings());
        assert_eq!(
            files.iter().map(|f| f.name).collect::<Vec<_>>(),
            [SYNC_SERVICE, SYNC_TIMER, FULL_SERVICE, FULL_TIMER]
        );
        let unit = file(&files, SYNC_SERVICE);
        for line in [
            "Type=oneshot",
            "ExecStart=/usr/local/bin/ausi --config /etc/ausi/agent.toml --log-file /var/lib/ausi/logs/ausi.log --output json sync\n",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/lib/ausi\n",
            "RestartPreventExitStatus=3 77 78",
            "LoadCredential=etc_ausi_bind.pw:/etc/ausi/bind.pw\n",
            "InaccessiblePaths=-/etc/ausi/bind.pw\n",
            "TimeoutStartSec=120min",
        ] {
            assert!(unit.contains(line), "missing {line:?} in\n{unit}");
        }
        assert!(!unit.contains("User="), "root by default");
        assert!(file(&files, FULL_SERVICE).contains(" sync --full\n"));
    }

    #[test]
    fn timers_are_persistent_and_follow_the_schedule() {
        let files = render(&sample_settings());
        let t = file(&files, SYNC_TIMER);
        assert!(t.contains("OnCalendar=*-*-* *:05/10:00\n") && t.contains("Persistent=true"), "{t}");
        assert!(t.contains("Unit=ausi-sync.service") && t.contains("WantedBy=timers.target"));
        assert!(t.contains("ausi-schedule: interval_minutes=10 full_sync_at=02:00"));
        let f = file(&files, FULL_TIMER);
        assert!(f.contains("OnCalendar=*-*-* 02:00:00\n") && f.contains("Unit=ausi-sync-full.service"), "{f}");
    }

    #[test]
    fn any_interval_has_a_schedule() {
        // Full sync at 02:00: the incremental grid is half an interval off it.
        let at_two = |minutes: u32| (2 * 3600 + minutes * 30) % 86_400;
        assert_eq!(interval_schedule(1, at_two(1)), "OnCalendar=*-*-* *:00/1:30\n");
        assert_eq!(interval_schedule(10, at_two(10)), "OnCalendar=*-*-* *:05/10:00\n");
        assert_eq!(interval_schedule(15, at_two(15)), "OnCalendar=*-*-* *:07/15:30\n");
        assert_eq!(interval_schedule(60, at_two(60)), "OnCalendar=*-*-* *:30/60:00\n");
        assert_eq!(interval_schedule(120, at_two(120)), "OnCalendar=*-*-* 01/2:00:00\n");
        assert_eq!(interval_schedule(1440, at_two(1440)), "OnCalendar=*-*-* 14:00:00\n");
        assert_eq!(interval_schedule(7, at_two(7)), "OnActiveSec=1min\nOnUnitInactiveSec=7min\n");
        assert_eq!(interval_schedule(90, at_two(90)), "OnActiveSec=1min\nOnUnitInactiveSec=90min\n");
        // Full sync at 02:10 with a 10-minute interval: incremental at :05, :15, … never :10.
        assert_eq!(interval_schedule(10, 2 * 3600 + 600 + 300), "OnCalendar=*-*-* *:05/10:00\n");
    }

    #[test]
    fn command_words_are_quoted_for_systemd() {
        assert_eq!(quote("/usr/bin/ausi"), "/usr/bin/ausi");
        assert_eq!(quote("/srv/my ausi/agent.toml"), "\"/srv/my ausi/agent.toml\"");
        assert_eq!(quote("/a%b$c"), "/a%%b$$c");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn a_service_account_runs_it() {
        let mut s = sample_settings();
        s.run_as = RunAs::Account("ausi".into());
        assert!(file(&render(&s), SYNC_SERVICE).contains("\nUser=ausi\n"));
    }
}
