//! Task Scheduler XML (schema 1.2, Windows Server 2008 R2 and later): one task for the
//! incremental sync every N minutes and one for the daily full sync, registered with
//! `schtasks /Create /XML FILE /TN NAME /F`.
//!
//! The files are written as UTF-16LE with a byte-order mark, the encoding schtasks reads
//! without complaint; [`render`] returns the text and [`encode`] / [`decode`] convert.

use super::{RESTART_COUNT, RESTART_INTERVAL_MINUTES, Rendered, RunAs, Settings, marker};

pub const NAMESPACE: &str = "http://schemas.microsoft.com/windows/2004/02/mit/task";
pub const SYNC_TASK: &str = r"\ausi\sync";
pub const FULL_TASK: &str = r"\ausi\sync-full";
pub const SYNC_TASK_FILE: &str = "ausi-sync.xml";
pub const FULL_TASK_FILE: &str = "ausi-sync-full.xml";
/// (task name, definition file), in registration order.
pub const TASKS: [(&str, &str); 2] = [(SYNC_TASK, SYNC_TASK_FILE), (FULL_TASK, FULL_TASK_FILE)];

/// A fixed date in the past: triggers repeat from it, and the file does not change between
/// installs (so a second install is recognised as unchanged).
const START_DATE: &str = "2020-01-01";

pub fn render(s: &Settings) -> Vec<Rendered> {
    vec![
        Rendered { name: SYNC_TASK_FILE, contents: task(s, false) },
        Rendered { name: FULL_TASK_FILE, contents: task(s, true) },
    ]
}

fn task(s: &Settings, full: bool) -> String {
    let (uri, description, trigger) = if full {
        (
            FULL_TASK,
            format!("ausi: daily full sync from Active Directory to the SCIM tenant at {}.", s.full_sync_at),
            format!(
                "    <CalendarTrigger>\n\
                 \x20     <StartBoundary>{START_DATE}T{:02}:{:02}:00</StartBoundary>\n\
                 \x20     <Enabled>true</Enabled>\n\
                 \x20     <ScheduleByDay>\n\
                 \x20       <DaysInterval>1</DaysInterval>\n\
                 \x20     </ScheduleByDay>\n\
                 \x20   </CalendarTrigger>\n",
                s.full_sync_at.hour, s.full_sync_at.minute
            ),
        )
    } else {
        (
            SYNC_TASK,
            format!(
                "ausi: incremental sync from Active Directory to the SCIM tenant every {} minutes.",
                s.interval_minutes
            ),
            format!(
                "    <TimeTrigger>\n\
                 \x20     <Repetition>\n\
                 \x20       <Interval>PT{}M</Interval>\n\
                 \x20       <StopAtDurationEnd>false</StopAtDurationEnd>\n\
                 \x20     </Repetition>\n\
                 \x20     <StartBoundary>{START_DATE}T{start}</StartBoundary>\n\
                 \x20     <Enabled>true</Enabled>\n\
                 \x20   </TimeTrigger>\n",
                s.interval_minutes,
                start = clock(s.incremental_start_secs())
            ),
        )
    };
    let arguments = s.run_args(full).iter().map(|a| windows_arg(a)).collect::<Vec<_>>().join(" ");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n\
         <!-- Written by ausi install-service, which also removes it (its uninstall option). -->\n\
         <!-- {marker} -->\n\
         <Task version=\"1.2\" xmlns=\"{NAMESPACE}\">\n\
         \x20 <RegistrationInfo>\n\
         \x20   <Author>ausi install-service</Author>\n\
         \x20   <Description>{description}</Description>\n\
         \x20   <URI>{uri}</URI>\n\
         \x20 </RegistrationInfo>\n\
         \x20 <Triggers>\n\
         {trigger}\
         \x20 </Triggers>\n\
         \x20 <Principals>\n\
         \x20   <Principal id=\"Author\">\n\
         {principal}\
         \x20   </Principal>\n\
         \x20 </Principals>\n\
         \x20 <Settings>\n\
         \x20   <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n\
         \x20   <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n\
         \x20   <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n\
         \x20   <AllowHardTerminate>true</AllowHardTerminate>\n\
         \x20   <StartWhenAvailable>true</StartWhenAvailable>\n\
         \x20   <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>\n\
         \x20   <IdleSettings>\n\
         \x20     <StopOnIdleEnd>false</StopOnIdleEnd>\n\
         \x20     <RestartOnIdle>false</RestartOnIdle>\n\
         \x20   </IdleSettings>\n\
         \x20   <AllowStartOnDemand>true</AllowStartOnDemand>\n\
         \x20   <Enabled>true</Enabled>\n\
         \x20   <Hidden>false</Hidden>\n\
         \x20   <RunOnlyIfIdle>false</RunOnlyIfIdle>\n\
         \x20   <WakeToRun>false</WakeToRun>\n\
         \x20   <ExecutionTimeLimit>PT{limit}M</ExecutionTimeLimit>\n\
         \x20   <Priority>7</Priority>\n\
         \x20   <RestartOnFailure>\n\
         \x20     <Interval>PT{RESTART_INTERVAL_MINUTES}M</Interval>\n\
         \x20     <Count>{RESTART_COUNT}</Count>\n\
         \x20   </RestartOnFailure>\n\
         \x20 </Settings>\n\
         \x20 <Actions Context=\"Author\">\n\
         \x20   <Exec>\n\
         \x20     <Command>{command}</Command>\n\
         \x20     <Arguments>{arguments}</Arguments>\n\
         \x20     <WorkingDirectory>{workdir}</WorkingDirectory>\n\
         \x20   </Exec>\n\
         \x20 </Actions>\n\
         </Task>\n",
        marker = marker(s),
        description = escape(&description),
        principal = principal(&s.run_as),
        limit = s.time_limit_minutes,
        command = escape(&s.exe),
        arguments = escape(&arguments),
        workdir = escape(&s.state_dir),
    )
}

