# Fleet Lockdown agent: service identities, restart + health check, Windows Search / Indexing
# Service around an apply, the Defender exclusion. Never executed by the project's tests.

$script:HealthSettleSeconds = 15
# Default ports; the request's `health` object (the Server's configured ports) overrides them.
$script:HealthChecks = @(
    @{ check = 'smtp'; service = 'MESMTPCS'; port = 25; command = 'EHLO fleet-lockdown.invalid'; banner = 'Mail(Enable| Enable SMTP) Service' }
    @{ check = 'pop'; service = 'MEPOPS'; port = 110; command = 'CAPA'; banner = 'Welcome to MailEnable' }
    @{ check = 'imap'; service = 'MEIMAPS'; port = 143; command = 'a1 CAPABILITY'; banner = 'Welcome to MailEnable' }
)
$script:HealthPages = @(
    @{ check = 'webmail'; key = 'webmail_url' }
    @{ check = 'webadmin'; key = 'admin_url' }
)
# The MTA's queue folders under MailEnable's Program Directory, and the rights it needs there:
# FILE_LIST_DIRECTORY (0x1) | FILE_ADD_FILE (0x2) | FILE_DELETE_CHILD (0x40).
$script:MtaQueueFolders = @('Queues\SMTP\Inbound\Messages', 'Queues\SMTP\Outgoing\Messages')
$script:MtaQueueMask = 0x43
$script:HealthTargets = $null
$script:HealthReport = $null

function Get-FleetService {
    param([string]$Name)
    if ($Name -notmatch '^[A-Za-z0-9_.\-]{1,80}$') { throw ('not a service name: ' + $Name) }
    return Get-CimInstance -ClassName Win32_Service -Filter ("Name='" + $Name + "'")
}

function Get-FleetServiceObservation {
    param($Service)
    if ($null -eq $Service) { return [ordered]@{ exists = $false } }
    return [ordered]@{
        exists         = $true
        start_name     = [string]$Service.StartName
        start_name_sid = Resolve-FleetStartNameSid -StartName ([string]$Service.StartName)
        state          = [string]$Service.State
        start_mode     = [string]$Service.StartMode
    }
}

function Invoke-FleetServiceIdentity {
    # Win32_Service.Change(StartName, StartPassword); the restart and health check follow once
    # every item is done (Complete-FleetServiceRestart).
    param($Item, [string]$Mode)
    $obs = New-FleetObservation -Item $Item
    $service = Get-FleetService -Name ([string]$Item.target)
    $obs.service = Get-FleetServiceObservation -Service $service
    $sid = Resolve-FleetSid -Name ([string]$Item.principal_name) -KnownSid ([string]$Item.principal_sid)
    $obs.principal_sid = $sid
    if ($Mode -ne 'apply' -or $null -eq $service -or $null -eq $sid -or $obs.service.start_name_sid -eq $sid) { return $obs }
    Set-FleetServiceAccountPassword -AccountName ([string]$Item.principal_name)
    $before = ConvertTo-Json -InputObject $obs.service -Compress
    $startName = '.\' + ([string]$Item.principal_name).Split('\')[-1]
    $arguments = @{ StartName = $startName; StartPassword = $script:ServicePassword }
    $outcome = Invoke-CimMethod -InputObject $service -MethodName Change -Arguments $arguments
    if ($outcome.ReturnValue -ne 0) { throw ('Win32_Service.Change returned ' + $outcome.ReturnValue) }
    [void]$script:RestartServices.Add([string]$Item.target)
    $obs.service = Get-FleetServiceObservation -Service (Get-FleetService -Name ([string]$Item.target))
    Add-FleetChange -Item $Item -Before $before -After (ConvertTo-Json -InputObject $obs.service -Compress) -Created $false
    $obs.action = 'changed'
    return $obs
}

function Get-FleetServicesRunningAs {
    # Services whose StartName translates to $Sid (compared by SID, never by name).
    param([string]$Sid)
    $names = @()
    foreach ($service in @(Get-CimInstance -ClassName Win32_Service)) {
        if ((Resolve-FleetStartNameSid -StartName ([string]$service.StartName)) -eq $Sid) { $names += [string]$service.Name }
    }
    return @($names | Sort-Object)
}

