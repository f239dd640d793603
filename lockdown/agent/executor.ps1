# Fleet Lockdown agent v2: the executor. Loaded after primitives.ps1 (the agent script is the two
# files joined, this one last) and started by the unchanged bootstrap.ps1 as `& $agent $req`:
# $args[0] is the Program JSON (lockdown/engine/program.py, the wire contract). It runs the steps
# exactly as program.py's docstring says, prints ONE result (FLEET-LOCKDOWN-RESULT-BEGIN,
# base64(UTF-8 JSON of a ProgramResult), FLEET-LOCKDOWN-RESULT-END) with [Console]::Out, and
# returns its exit code as its only pipeline output: 0 ok, 2 program error. It knows nothing of
# rules or compliance. Windows PowerShell 5.1 only (the bootstrap answers PowerShell 2.0 itself).
# NEVER EXECUTED: there is no Windows here (see lockdown/agent/README.md).
$null = Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$script:FleetAgentVersion = '2.0.0'
$script:FleetProgramVersion = 1
$script:FleetVarPattern = '\{\{([A-Z][A-Z0-9_]*)\}\}'
$script:FleetMaxMessage = 4000

# op -> function: the only way a step reaches code (no Invoke-Expression, no built strings).
$script:FleetOps = @{
    'host_info'           = 'Invoke-FleetOpHostInfo'
    'registry_read'       = 'Invoke-FleetOpRegistryRead'
    'sd_read'             = 'Invoke-FleetOpSdRead'
    'dacl_write'          = 'Invoke-FleetOpDaclWrite'
    'sid_lookup'          = 'Invoke-FleetOpSidLookup'
    'user_get'            = 'Invoke-FleetOpUserGet'
    'group_get'           = 'Invoke-FleetOpGroupGet'
    'lsa_enum'            = 'Invoke-FleetOpLsaEnum'
    'service_get'         = 'Invoke-FleetOpServiceGet'
    'defender_get'        = 'Invoke-FleetOpDefenderGet'
    'sql'                 = 'Invoke-FleetOpSql'
    'tcp_probe'           = 'Invoke-FleetOpTcpProbe'
    'http_probe'          = 'Invoke-FleetOpHttpProbe'
    'logon_check'         = 'Invoke-FleetOpLogonCheck'
    'journal_read'        = 'Invoke-FleetOpJournalRead'
    'file_read'           = 'Invoke-FleetOpFileRead'
    'lsa_add'             = 'Invoke-FleetOpLsaAdd'
    'lsa_remove'          = 'Invoke-FleetOpLsaRemove'
    'user_create'         = 'Invoke-FleetOpUserCreate'
    'user_set_flags'      = 'Invoke-FleetOpUserSetFlags'
    'user_set_password'   = 'Invoke-FleetOpUserSetPassword'
    'user_delete'         = 'Invoke-FleetOpUserDelete'
    'group_create'        = 'Invoke-FleetOpGroupCreate'
    'group_delete'        = 'Invoke-FleetOpGroupDelete'
    'group_member_add'    = 'Invoke-FleetOpGroupMemberAdd'
    'group_member_remove' = 'Invoke-FleetOpGroupMemberRemove'
    'service_change'      = 'Invoke-FleetOpServiceChange'
    'service_control'     = 'Invoke-FleetOpServiceControl'
    'defender_add'        = 'Invoke-FleetOpDefenderAdd'
    'defender_remove'     = 'Invoke-FleetOpDefenderRemove'
    'journal_delete'      = 'Invoke-FleetOpJournalDelete'
    'sleep'               = 'Invoke-FleetOpSleep'
}

function Write-FleetResult {
    # The one result block, written to the console (never to the pipeline).
    param($Result)
    $json = ConvertTo-Json -InputObject $Result -Depth 32 -Compress
    [void][Console]::Out.WriteLine('FLEET-LOCKDOWN-RESULT-BEGIN')
    [void][Console]::Out.WriteLine([Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($json)))
    [void][Console]::Out.WriteLine('FLEET-LOCKDOWN-RESULT-END')
}

function Get-FleetField {
    # A property of a JSON object, or $Default when it is absent (StrictMode-safe).
    param($Object, [string]$Name, $Default)
    if ($null -eq $Object -or -not ($Object -is [System.Management.Automation.PSCustomObject])) { return $Default }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property) { return $Default }
    return $property.Value
}

function Protect-FleetText {
    # Secret values replaced by '***' (ordinal), then capped to the contract's message length.
    param([string]$Text, $State)
    $clean = $Text
    foreach ($secret in $State.secret_values) { $clean = $clean.Replace($secret, '***') }
    if ($clean.Length -gt $script:FleetMaxMessage) { $clean = $clean.Substring(0, $script:FleetMaxMessage) }
    return $clean
}

