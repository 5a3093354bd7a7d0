<#
.SYNOPSIS
    Checks the Active Directory users that ausi would synchronise and reports the ones with
    problems (missing first name, last name, email or logon name, malformed or duplicate values).

.DESCRIPTION
    Runs `ausi validate --output json`, reads the report with ConvertFrom-Json and acts on
    ausi's exit code:

      0      every user in scope is ready: logs a one-line summary.
      1      findings: writes a CSV with one row per problem (dn, sAMAccountName,
             userPrincipalName, disabled, rule, message) to -CsvPath and, with -MailTo,
             mails it.
      75     temporary failure (domain controller unreachable, timeout, busy): logs
             "retry later"; the next scheduled run will try again.
      77, 78 permission or configuration error: a human must act. Logs ausi's error
             message, its causes and its hints.
      other  usage error (2), safety stop (3) or internal error (70): logged like 77/78.

    Messages go to the Windows event log when -EventLogSource names a registered source,
    otherwise to the console. The script exits with ausi's exit code, so Task Scheduler's
    "Last Run Result" shows it (0x1 = findings, 0x4B = 75, 0x4D = 77, 0x4E = 78).

    Schedule it with Task Scheduler as the Windows account that stored the bind password
    (`ausi list-ous --bind-password-stdin --save-bind-password`): Credential Manager
    entries belong to the account that saved them. Choose "Run whether user is logged on or
    not" and let Windows store that account's password ("Do not store password" gives the task
    no access to Credential Manager).
      Program:   powershell.exe
      Arguments: -NoProfile -ExecutionPolicy Bypass -File "C:\Program Files\ausi\validate.ps1"
                 -CsvPath C:\Reports\ausi-problems.csv -EventLogSource ausi

.PARAMETER Config
    Agent configuration file. Default: ausi's own default (AUSI_CONFIG, else
    %ProgramData%\ausi\agent.toml).

.PARAMETER Source
    Read from here instead of the configured domain controller: ldif:PATH for an ldifde
    export (no domain controller needed), or ldaps://HOST[:PORT].

.PARAMETER CsvPath
    Where the CSV of problems is written when there are findings (overwritten each time).
    Default: %ProgramData%\ausi\validate-problems.csv.

.PARAMETER AusiPath
    The ausi executable. Default: ausi (found through PATH).

.PARAMETER MailTo
    Send the CSV to these addresses when there are findings. Needs -MailFrom and -SmtpServer.

.PARAMETER MailFrom
    Sender address of the findings mail.

.PARAMETER SmtpServer
    SMTP server (relay) that accepts mail from this machine without credentials.

.PARAMETER SmtpPort
    SMTP port. Default: 25.

.PARAMETER UseSsl
    Use STARTTLS with the SMTP server.

.PARAMETER EventLogSource
    Write to the Application event log under this source instead of the console. Register the
    source once, in an elevated PowerShell:
        [System.Diagnostics.EventLog]::CreateEventSource('ausi', 'Application')
    Event IDs: 1000 ok, 1001 findings, 1002 retry later, 1003 error, 1004 warning.

.EXAMPLE
    .\validate.ps1 -CsvPath C:\Reports\ausi-problems.csv

    Validates the OUs selected in the configuration; on findings writes the CSV.

.EXAMPLE
    .\validate.ps1 -Source ldif:C:\Exports\staff.ldif -CsvPath .\problems.csv

    Validates an ldifde export instead of asking a domain controller.