function Set-FleetServicePassword {
    # Win32_Service.Change with StartPassword only: the identity stays, the stored password is replaced.
    param([string[]]$Names, [string]$Password)
    foreach ($serviceName in $Names) {
        $arguments = @{ StartPassword = $Password }
        $outcome = Invoke-CimMethod -InputObject (Get-FleetService -Name $serviceName) -MethodName Change -Arguments $arguments
        if ($outcome.ReturnValue -ne 0) { throw ('Win32_Service.Change on ' + $serviceName + ' returned ' + $outcome.ReturnValue) }
    }
}

function Restart-FleetServices {
    param([string[]]$Names)
    foreach ($name in $Names) {
        Restart-Service -Name $name -Force
    }
}

function Test-FleetBanner {
    # One exchange on localhost: read the banner, send a command, read the answer.
    param([int]$Port, [string]$Command, [string]$Banner)
    $client = New-Object -TypeName System.Net.Sockets.TcpClient
    try {
        $client.ReceiveTimeout = 10000
        $client.SendTimeout = 10000
        $client.Connect('127.0.0.1', $Port)
        $stream = $client.GetStream()
        $reader = New-Object -TypeName System.IO.StreamReader -ArgumentList @($stream, [System.Text.Encoding]::ASCII)
        $writer = New-Object -TypeName System.IO.StreamWriter -ArgumentList @($stream, [System.Text.Encoding]::ASCII)
        $writer.NewLine = "`r`n"
        $writer.AutoFlush = $true
        $greeting = $reader.ReadLine()
        if ($greeting -notmatch $Banner) { return ('unexpected banner on port ' + $Port) }
        $writer.WriteLine($Command)
        $answer = $reader.ReadLine()
        if ($null -eq $answer -or $answer -match '^(-ERR|5\d\d|a1 (NO|BAD))') { return ('no valid answer to ' + $Command.Split(' ')[0]) }
        return $null
    } catch {
        return ('port ' + $Port + ': ' + $_.Exception.Message)
    } finally {
        $client.Close()
    }
}

function Get-FleetHealthTarget {
    # One field of the request's `health` object, or $null when it is absent.
    param([string]$Name)
    if ($null -eq $script:HealthTargets) { return $null }
    if ($script:HealthTargets.PSObject.Properties.Name -notcontains $Name) { return $null }
    return $script:HealthTargets.$Name
}

function Add-FleetHealthCheck {
    # One entry of the result's `health` list: ok, failed or not_checked, with a short detail.
    param([string]$Check, [string]$Status, [string]$Detail)
    if ($Detail.Length -gt 1000) { $Detail = $Detail.Substring(0, 1000) }
    [void]$script:HealthReport.Add([ordered]@{ check = $Check; status = $Status; detail = $Detail })
}

function Test-FleetWebPage {
    # GET a login page, redirects not followed: a 200 whose page has <title>MailEnable, or a 302
    # whose Location is a login page (login.aspx). Returns $null when it answers, else the problem.
    param([string]$Url)
    if ($Url -notmatch '^https?://') { return 'not an http(s) URL' }
    $response = $null
    try {
        $request = [System.Net.HttpWebRequest]([System.Net.WebRequest]::Create($Url))
        $request.Method = 'GET'
        $request.Timeout = 15000
        $request.ReadWriteTimeout = 15000
        $request.AllowAutoRedirect = $false
        $response = $request.GetResponse()
        $status = [int]$response.StatusCode
        if ($status -eq 302) {
            $location = [string]$response.Headers['Location']
            if ($location -match 'login\.aspx') { return $null }
            return ('302 to ' + $location + ', not a login page')
        }
        if ($status -ne 200) { return ('HTTP ' + $status) }
        $reader = New-Object -TypeName System.IO.StreamReader -ArgumentList @($response.GetResponseStream())
        if ($reader.ReadToEnd() -match '<title>\s*MailEnable') { return $null }
        return 'HTTP 200 without <title>MailEnable'
    } catch {
        return $_.Exception.Message
    } finally {
        if ($null -ne $response) { $response.Close() }
    }
}