function New-FleetError {
    param([string]$Code, [string]$Message, $State)
    return [ordered]@{ code = $Code; message = (Protect-FleetText -Text $Message -State $State) }
}

function Get-FleetErrorCode {
    # win32_<n> (Win32Exception, IdentityNotMapped = 1332, HRESULT 0x8007xxxx), sql_<n>, exception.
    param($Exception)
    $current = $Exception
    while ($null -ne $current) {
        if ($current.GetType().FullName -eq 'System.Data.SqlClient.SqlException') { return ('sql_' + $current.Number) }
        if ($current -is [System.ComponentModel.Win32Exception]) { return ('win32_' + $current.NativeErrorCode) }
        if ($current -is [System.Security.Principal.IdentityNotMappedException]) { return 'win32_1332' }
        if (($current.HResult -band 0xFFFF0000) -eq 0x80070000) { return ('win32_' + ($current.HResult -band 0xFFFF)) }
        $current = $current.InnerException
    }
    return 'exception'
}

function Expand-FleetValue {
    # {{NAME}} in every string at any depth replaced by vars[NAME]; unknown names go to $Missing.
    param($Value, $Vars, $Missing)
    if ($null -eq $Value) { return $null }
    if ($Value -is [string]) {
        $text = New-Object -TypeName System.Text.StringBuilder
        $position = 0
        foreach ($match in [regex]::Matches($Value, $script:FleetVarPattern)) {
            $name = $match.Groups[1].Value
            [void]$text.Append($Value, $position, $match.Index - $position)
            if ($Vars.ContainsKey($name)) { [void]$text.Append([string]$Vars[$name]) } else { [void]$Missing.Add($name) }
            $position = $match.Index + $match.Length
        }
        [void]$text.Append($Value, $position, $Value.Length - $position)
        return $text.ToString()
    }
    if ($Value -is [System.Management.Automation.PSCustomObject]) {
        $copy = New-Object -TypeName System.Management.Automation.PSObject
        foreach ($property in @($Value.PSObject.Properties)) {
            $null = Add-Member -InputObject $copy -MemberType NoteProperty -Name $property.Name -Value (Expand-FleetValue -Value $property.Value -Vars $Vars -Missing $Missing)
        }
        return $copy
    }
    if ($Value -is [System.Collections.IList]) {
        $items = New-Object -TypeName System.Collections.ArrayList
        foreach ($item in $Value) { [void]$items.Add((Expand-FleetValue -Value $item -Vars $Vars -Missing $Missing)) }
        return , $items.ToArray()
    }
    return $Value
}

function Get-FleetChild {
    # One level of lookup(): a dictionary key, a JSON object property or a list index; $null if absent.
    param($Data, [string]$Part)
    $value = $null
    if ($Data -is [System.Collections.IDictionary]) {
        if ($Data.Contains($Part)) { $value = $Data[$Part] }
    } elseif ($Data -is [System.Management.Automation.PSCustomObject]) {
        $value = Get-FleetField -Object $Data -Name $Part -Default $null
    } elseif ($Data -is [System.Collections.IList] -and $Part -match '^[0-9]+$' -and [int]$Part -lt $Data.Count) {
        $value = $Data[[int]$Part]
    }
    if ($value -is [System.Collections.IList]) { return , $value }
    return $value
}

function Get-FleetPathValue {
    # program.py lookup(): dot-separated PATH, numeric parts index lists; $null when absent.
    param($Data, [string]$Path)
    $value = $Data
    foreach ($part in $Path.Split('.')) {
        if ($null -eq $value) { return $null }
        $value = Get-FleetChild -Data $value -Part $part
    }
    if ($value -is [System.Collections.IList]) { return , $value }
    return $value
}

