# Fleet Lockdown bootstrap (-EncodedCommand). stdin: base64(gzip(UTF-8)) of the agent, then of the
# request JSON. Runs on PowerShell 2.0 (GZipStream is .NET 2.0), answering unsupported_powershell
# there. Keep it < 2 KB. Never executed here.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Out-FleetResult([string]$Json) {
    [Console]::Out.WriteLine('FLEET-LOCKDOWN-RESULT-BEGIN')
    [Console]::Out.WriteLine([Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($Json)))
    [Console]::Out.WriteLine('FLEET-LOCKDOWN-RESULT-END')
}
function Read-FleetLine([string]$Line) {
    $m = New-Object -TypeName IO.MemoryStream -ArgumentList (,[Convert]::FromBase64String($Line))
    $z = New-Object -TypeName IO.Compression.GZipStream -ArgumentList $m, ([IO.Compression.CompressionMode]::Decompress)
    (New-Object -TypeName IO.StreamReader -ArgumentList $z, ([Text.Encoding]::UTF8)).ReadToEnd()
}
$lines = @($input | ForEach-Object { "$_".Trim() } | Where-Object { $_ })
$req = ''
if ($lines.Count -ge 2) { $req = Read-FleetLine $lines[1] }
$v = $PSVersionTable.PSVersion
if ($v.Major -lt 5 -or ($v.Major -eq 5 -and $v.Minor -lt 1)) {
    # No ConvertTo-Json in 2.0: copy the request's (JSON-escaped) values.
    $head = ''
    foreach ($k in @('agent_version', 'job_id', 'mode')) {
        $m = [regex]::Match($req, '"' + $k + '":"((?:[^"\\]|\\.)*)"')
        $head += '"' + $k + '":"' + $m.Groups[1].Value + '",'
    }
    Out-FleetResult ('{' + $head + '"error":{"code":"unsupported_powershell","message":"requires WMF 5.1 (found PowerShell ' + $v + ')"}}')
    exit 3
}
try {
    $agent = [ScriptBlock]::Create((Read-FleetLine $lines[0]))
    $rc = & $agent $req | Select-Object -Last 1
    exit ([int]$rc)
} catch {
    $q = $req | ConvertFrom-Json
    $e = @{ code = 'agent_error'; message = 'bootstrap: ' + $_.Exception.Message }
    Out-FleetResult (@{ agent_version = $q.agent_version; job_id = $q.job_id; mode = $q.mode; error = $e } | ConvertTo-Json -Depth 4 -Compress)
    exit 2
}