function Test-FleetMtaQueues {
    # No test message is injected: MailEnable's queue file format is undocumented. What can be
    # checked honestly: MEMTAS runs (after settling) and its logon account (IME_SYSTEM once
    # hardened; compared by SID) has effective list/add/delete-child rights on both queue folders.
    $mta = Get-FleetService -Name 'MEMTAS'
    if ($null -eq $mta) { return 'MEMTAS is not installed' }
    if ([string]$mta.State -ne 'Running') { return ('MEMTAS is ' + $mta.State) }
    $sid = Resolve-FleetStartNameSid -StartName ([string]$mta.StartName)
    if ($null -eq $sid) { return ('cannot resolve the MEMTAS account ' + $mta.StartName) }
    $programDir = Get-FleetFirstValue -Values (Get-FleetMailEnableRegistry) -Names @('Program Directory')
    if (-not $programDir) { return 'MailEnable Program Directory not found in the registry' }
    $groups = @(Get-FleetPrincipalGroupSids -Name ([string]$mta.StartName))
    foreach ($folder in $script:MtaQueueFolders) {
        $path = Join-Path -Path $programDir -ChildPath $folder
        if (-not (Test-Path -LiteralPath $path)) { return ($path + ' does not exist') }
        $dacl = @(ConvertFrom-FleetSddl -Sddl (Get-FleetFileSddl -Path $path))
        if (-not (Test-FleetEffectiveAccess -Dacl $dacl -Sid $sid -GroupSids $groups -Mask $script:MtaQueueMask)) {
            return ('MEMTAS (' + $sid + ') cannot move messages in ' + $path)
        }
    }
    return $null
}

function Test-FleetMailHealth {
    # After identity changes: every restarted service still runs after settling; SMTP/POP/IMAP
    # answer on the configured ports with MailEnable's banners; the MTA runs and may move messages
    # in its queues (Test-FleetMtaQueues); webmail and web admin login pages answer when their URL
    # is set (else "not_checked"). Fills $script:HealthReport; returns the problems (empty = healthy).
    param([string[]]$Services)
    Start-Sleep -Seconds $script:HealthSettleSeconds
    $script:HealthReport = New-Object -TypeName System.Collections.ArrayList
    $problems = @()
    $down = @()
    foreach ($name in $Services) {
        $state = (Get-FleetService -Name $name).State
        if ($state -ne 'Running') { $down += ($name + ' is ' + $state) }
    }
    $problems += $down
    if ($down.Count -gt 0) {
        Add-FleetHealthCheck -Check 'services' -Status 'failed' -Detail ($down -join '; ')
    } else {
        Add-FleetHealthCheck -Check 'services' -Status 'ok' -Detail ('running: ' + ($Services -join ', '))
    }
    foreach ($check in $script:HealthChecks) {
        $port = [int]$check.port
        $configured = Get-FleetHealthTarget -Name ($check.check + '_port')
        if ($null -ne $configured) { $port = [int]$configured }
        if ($null -eq (Get-FleetService -Name $check.service)) {
            Add-FleetHealthCheck -Check $check.check -Status 'not_checked' -Detail ($check.service + ' is not installed')
            continue
        }
        $problem = Test-FleetBanner -Port $port -Command $check.command -Banner $check.banner
        if ($null -ne $problem) {
            $problems += ($check.service + ': ' + $problem)
            Add-FleetHealthCheck -Check $check.check -Status 'failed' -Detail $problem
        } else {
            Add-FleetHealthCheck -Check $check.check -Status 'ok' -Detail ('port ' + $port)
        }
    }
    $problem = Test-FleetMtaQueues
    if ($null -ne $problem) {
        $problems += ('mta: ' + $problem)
        Add-FleetHealthCheck -Check 'mta' -Status 'failed' -Detail $problem
    } else {
        Add-FleetHealthCheck -Check 'mta' -Status 'ok' -Detail 'MEMTAS running; queue folders writable (no test message injected)'
    }
    foreach ($page in $script:HealthPages) {
        $url = [string](Get-FleetHealthTarget -Name $page.key)
        if (-not $url) {
            Add-FleetHealthCheck -Check $page.check -Status 'not_checked' -Detail 'not checked: no URL configured'
            continue
        }
        $problem = Test-FleetWebPage -Url $url
        if ($null -ne $problem) {
            $problems += ($page.check + ': ' + $problem)
            Add-FleetHealthCheck -Check $page.check -Status 'failed' -Detail ($url + ': ' + $problem)
        } else {
            Add-FleetHealthCheck -Check $page.check -Status 'ok' -Detail $url
        }
    }
    return @($problems)
}