function Test-FleetEqual {
    # JSON equality of a result value and an expected value (Python ==, bool kept apart from int).
    param($Left, $Right)
    if ($null -eq $Left -or $null -eq $Right) { return ($null -eq $Left -and $null -eq $Right) }
    if ($Left -is [string] -or $Right -is [string]) { return ($Left -is [string] -and $Right -is [string] -and [string]::Equals($Left, $Right, [StringComparison]::Ordinal)) }
    if ($Left -is [bool] -or $Right -is [bool]) { return ($Left -is [bool] -and $Right -is [bool] -and $Left -eq $Right) }
    $leftMap = ($Left -is [System.Collections.IDictionary]) -or ($Left -is [System.Management.Automation.PSCustomObject])
    $rightMap = ($Right -is [System.Collections.IDictionary]) -or ($Right -is [System.Management.Automation.PSCustomObject])
    if ($leftMap -or $rightMap) {
        if (-not ($leftMap -and $rightMap)) { return $false }
        $leftKeys = @(Get-FleetKeys -Map $Left)
        $rightKeys = @(Get-FleetKeys -Map $Right)
        if ($leftKeys.Count -ne $rightKeys.Count) { return $false }
        foreach ($key in $leftKeys) {
            if ($rightKeys -cnotcontains $key) { return $false }
            if (-not (Test-FleetEqual -Left (Get-FleetChild -Data $Left -Part $key) -Right (Get-FleetChild -Data $Right -Part $key))) { return $false }
        }
        return $true
    }
    if ($Left -is [System.Collections.IList] -or $Right -is [System.Collections.IList]) {
        if (-not ($Left -is [System.Collections.IList] -and $Right -is [System.Collections.IList]) -or $Left.Count -ne $Right.Count) { return $false }
        for ($i = 0; $i -lt $Left.Count; $i += 1) {
            if (-not (Test-FleetEqual -Left $Left[$i] -Right $Right[$i])) { return $false }
        }
        return $true
    }
    return ([double]$Left -eq [double]$Right)
}

function Get-FleetKeys {
    param($Map)
    if ($Map -is [System.Collections.IDictionary]) { return , @($Map.Keys | ForEach-Object { [string]$_ }) }
    return , @($Map.PSObject.Properties | ForEach-Object { $_.Name })
}

function Format-FleetPyStr {
    # The text expect_match matches (program.py): "" for null, True/False, numbers, text as is.
    param($Value)
    if ($null -eq $Value) { return '' }
    if ($Value -is [bool]) { if ($Value) { return 'True' } else { return 'False' } }
    if ($Value -is [string]) { return $Value }
    if ($Value -is [System.Collections.IDictionary] -or $Value -is [System.Collections.IList] -or $Value -is [System.Management.Automation.PSCustomObject]) {
        return (ConvertTo-Json -InputObject $Value -Depth 32 -Compress)
    }
    return [string]$Value
}

function Get-FleetPublicVars {
    # Bound variables for the result and the journal: secrets (by name and by value) left out.
    param($State)
    $public = [ordered]@{}
    if ($null -eq $State.vars) { return $public }
    foreach ($name in @($State.vars.Keys | Sort-Object)) {
        if ($State.secret_names -ccontains $name) { continue }
        $text = [string]$State.vars[$name]
        if ($State.secret_values -ccontains $text) { continue }
        $public[$name] = $text
    }
    return $public
}

function Test-FleetStepDone {
    # when_done: the step ran with status ok and its result's changed is not false.
    param($Ran)
    if ($null -eq $Ran -or $Ran.status -ne 'ok') { return $false }
    $changed = Get-FleetPathValue -Data $Ran.result -Path 'changed'
    return (-not ($changed -is [bool] -and -not $changed))
}

function Test-FleetExpectations {
    # expect (PATH -> VALUE) and expect_match (PATH -> .NET regex, case-sensitive); the first miss.
    param($Step, $Value)
    $expect = Get-FleetField -Object $Step -Name 'expect' -Default $null
    if ($null -ne $expect) {
        foreach ($entry in @($expect.PSObject.Properties)) {
            $actual = Get-FleetPathValue -Data $Value -Path $entry.Name
            if (-not (Test-FleetEqual -Left $actual -Right $entry.Value)) {
                return ('expect ' + $entry.Name + ': wanted ' + (ConvertTo-Json -InputObject $entry.Value -Depth 8 -Compress) + ', got ' + (ConvertTo-Json -InputObject $actual -Depth 8 -Compress))
            }
        }
    }
    $patterns = Get-FleetField -Object $Step -Name 'expect_match' -Default $null
    if ($null -ne $patterns) {
        foreach ($entry in @($patterns.PSObject.Properties)) {
            $text = Format-FleetPyStr -Value (Get-FleetPathValue -Data $Value -Path $entry.Name)
            if (-not [regex]::IsMatch($text, [string]$entry.Value)) {
                return ('expect_match ' + $entry.Name + ': ' + [string]$entry.Value + ' does not match ' + $text)
            }
        }
    }
    return $null
}

function Invoke-FleetPrimitive {
    # The dispatch: exactly one dictionary must come out, or the step is an error.
    param([string]$Op, $Arguments)
    $command = $script:FleetOps[$Op]
    $output = @(& $command -A $Arguments)
    if ($output.Count -ne 1 -or -not ($output[0] -is [System.Collections.IDictionary])) {
        throw ('primitive ' + $Op + ' returned ' + $output.Count + ' values, not one dictionary')
    }
    return $output[0]
}

