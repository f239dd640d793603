# Fleet Lockdown agent: the mode switch. Loaded last (after the handler files) and started by the
# bootstrap with the request JSON as $args[0]. Prints one result between the markers and returns
# the exit code: 0 ok, 2 agent error. The status judgement is done in Python; this script only
# observes and changes. Never executed by the project's tests (see README.md).

function Invoke-FleetItem {
    # One plan item, dispatched by rule type; every error is recorded on the item, never fatal.
    param($Item, [string]$Mode)
    switch ([string]$Item.rule_type) {
        'registry_acl' { return Invoke-FleetRegistryAcl -Item $Item -Mode $Mode }
        'file_acl' { return Invoke-FleetFileAcl -Item $Item -Mode $Mode }
        'file_deny' { return Invoke-FleetFileDeny -Item $Item -Mode $Mode }
        'path_acl' { return Invoke-FleetPathAcl -Item $Item -Mode $Mode }
        'local_user' { return Invoke-FleetLocalUser -Item $Item -Mode $Mode }
        'local_group' { return Invoke-FleetLocalGroup -Item $Item -Mode $Mode }
        'group_member' { return Invoke-FleetGroupMember -Item $Item -Mode $Mode }
        'user_right' { return Invoke-FleetUserRight -Item $Item -Mode $Mode }
        'sql_grant' { return Invoke-FleetSqlGrant -Item $Item -Mode $Mode }
        'service_identity' { return Invoke-FleetServiceIdentity -Item $Item -Mode $Mode }
        'preflight' {
            if ($Item.preflight_check -eq 'av_exclusion') { return Invoke-FleetDefenderExclusion -Item $Item -Mode $Mode }
            return Invoke-FleetSearchPreflight -Item $Item -Mode $Mode
        }
    }
    throw ('unknown rule type ' + [string]$Item.rule_type)
}

function Invoke-FleetPlan {
    # verify and apply. Search services are stopped first (preflight items come first in apply)
    # and restored in `finally`, after the service restart and health check.
    param($Plan, [string]$Mode, $Result)
    $items = @($Plan.items | Where-Object { $null -eq $_.status })
    if ($Mode -eq 'apply') {
        $items = @($items | Where-Object { $_.rule_type -eq 'preflight' }) + @($items | Where-Object { $_.rule_type -ne 'preflight' })
    }
    try {
        foreach ($item in $items) {
            try {
                $obs = Invoke-FleetItem -Item $item -Mode $Mode
            } catch {
                $obs = New-FleetObservation -Item $item
                $obs.error = $_.Exception.Message
                if ($Mode -eq 'apply') { $obs.action = 'failed' }
            }
            [void]$Result.items.Add($obs)
        }
        if ($Mode -eq 'apply') { Complete-FleetServiceRestart -Result $Result }
    } finally {
        if ($Mode -eq 'apply') { Restore-FleetSearchServices }
    }
}

function Undo-FleetChange {
    param($Change)
    switch ([string]$Change.target_kind) {
        'file' { return Undo-FleetAclChange -Change $Change }
        'directory' { return Undo-FleetAclChange -Change $Change }
        'registry_key' { return Undo-FleetAclChange -Change $Change }
        'service' { return Undo-FleetServiceChange -Change $Change }
        'av_exclusion' { return Undo-FleetDefenderExclusion -Change $Change }
        'sql_database' { return Undo-FleetSqlChange -Change $Change }
        default { return Undo-FleetAccountChange -Change $Change }
    }
}

function Undo-FleetChangeList {
    # Newest first. Returns how many changes were undone; failures are left for the report.
    param([object[]]$Changes, $Result)
    $ordered = @($Changes | Sort-Object -Property @{ Expression = { [int]$_.sequence } } -Descending)
    $done = 0
    foreach ($change in $ordered) {
        $obs = [ordered]@{ rule_id = [string]$change.rule_id; target = [string]$change.target; action = 'none' }
        try {
            $obs.action = Undo-FleetChange -Change $change
            if ($obs.action -eq 'rolled_back') { $done += 1 }
        } catch {
            $obs.error = $_.Exception.Message
            $obs.action = 'failed'
            if ($change.job_id) { [void]$script:UndoFailedJobs.Add([string]$change.job_id) }
        }
        if ($null -ne $Result) { [void]$Result.items.Add($obs) }
    }
    return $done
}

function Get-FleetRecoveredChanges {
    # Journal entries of the request's recover_job_ids (runs whose result never reached the
    # database) that its change list does not carry already: same job_id and sequence.
    param($Request)
    $names = $Request.PSObject.Properties.Name
    if ($names -notcontains 'recover_job_ids') { return @() }
    $listed = @{}
    foreach ($change in @($Request.rollback)) {
        if ($change.job_id) { $listed[[string]$change.job_id + '#' + [string]$change.sequence] = $true }
    }
    $recovered = New-Object -TypeName System.Collections.ArrayList
    foreach ($jobId in @($Request.recover_job_ids | Select-Object -Unique)) {
        foreach ($entry in @(Read-FleetJournal -JobId ([string]$jobId))) {
            if ($listed.ContainsKey([string]$jobId + '#' + [string]$entry.sequence)) { continue }
            [void]$recovered.Add($entry)
        }
    }
    return @($recovered)
}