function Complete-FleetServiceRestart {
    # Restart what changed identity, check health; on failure roll back this run's changes.
    param($Result)
    $names = @($script:RestartServices | Select-Object -Unique)
    if ($names.Count -eq 0) { return }
    $problems = @()
    try {
        Restart-FleetServices -Names $names
    } catch {
        $problems += ('restart failed: ' + $_.Exception.Message)
    }
    $problems += @(Test-FleetMailHealth -Services $names)
    if ($problems.Count -eq 0) { return }
    $undone = Undo-FleetChangeList -Changes @($script:Changes)
    if ($script:UndoFailedJobs.Count -eq 0) { Remove-FleetJournal -JobId $script:JobId }
    foreach ($item in $Result.items) {
        if ($item.action -eq 'changed') { $item.action = 'rolled_back' }
    }
    $Result.action = 'rolled_back'
    $Result.error = [ordered]@{
        code    = 'health_check_failed'
        message = ('health check failed (' + ($problems -join '; ') + '); this run''s changes were rolled back (' + $undone + ' undone)')
    }
}

function Undo-FleetServiceChange {
    # Back to LocalSystem (a previous custom account cannot be restored without its password).
    param($Change)
    $service = Get-FleetService -Name ([string]$Change.target)
    if ($null -eq $service) { return 'none' }
    $arguments = @{ StartName = 'LocalSystem'; StartPassword = '' }
    $outcome = Invoke-CimMethod -InputObject $service -MethodName Change -Arguments $arguments
    if ($outcome.ReturnValue -ne 0) { throw ('Win32_Service.Change returned ' + $outcome.ReturnValue) }
    Restart-Service -Name ([string]$Change.target) -Force
    return 'rolled_back'
}

function Invoke-FleetSearchPreflight {
    # Windows Search (WSearch) or the Indexing Service (cisvc): stopped for the duration of an
    # apply, restored afterwards (Restore-FleetSearchServices). Verify only reports its state.
    param($Item, [string]$Mode)
    $obs = New-FleetObservation -Item $Item
    $service = Get-Service -Name ([string]$Item.target) -ErrorAction SilentlyContinue
    if ($null -eq $service) {
        $obs.search = [ordered]@{ present = $false }
        return $obs
    }
    $obs.search = [ordered]@{ present = $true; state_before = [string]$service.Status }
    if ($Mode -ne 'apply') { return $obs }
    if ($service.Status -ne 'Stopped') {
        Stop-Service -Name ([string]$Item.target) -Force
        $obs.action = 'changed'
    }
    $obs.search.state_during_job = [string](Get-Service -Name ([string]$Item.target)).Status
    [void]$script:SearchObservations.Add($obs)
    return $obs
}

function Restore-FleetSearchServices {
    foreach ($obs in $script:SearchObservations) {
        $name = [string]$obs.target
        try {
            if ($obs.search.state_before -eq 'Running') { Start-Service -Name $name }
        } catch {
            $obs.error = ('could not restart ' + $name + ': ' + $_.Exception.Message)
        }
        $obs.search.state_after = [string](Get-Service -Name $name).Status
    }
}

function Invoke-FleetDefenderExclusion {
    # Add-MpPreference appends (Set-MpPreference would replace the list). Recorded, so rollback
    # removes only the path we added.
    param($Item, [string]$Mode)
    $obs = New-FleetObservation -Item $Item
    if ($null -eq (Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue)) {
        $obs.error = 'Windows Defender cmdlets are not available'
        return $obs
    }
    $existing = @((Get-MpPreference).ExclusionPath | Where-Object { $_ })
    $obs.av_exclusions = $existing
    $target = ([string]$Item.target).TrimEnd('\')
    $covered = @($existing | Where-Object { $target -eq $_.TrimEnd('\') -or $target.StartsWith($_.TrimEnd('\') + '\', [StringComparison]::OrdinalIgnoreCase) })
    if ($Mode -ne 'apply' -or $covered.Count -gt 0) { return $obs }
    Add-MpPreference -ExclusionPath $target
    $obs.av_exclusions = @((Get-MpPreference).ExclusionPath | Where-Object { $_ })
    Add-FleetChange -Item $Item -Before (ConvertTo-Json -InputObject @($existing) -Compress) -After (ConvertTo-Json -InputObject @($target) -Compress) -Created $true
    $obs.action = 'changed'
    return $obs
}

function Undo-FleetDefenderExclusion {
    param($Change)
    if (-not $Change.created_object) { return 'none' }
    Remove-MpPreference -ExclusionPath ([string]$Change.target)
    return 'rolled_back'
}