.EXAMPLE
    .\validate.ps1 -CsvPath C:\Reports\ausi-problems.csv -EventLogSource ausi `
        -MailTo it-team@northwind.example -MailFrom ausi@northwind.example -SmtpServer smtp.northwind.example

    The scheduled form: results in the event log, the CSV mailed when there are findings.

.OUTPUTS
    None. The exit code is ausi's (see DESCRIPTION).

.NOTES
    Works with Windows PowerShell 5.1 and PowerShell 7.
#>
[CmdletBinding()]
param(
    [string] $Config,
    [string] $Source,
    [string] $CsvPath,
    [string] $AusiPath = 'ausi',
    [string[]] $MailTo,
    [string] $MailFrom,
    [string] $SmtpServer,
    [int] $SmtpPort = 25,
    [switch] $UseSsl,
    [string] $EventLogSource
)

$ErrorActionPreference = 'Stop'
# PowerShell 7.3+: a non-zero exit code of ausi is information here, not a terminating error.
$PSNativeCommandUseErrorActionPreference = $false

if (-not $CsvPath) {
    $CsvPath = Join-Path ([Environment]::GetFolderPath('CommonApplicationData')) 'ausi\validate-problems.csv'
}

# Writes one message to the event log (with -EventLogSource) or to the console.
function Write-Log {
    param(
        [ValidateSet('Information', 'Warning', 'Error')] [string] $Level,
        [int] $EventId,
        [string] $Message
    )
    if ($EventLogSource) {
        try {
            $type = [System.Diagnostics.EventLogEntryType]::$Level
            [System.Diagnostics.EventLog]::WriteEntry($EventLogSource, $Message, $type, $EventId)
            return
        } catch {
            $host.UI.WriteErrorLine("cannot write to the event log as '$EventLogSource' ($($_.Exception.Message)); writing to the console")
        }
    }
    switch ($Level) {
        'Information' { Write-Host $Message }
        'Warning' { Write-Warning $Message }
        'Error' { $host.UI.WriteErrorLine($Message) }
    }
}

# The value of an optional report field (ausi leaves out empty causes, hints, values).
function Get-Field {
    param($Object, [string] $Name)
    if ($null -eq $Object) { return $null }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    return $property.Value
}

# ausi's error object as text: message, then each cause and hint on its own line.
function Format-AusiError {
    param($Report, [int] $Code)
    $err = Get-Field $Report 'error'
    if ($null -eq $err) {
        return "ausi validate ended with exit code $Code and no error report"
    }
    $lines = @("ausi validate failed (exit code $Code, $($err.kind)): $($err.message)")
    foreach ($cause in (Get-Field $err 'causes')) { $lines += "  caused by: $cause" }
    foreach ($hint in (Get-Field $err 'hints')) { $lines += "  hint: $hint" }
    return ($lines -join [Environment]::NewLine)
}

# --- run ausi -------------------------------------------------------------------------------
$arguments = @('validate', '--output', 'json')
if ($Config) { $arguments += @('--config', $Config) }
if ($Source) { $arguments += @('--source', $Source) }

# ausi writes UTF-8; without this, accented names in DNs arrive garbled.
$previousEncoding = $null
try {
    $previousEncoding = [Console]::OutputEncoding
    [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false
} catch {
    $previousEncoding = $null   # no console (e.g. the ISE): keep the default
}

if (-not (Get-Command $AusiPath -CommandType Application -ErrorAction SilentlyContinue)) {
    Write-Log -Level Error -EventId 1003 -Message "ausi was not found as '$AusiPath': install it, add it to PATH or pass -AusiPath"
    exit 78
}

try {
    # ausi's stderr (warnings, log lines) is for people; in some hosts PowerShell turns each such
    # line into an error record, which must not stop the script.
    $ErrorActionPreference = 'Continue'
    $stdout = & $AusiPath @arguments | Out-String
    $exitCode = $LASTEXITCODE
} finally {
    $ErrorActionPreference = 'Stop'
    if ($null -ne $previousEncoding) { [Console]::OutputEncoding = $previousEncoding }
}

$report = $null
if ($stdout.Trim()) {
    try {
        $report = $stdout | ConvertFrom-Json
    } catch {
        $report = $null
    }
}
if ($null -eq $report) {
    Write-Log -Level Error -EventId 1003 -Message "ausi validate ended with exit code $exitCode and wrote no readable report (see its messages on stderr)"
    if ($exitCode -eq 0) { exit 70 }
    exit $exitCode
}

foreach ($warning in $report.warnings) {
    Write-Log -Level Warning -EventId 1004 -Message "ausi warning ($($warning.code)): $($warning.message)"
}

# --- act on the exit code -------------------------------------------------------------------
$summary = $null
$data = Get-Field $report 'data'
if ($null -ne $data) {
    $s = $data.summary
    $summary = "$($s.users_checked) users checked: $($s.valid) valid, $($s.with_problems) with problems, $($s.disabled) disabled."
    $failedRules = @($s.by_rule.PSObject.Properties | Where-Object { $_.Value -gt 0 } | ForEach-Object { "$($_.Name): $($_.Value)" })
    if ($failedRules.Count -gt 0) { $summary += ' By rule: ' + ($failedRules -join ', ') + '.' }
}

if ($exitCode -eq 0) {
    Write-Log -Level Information -EventId 1000 -Message "ausi validate: all users are ready. $summary"
} elseif ($exitCode -eq 1 -and $report.status -eq 'findings') {
    $rows = @(
        foreach ($user in $data.users) {
            foreach ($problem in $user.problems) {
                [pscustomobject]@{
                    dn                = $user.dn
                    sAMAccountName    = $user.sam_account_name
                    userPrincipalName = $user.user_principal_name
                    disabled          = $user.disabled
                    rule              = $problem.rule
                    message           = $problem.message
                }
            }
        }
        # Entries of an LDIF export that could not be parsed (not a validation rule of ausi).
        foreach ($entry in (Get-Field $data 'unreadable')) {
            [pscustomobject]@{
                dn                = $entry.location
                sAMAccountName    = $null
                userPrincipalName = $null
                disabled          = $null
                rule              = 'unreadable-entry'
                message           = $entry.message
            }
        }
    )
    $folder = Split-Path -Parent $CsvPath
    if ($folder -and -not (Test-Path -LiteralPath $folder)) {
        New-Item -ItemType Directory -Path $folder -Force | Out-Null
    }
    $rows | Export-Csv -LiteralPath $CsvPath -NoTypeInformation -Encoding UTF8
    Write-Log -Level Warning -EventId 1001 -Message "ausi validate: users need attention. $summary Details: $CsvPath"

    if ($MailTo) {
        if (-not $MailFrom -or -not $SmtpServer) {
            Write-Log -Level Warning -EventId 1004 -Message '-MailTo needs -MailFrom and -SmtpServer: no mail sent'
        } else {
            try {
                $mail = @{
                    To          = $MailTo
                    From        = $MailFrom
                    Subject     = "ausi: $($data.summary.with_problems) users in Active Directory need attention"
                    Body        = "$summary`r`n`r`nThe attached CSV lists each problem (one row per user and rule)."
                    Attachments = $CsvPath
                    SmtpServer  = $SmtpServer
                    Port        = $SmtpPort
                    UseSsl      = [bool] $UseSsl
                    Encoding    = [System.Text.Encoding]::UTF8
                }
                Send-MailMessage @mail
            } catch {
                Write-Log -Level Warning -EventId 1004 -Message "could not send the findings mail: $($_.Exception.Message)"
            }
        }
    }
} elseif ($exitCode -eq 75) {
    Write-Log -Level Warning -EventId 1002 -Message ("retry later: " + (Format-AusiError -Report $report -Code $exitCode))
} else {
    # 77 permission, 78 configuration, 3 safety stop, 2 usage, 70 internal error (please report
    # it), and exit code 1 with status "error" (something asked about was not found).
    Write-Log -Level Error -EventId 1003 -Message (Format-AusiError -Report $report -Code $exitCode)
}

exit $exitCode
