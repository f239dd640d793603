# Fleet Lockdown bootstrap. Runs as powershell.exe -EncodedCommand; stdin carries two lines:
# base64(UTF-8 agent script) and base64(UTF-8 request JSON). Must parse and run on PowerShell
# 2.0, where it answers unsupported_powershell. Keep it under 2 KB. Not executed here (no Windows).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Out-FleetResult([string]$Json) {
    [Console]::Out.WriteLine('FLEET-LOCKDOWN-RESULT-BEGIN')
    [Console]::Out.WriteLine([Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($Json)))
    [Console]::Out.WriteLine('FLEET-LOCKDOWN-RESULT-END')
}
$lines = @($input | ForEach-Object { "$_".Trim() } | Where-Object { $_ })
$req = ''
if ($lines.Count -ge 2) { $req = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[1])) }
$v = $PSVersionTable.PSVersion
if ($v.Major -lt 5 -or ($v.Major -eq 5 -and $v.Minor -lt 1)) {
    # No ConvertTo-Json before 3.0: copy the request's own (already JSON-escaped) values.
    $head = ''
    foreach ($k in @('agent_version', 'job_id', 'mode')) {
        $m = [regex]::Match($req, '"' + $k + '":"((?:[^"\\]|\\.)*)"')
        $head += '"' + $k + '":"' + $m.Groups[1].Value + '",'
    }
    Out-FleetResult ('{' + $head + '"error":{"code":"unsupported_powershell","message":"requires WMF 5.1 (found PowerShell ' + $v + ')"}}')
    exit 3
}
try {
    $agent = [ScriptBlock]::Create([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($lines[0])))
    $rc = & $agent $req | Select-Object -Last 1
    exit ([int]$rc)
} catch {
    $q = $req | ConvertFrom-Json
    $e = @{ code = 'agent_error'; message = 'bootstrap: ' + $_.Exception.Message }
    Out-FleetResult (@{ agent_version = $q.agent_version; job_id = $q.job_id; mode = $q.mode; error = $e } | ConvertTo-Json -Depth 4 -Compress)
    exit 2
}