/// "Run whether the user is logged on or not", without a password anywhere: SYSTEM runs as a
/// service account, a gMSA's password comes from AD; an ordinary account's is typed into
/// schtasks' own prompt (`/RP *`) and kept by Task Scheduler.
fn principal(run_as: &RunAs) -> String {
    match run_as {
        RunAs::System => "      <UserId>S-1-5-18</UserId>\n      <RunLevel>HighestAvailable</RunLevel>\n".to_owned(),
        RunAs::ManagedServiceAccount(name) | RunAs::Account(name) => format!(
            "      <UserId>{}</UserId>\n      <LogonType>Password</LogonType>\n      <RunLevel>LeastPrivilege</RunLevel>\n",
            escape(name)
        ),
    }
}

/// `HH:MM:SS` of seconds after midnight.
fn clock(secs: u32) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// One argument as the Windows C runtime splits a command line (CommandLineToArgvW rules).
pub fn windows_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.chars().any(|c| c.is_whitespace() || c == '"') {
        return arg.to_owned();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// The bytes of a definition file: UTF-16LE with a BOM and CRLF line ends.
pub fn encode(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.replace('\n', "\r\n").encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

/// The text of a definition file written by [`encode`] (`None` when it is not UTF-16LE).
pub fn decode(bytes: &[u8]) -> Option<String> {
    let body = bytes.strip_prefix(&[0xFF, 0xFE])?;
    if body.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = body.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect();
    String::from_utf16(&units).ok().map(|t| t.replace("\r\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::super::{TimeOfDay, sample_settings};
    use super::*;

    fn parsed(text: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{text}"))
    }

    fn child_text<'a>(node: roxmltree::Node<'a, 'a>, path: &[&str]) -> Option<&'a str> {
        let mut current = node;
        for name in path {
            current = current.children().find(|c| c.has_tag_name((NAMESPACE, *name)))?;
        }
        current.text()
    }

    #[test]
    fn the_incremental_task_is_well_formed_with_the_right_settings() {
        let mut s = sample_settings();
        s.exe = r"C:\Program Files\ausi\ausi.exe".into();
        s.config = r"C:\ProgramData\ausi\agent.toml".into();
        s.state_dir = r"C:\ProgramData\ausi".into();
        s.log_file = r"C:\ProgramData\ausi\logs\ausi.log".into();
        s.interval_minutes = 15;
        let files = render(&s);
        let text = &files[0].contents;
        let doc = parsed(text);
        let task = doc.root_element();
        assert!(task.has_tag_name((NAMESPACE, "Task")));
        assert_eq!(task.attribute("version"), Some("1.2"));
        assert_eq!(child_text(task, &["Settings", "MultipleInstancesPolicy"]), Some("IgnoreNew"));
        assert_eq!(child_text(task, &["Settings", "ExecutionTimeLimit"]), Some("PT120M"));
        assert_eq!(child_text(task, &["Settings", "RestartOnFailure", "Interval"]), Some("PT5M"));
        assert_eq!(child_text(task, &["Settings", "RestartOnFailure", "Count"]), Some("3"));
        assert_eq!(child_text(task, &["Settings", "StartWhenAvailable"]), Some("true"));
        assert_eq!(child_text(task, &["Triggers", "TimeTrigger", "Repetition", "Interval"]), Some("PT15M"));
        // Half an interval after the 02:00 full sync, so the two never start together.
        assert_eq!(child_text(task, &["Triggers", "TimeTrigger", "StartBoundary"]), Some("2020-01-01T02:07:30"));
        assert_eq!(child_text(task, &["Principals", "Principal", "UserId"]), Some("S-1-5-18"));
        assert_eq!(child_text(task, &["RegistrationInfo", "URI"]), Some(r"\ausi\sync"));
        assert_eq!(child_text(task, &["Actions", "Exec", "Command"]), Some(r"C:\Program Files\ausi\ausi.exe"));
        assert_eq!(
            child_text(task, &["Actions", "Exec", "Arguments"]),
            Some(
                r"--config C:\ProgramData\ausi\agent.toml --log-file C:\ProgramData\ausi\logs\ausi.log --output json sync"
            )
        );
    }

    #[test]
    fn the_full_task_runs_daily_at_the_chosen_time() {
        let mut s = sample_settings();
        s.full_sync_at = TimeOfDay { hour: 3, minute: 30 };
        let files = render(&s);
        let doc = parsed(&files[1].contents);
        let task = doc.root_element();
        assert_eq!(child_text(task, &["Triggers", "CalendarTrigger", "StartBoundary"]), Some("2020-01-01T03:30:00"));
        assert_eq!(child_text(task, &["Triggers", "CalendarTrigger", "ScheduleByDay", "DaysInterval"]), Some("1"));
        assert!(child_text(task, &["Actions", "Exec", "Arguments"]).unwrap().ends_with("sync --full"));
    }

    #[test]
    fn an_account_logs_on_with_a_password_task_scheduler_keeps() {
        let mut s = sample_settings();
        s.run_as = RunAs::ManagedServiceAccount("NORTHWIND\\gmsa-ausi$".into());
        let files = render(&s);
        let doc = parsed(&files[0].contents);
        let task = doc.root_element();
        assert_eq!(child_text(task, &["Principals", "Principal", "UserId"]), Some("NORTHWIND\\gmsa-ausi$"));
        assert_eq!(child_text(task, &["Principals", "Principal", "LogonType"]), Some("Password"));
    }

    #[test]
    fn special_characters_are_escaped() {
        let mut s = sample_settings();
        s.exe = r"C:\A&B <x>\ausi.exe".into();
        s.config = r#"C:\my "cfg"\agent.toml"#.into();
        let files = render(&s);
        let doc = parsed(&files[0].contents);
        let task = doc.root_element();
        assert_eq!(child_text(task, &["Actions", "Exec", "Command"]), Some(r"C:\A&B <x>\ausi.exe"));
        assert!(child_text(task, &["Actions", "Exec", "Arguments"]).unwrap().contains(r#""C:\my \"cfg\"\agent.toml""#));
    }

    #[test]
    fn windows_arguments_survive_the_c_runtime() {
        assert_eq!(windows_arg(r"C:\x\y"), r"C:\x\y");
        assert_eq!(windows_arg(r"C:\Program Files\ausi\"), r#""C:\Program Files\ausi\\""#);
        assert_eq!(windows_arg(r#"a"b"#), r#""a\"b""#);
        assert_eq!(windows_arg(""), r#""""#);
    }

    #[test]
    fn files_round_trip_through_utf16() {
        let text = "<?xml version=\"1.0\"?>\n<a>é</a>\n";
        let bytes = encode(text);
        assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
        assert_eq!(decode(&bytes).as_deref(), Some(text));
        assert_eq!(decode(b"plain"), None);
    }
}