function Invoke-FleetStep {
    # One step: when_done, when_ok, substitution, call, bind, expect, journal (program.py 2.0-2e, 3).
    param($Step, $State)
    $report = [ordered]@{ id = [string]$Step.id; op = [string]$Step.op; status = 'ok'; result = $null; error = $null }
    $whenDone = Get-FleetField -Object $Step -Name 'when_done' -Default $null
    if ($null -ne $whenDone -and -not (Test-FleetStepDone -Ran $State.ran[[string]$whenDone])) {
        $report.status = 'skipped'
        return $report
    }
    # when_ok: every listed earlier step ran with status ok (program.py 2.0).
    foreach ($needed in @(Get-FleetField -Object $Step -Name 'when_ok' -Default @())) {
        $earlier = $State.ran[[string]$needed]
        if ($null -eq $earlier -or $earlier.status -ne 'ok') {
            $report.status = 'skipped'
            return $report
        }
    }
    $missing = New-Object -TypeName System.Collections.ArrayList
    $arguments = Expand-FleetValue -Value (Get-FleetField -Object $Step -Name 'args' -Default (New-Object -TypeName System.Management.Automation.PSObject)) -Vars $State.vars -Missing $missing
    if ($missing.Count -gt 0) {
        $report.status = 'error'
        $report.error = New-FleetError -Code 'unbound_var' -Message ('unknown variable(s): ' + (@($missing | Select-Object -Unique) -join ', ')) -State $State
        return $report
    }
    try {
        $value = Invoke-FleetPrimitive -Op ([string]$Step.op) -Arguments $arguments
    } catch {
        $report.status = 'error'
        $report.error = New-FleetError -Code (Get-FleetErrorCode -Exception $_.Exception) -Message ([string]$_.Exception.Message) -State $State
        return $report
    }
    $report.result = $value
    $bind = Get-FleetField -Object $Step -Name 'bind' -Default $null
    if ($null -ne $bind) {
        foreach ($entry in @($bind.PSObject.Properties)) {
            # vars[VAR] = str(lookup(result, PATH)); a missing value leaves VAR unbound.
            $bound = Get-FleetPathValue -Data $value -Path ([string]$entry.Value)
            if ($bound -is [System.Collections.IList]) { $State.vars[$entry.Name] = [string]$bound }
            elseif ($null -ne $bound) { $State.vars[$entry.Name] = Format-FleetPyStr -Value $bound }
        }
    }
    try {
        $miss = Test-FleetExpectations -Step $Step -Value $value
    } catch {
        $miss = 'expect: ' + [string]$_.Exception.Message
    }
    if ($null -ne $miss) {
        $report.status = 'expect_failed'
        $report.error = New-FleetError -Code 'expect_failed' -Message $miss -State $State
    }
    $journal = Get-FleetField -Object $Step -Name 'journal' -Default $null
    $changed = $value['changed']
    if ($report.status -eq 'ok' -and $null -ne $journal -and $changed -is [bool] -and $changed) {
        $entry = [ordered]@{ step = [string]$Step.id; record = $journal; vars = (Get-FleetPublicVars -State $State) }
        try {
            Add-FleetJournalEntry -JobId $State.job_id -Entry $entry
        } catch {
            $report.status = 'error'
            $report.error = New-FleetError -Code 'journal_failed' -Message ([string]$_.Exception.Message) -State $State
        }
    }
    return $report
}

function Get-FleetRefusal {
    # Program-level refusals after parsing (version_mismatch, bad_program, not_64bit_process,
    # not_elevated); $null when the program may run.
    param($Program)
    if ([string](Get-FleetField -Object $Program -Name 'agent_version' -Default '') -cne $script:FleetAgentVersion -or (Get-FleetField -Object $Program -Name 'program_version' -Default $null) -ne $script:FleetProgramVersion) {
        return @('version_mismatch', ('this executor is agent ' + $script:FleetAgentVersion + ', program version ' + $script:FleetProgramVersion))
    }
    $jobId = Get-FleetField -Object $Program -Name 'job_id' -Default $null
    if (-not ($jobId -is [string]) -or $jobId -notmatch $script:FleetJobIdPattern) { return @('bad_program', 'job_id is missing or malformed') }
    $steps = @(Get-FleetField -Object $Program -Name 'steps' -Default $null) + @(Get-FleetField -Object $Program -Name 'on_failure' -Default @())
    foreach ($step in $steps) {
        $op = Get-FleetField -Object $step -Name 'op' -Default $null
        if (-not ((Get-FleetField -Object $step -Name 'id' -Default $null) -is [string]) -or -not ($op -is [string]) -or -not $script:FleetOps.ContainsKey($op)) {
            return @('bad_program', 'a step has no id or an unknown op')
        }
    }
    if ([Environment]::Is64BitOperatingSystem -and -not [Environment]::Is64BitProcess) {
        return @('not_64bit_process', 'a 32-bit PowerShell on a 64-bit Windows (file system redirection)')
    }
    $principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList ([System.Security.Principal.WindowsIdentity]::GetCurrent())
    if (-not $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)) {
        return @('not_elevated', 'the session is not elevated (not an administrator, or UAC remote restrictions filter this local account)')
    }
    return $null
}