function Invoke-FleetRollback {
    # The request's changes (oldest first) then the recovered ones (a lost run counts as the newest),
    # renumbered so Undo-FleetChangeList undoes the whole list newest first.
    param($Request, $Result)
    $recovered = @(Get-FleetRecoveredChanges -Request $Request)
    $Result.recovered = $recovered
    $merged = New-Object -TypeName System.Collections.ArrayList
    foreach ($change in (@($Request.rollback) + $recovered)) {
        [void]$merged.Add([ordered]@{
                rule_id        = [string]$change.rule_id
                target         = [string]$change.target
                target_kind    = [string]$change.target_kind
                sequence       = $merged.Count
                before         = $change.before
                after          = $change.after
                created_object = [bool]$change.created_object
                job_id         = $change.job_id
            })
    }
    $restart = @($merged | Where-Object { $_.target_kind -eq 'service' })
    [void](Undo-FleetChangeList -Changes @($merged) -Result $Result)
    if ($restart.Count -gt 0) {
        $problems = @(Test-FleetMailHealth -Services @($restart | ForEach-Object { [string]$_.target }))
        if ($problems.Count -gt 0) {
            $Result.error = [ordered]@{ code = 'health_check_failed'; message = ('after rollback: ' + ($problems -join '; ')) }
        }
    }
    if ($null -eq $Result['error']) {
        # Undone: the journals of these jobs are spent (kept when one of their changes failed).
        $recoverIds = @()
        if ($Request.PSObject.Properties.Name -contains 'recover_job_ids') { $recoverIds = @($Request.recover_job_ids) }
        $jobs = @(@($merged | ForEach-Object { $_.job_id }) + $recoverIds | Where-Object { $_ } | Select-Object -Unique)
        foreach ($jobId in $jobs) {
            if ($script:UndoFailedJobs -notcontains [string]$jobId) { Remove-FleetJournal -JobId ([string]$jobId) }
        }
    }
}

function Invoke-FleetAgent {
    param([string]$RequestJson)
    $request = $RequestJson | ConvertFrom-Json
    $result = [ordered]@{
        agent_version = [string]$request.agent_version
        mode          = [string]$request.mode
        job_id        = [string]$request.job_id
        items         = New-Object -TypeName System.Collections.ArrayList
        changes       = @()
        action        = 'none'
    }
    $code = 0
    try {
        if (-not (Test-FleetElevated)) {
            $result.error = [ordered]@{ code = 'not_elevated'; message = 'the WinRM session is not elevated (not an administrator, or UAC remote restrictions filter this local account)' }
            $code = 2
        } else {
            $script:JobId = [string]$request.job_id
            if ($request.PSObject.Properties.Name -contains 'service_password') { $script:ServicePassword = [string]$request.service_password }
            if ($request.PSObject.Properties.Name -contains 'service_account') { $script:ServiceAccountName = [string]$request.service_account }
            if ($request.PSObject.Properties.Name -contains 'health') { $script:HealthTargets = $request.health }
            if ($request.PSObject.Properties.Name -contains 'reset_adopted_password') { $script:ResetAdoptedPassword = [bool]$request.reset_adopted_password }
            switch ([string]$request.mode) {
                'discover' { $result.facts = Invoke-FleetDiscover }
                'verify' { Invoke-FleetPlan -Plan $request.plan -Mode 'verify' -Result $result }
                'apply' { Invoke-FleetPlan -Plan $request.plan -Mode 'apply' -Result $result }
                'rollback' { Invoke-FleetRollback -Request $request -Result $result }
                'rotate_password' { Invoke-FleetPasswordRotation -Request $request -Result $result }
                default { throw ('unknown mode ' + [string]$request.mode) }
            }
            if ($null -ne $script:Rotation) { $result.rotation = $script:Rotation }
            if ($null -ne $script:HealthReport) { $result.health = @($script:HealthReport) }
        }
    } catch {
        $result.error = [ordered]@{ code = 'agent_error'; message = $_.Exception.Message }
        $code = 2
    } finally {
        $script:ServicePassword = $null
    }
    $result.changes = @($script:Changes)
    if (@($script:Changes).Count -gt 0 -and $result.action -eq 'none') { $result.action = 'changed' }
    $result.items = @($result.items)
    if ($null -ne $result['error'] -and $code -eq 0) { $code = 2 }
    Write-FleetResult -Result $result
    return $code
}

Invoke-FleetAgent -RequestJson ([string]$args[0])