function Invoke-FleetSteps {
    # The step loop, then on_failure when it aborted (program.py 2f, 3).
    param($Program, $State, $Result)
    foreach ($step in @(Get-FleetField -Object $Program -Name 'steps' -Default @())) {
        $report = Invoke-FleetStep -Step $step -State $State
        [void]$Result.steps.Add($report)
        $State.ran[$report.id] = $report
        if ($report.status -ne 'ok' -and [bool](Get-FleetField -Object $step -Name 'critical' -Default $false)) {
            $Result.aborted_at = $report.id
            break
        }
    }
    if ($null -eq $Result.aborted_at) { return }
    foreach ($step in @(Get-FleetField -Object $Program -Name 'on_failure' -Default @())) {
        $report = Invoke-FleetStep -Step $step -State $State
        [void]$Result.on_failure.Add($report)
        $State.ran[$report.id] = $report
    }
}

function Invoke-FleetProgram {
    # Refusals, the step loop, the one result; returns the exit code.
    param([string]$ProgramJson)
    # Nothing but hashtables and cmdlets before the language-mode check (ConstrainedLanguage
    # blocks most .NET types).
    $result = [ordered]@{
        agent_version = $script:FleetAgentVersion; job_id = $null; mode = $null; program_version = $null; error = $null
        steps = @(); aborted_at = $null; on_failure = @(); vars = [ordered]@{}
    }
    $state = @{ vars = $null; secret_names = @(); secret_values = @(); ran = @{}; job_id = $null }
    $code = 0
    try {
        if ([string]$ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {
            $result.error = New-FleetError -Code 'constrained_language' -Message ('PowerShell runs in ' + [string]$ExecutionContext.SessionState.LanguageMode + ' (AppLocker/WDAC)') -State $state
        } else {
            $state.vars = New-Object -TypeName System.Collections.Hashtable -ArgumentList @([StringComparer]::Ordinal)
            $result.steps = New-Object -TypeName System.Collections.ArrayList
            $result.on_failure = New-Object -TypeName System.Collections.ArrayList
            $program = $null
            try { $program = ConvertFrom-Json -InputObject $ProgramJson } catch { $program = $null }
            if (-not ($program -is [System.Management.Automation.PSCustomObject])) {
                $result.error = New-FleetError -Code 'bad_program' -Message 'the program is not a JSON object' -State $state
            } else {
                $result.job_id = Get-FleetField -Object $program -Name 'job_id' -Default $null
                $result.mode = Get-FleetField -Object $program -Name 'mode' -Default $null
                $result.program_version = Get-FleetField -Object $program -Name 'program_version' -Default $null
                $secrets = Get-FleetField -Object $program -Name 'secrets' -Default $null
                if ($null -ne $secrets) {
                    foreach ($entry in @($secrets.PSObject.Properties)) { $state.vars[$entry.Name] = [string]$entry.Value }
                    $state.secret_names = @($secrets.PSObject.Properties | ForEach-Object { $_.Name })
                    $state.secret_values = @($secrets.PSObject.Properties | ForEach-Object { [string]$_.Value } | Where-Object { $_ })
                }
                $refusal = Get-FleetRefusal -Program $program
                if ($null -ne $refusal) {
                    $result.error = New-FleetError -Code $refusal[0] -Message $refusal[1] -State $state
                } else {
                    $state.job_id = [string]$program.job_id
                    Invoke-FleetSteps -Program $program -State $state -Result $result
                }
            }
        }
    } catch {
        $result.error = New-FleetError -Code 'executor_error' -Message ([string]$_.Exception.Message) -State $state
    }
    if ($null -ne $result.error) { $code = 2 }
    $result.vars = Get-FleetPublicVars -State $state
    $result.steps = @($result.steps)
    $result.on_failure = @($result.on_failure)
    Write-FleetResult -Result $result
    return $code
}

return (Invoke-FleetProgram -ProgramJson ([string]$args[0]))
