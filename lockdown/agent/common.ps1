# Fleet Lockdown agent: shared helpers (result, SIDs, ACE reading, privileges, change records).
# Runs on Windows PowerShell 5.1 (valid on PowerShell 7). It has never been executed by this
# project's tests: it is syntax-checked and structurally tested, and winlab implements the same
# contract in Python. See lockdown/agent/README.md.
Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$script:ResultBegin = 'FLEET-LOCKDOWN-RESULT-BEGIN'
$script:ResultEnd = 'FLEET-LOCKDOWN-RESULT-END'
$script:Changes = New-Object -TypeName System.Collections.ArrayList
$script:RestartServices = New-Object -TypeName System.Collections.ArrayList
$script:SearchObservations = New-Object -TypeName System.Collections.ArrayList
$script:ServicePassword = $null
$script:PasswordSetThisRun = $false
$script:ServiceAccountName = 'IME_SYSTEM'
$script:ResetAdoptedPassword = $false
$script:Rotation = $null
$script:TrustedInstallerSid = 'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464'
$script:ImplicitGroupSids = @('S-1-1-0', 'S-1-5-11', 'S-1-5-32-545')
$script:AdministratorsSid = 'S-1-5-32-544'
$script:LocalSystemSid = 'S-1-5-18'
$script:JobId = ''
$script:JournalReady = $false
$script:UndoFailedJobs = New-Object -TypeName System.Collections.ArrayList

function Write-FleetResult {
    param([System.Collections.IDictionary]$Result)
    $json = ConvertTo-Json -InputObject $Result -Depth 10 -Compress
    $encoded = [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($json))
    [Console]::Out.WriteLine($script:ResultBegin)
    [Console]::Out.WriteLine($encoded)
    [Console]::Out.WriteLine($script:ResultEnd)
}

function New-FleetObservation {
    param($Item)
    $obs = [ordered]@{ rule_id = [string]$Item.rule_id; target = [string]$Item.target; action = 'none' }
    return $obs
}

function Add-FleetChange {
    param($Item, [string]$Before, [string]$After, [bool]$Created)
    $record = [ordered]@{
        rule_id        = [string]$Item.rule_id
        target         = [string]$Item.target
        target_kind    = [string]$Item.target_kind
        sequence       = $script:Changes.Count
        before         = $Before
        after          = $After
        created_object = $Created
        job_id         = $script:JobId
    }
    [void]$script:Changes.Add($record)
    # On the host before the change is reported: a run whose result is lost stays recoverable.
    Write-FleetJournal
}

function Get-FleetJournalPath {
    # @(FleetLockdown folder, journal folder, <job_id>.json) under %ProgramData%; characters a file
    # name cannot hold become '_' (the runner's job ids are "<job>.<hostrun>").
    param([string]$JobId)
    $root = Join-Path -Path $env:ProgramData -ChildPath 'FleetLockdown'
    $folder = Join-Path -Path $root -ChildPath 'journal'
    $name = ($JobId -replace '[^A-Za-z0-9._-]', '_') + '.json'
    return @($root, $folder, (Join-Path -Path $folder -ChildPath $name))
}

function Initialize-FleetJournalFolder {
    # The folder holds SDDL snapshots: SYSTEM and Administrators only, protected (nothing inherited).
    param([string]$Path)
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) {
        [void](New-Item -ItemType Directory -Path $Path -Force)
    }
    $security = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    $security.SetAccessRuleProtection($true, $false)
    $inherit = [System.Security.AccessControl.InheritanceFlags]::ContainerInherit -bor [System.Security.AccessControl.InheritanceFlags]::ObjectInherit
    foreach ($sid in @($script:LocalSystemSid, $script:AdministratorsSid)) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList @(
            $identity,
            [System.Security.AccessControl.FileSystemRights]::FullControl,
            $inherit,
            [System.Security.AccessControl.PropagationFlags]::None,
            [System.Security.AccessControl.AccessControlType]::Allow
        )
        $security.AddAccessRule($rule)
    }
    $security.SetOwner((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $script:AdministratorsSid))
    Assert-FleetJournalTrusted -Path $Path
    (Get-Item -LiteralPath $Path -Force).SetAccessControl($security)
}

function Assert-FleetJournalTrusted {
    # Users may create folders under ProgramData: a journal path someone else planted (a junction,
    # or a folder/file not owned by SYSTEM, Administrators or this account) is never written or read.
    param([string]$Path)
    $item = Get-Item -LiteralPath $Path -Force
    if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) { throw ('journal path is a reparse point: ' + $Path) }
    $owner = $item.GetAccessControl('Owner').GetOwner([System.Security.Principal.SecurityIdentifier]).Value
    $trusted = @($script:LocalSystemSid, $script:AdministratorsSid, [System.Security.Principal.WindowsIdentity]::GetCurrent().User.Value)
    if ($trusted -notcontains $owner) { throw ('journal path is owned by ' + $owner + ', not by an administrator: ' + $Path) }
}

function Write-FleetJournal {
    # Rewrites <job_id>.json with every change of this run so far (temp file, then replace).
    if (-not $script:JobId) { return }
    $paths = Get-FleetJournalPath -JobId $script:JobId
    if (-not $script:JournalReady) {
        Initialize-FleetJournalFolder -Path $paths[0]
        Initialize-FleetJournalFolder -Path $paths[1]
        $script:JournalReady = $true
    }
    $json = ConvertTo-Json -InputObject @($script:Changes) -Depth 5 -Compress
    $temp = $paths[2] + '.tmp'
    [System.IO.File]::WriteAllText($temp, $json, [System.Text.Encoding]::UTF8)
    if (Test-Path -LiteralPath $paths[2] -PathType Leaf) {
        [void][System.IO.File]::Replace($temp, $paths[2], $null)
    } else {
        [System.IO.File]::Move($temp, $paths[2])
    }
}

function Read-FleetJournal {
    # The journal entries of one job id (none when it has no journal on this host).
    param([string]$JobId)
    $paths = Get-FleetJournalPath -JobId $JobId
    if (-not (Test-Path -LiteralPath $paths[2] -PathType Leaf)) { return @() }
    foreach ($path in $paths) { Assert-FleetJournalTrusted -Path $path }
    $parsed = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText($paths[2], [System.Text.Encoding]::UTF8))
    $entries = New-Object -TypeName System.Collections.ArrayList
    foreach ($entry in $parsed) { [void]$entries.Add($entry) }
    return @($entries)
}

function Remove-FleetJournal {
    # After its changes were undone: the job's journal, then the folders when they are empty.
    param([string]$JobId)
    if (-not $JobId) { return }
    $paths = Get-FleetJournalPath -JobId $JobId
    if (Test-Path -LiteralPath $paths[2] -PathType Leaf) { Remove-Item -LiteralPath $paths[2] -Force }
    foreach ($folder in @($paths[1], $paths[0])) {
        if ((Test-Path -LiteralPath $folder -PathType Container) -and @(Get-ChildItem -LiteralPath $folder -Force).Count -eq 0) {
            Remove-Item -LiteralPath $folder -Force
        }
    }
}

function ConvertTo-FleetUInt32 {
    param([int64]$Value)
    return [int64]($Value -band [int64]4294967295)
}

function Resolve-FleetSid {
    # Name (HOST\account, or a SID string) to SID string; $null when the account does not exist.
    param([string]$Name, [string]$KnownSid)
    if ($KnownSid) { return $KnownSid }
    if ($Name -match '^S-1-[0-9-]+$') { return $Name }
    try {
        $account = New-Object -TypeName System.Security.Principal.NTAccount -ArgumentList $Name
        return $account.Translate([System.Security.Principal.SecurityIdentifier]).Value
    } catch {
        $short = $Name.Split('\')[-1]
        $entry = Get-FleetLocalAccount -Name $short -SchemaClass 'user'
        if ($null -eq $entry) { $entry = Get-FleetLocalAccount -Name $short -SchemaClass 'group' }
        if ($null -eq $entry) { return $null }
        return Get-FleetAdsiSid -Entry $entry
    }
}

function Resolve-FleetStartNameSid {
    # Win32_Service.StartName to a SID: LocalSystem and the NT AUTHORITY names are fixed.
    param([string]$StartName)
    if (-not $StartName) { return $null }
    switch -Regex ($StartName) {
        '^(LocalSystem|NT AUTHORITY\\SYSTEM)$' { return 'S-1-5-18' }
        '^NT AUTHORITY\\LocalService$' { return 'S-1-5-19' }
        '^NT AUTHORITY\\NetworkService$' { return 'S-1-5-20' }
    }
    $name = $StartName
    if ($name.StartsWith('.\')) { $name = $env:COMPUTERNAME + $name.Substring(1) }
    return Resolve-FleetSid -Name $name -KnownSid $null
}

function Get-FleetLocalAccount {
    param([string]$Name, [string]$SchemaClass)
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    try {
        return $computer.Children.Find($Name, $SchemaClass)
    } catch {
        return $null
    }
}

function Get-FleetAdsiSid {
    param($Entry)
    $bytes = [byte[]]$Entry.Properties['objectSid'].Value
    return (New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList @($bytes, 0)).Value
}

function Get-FleetPrincipalGroupSids {
    # Local groups an account belongs to (for the effective-access arithmetic in Python).
    param([string]$Name)
    $short = $Name.Split('\')[-1]
    $user = Get-FleetLocalAccount -Name $short -SchemaClass 'user'
    if ($null -eq $user) { return @() }
    $sids = @()
    foreach ($group in @($user.psbase.Invoke('Groups'))) {
        $bytes = $group.GetType().InvokeMember('objectSid', 'GetProperty', $null, $group, $null)
        $sids += (New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList @([byte[]]$bytes, 0)).Value
    }
    return @($sids)
}

function ConvertFrom-FleetSddl {
    # One DACL as contract ACEs: raw masks (generic bits kept), allow/deny, inherited, flags.
    param([string]$Sddl)
    $raw = New-Object -TypeName System.Security.AccessControl.RawSecurityDescriptor -ArgumentList $Sddl
    $aces = @()
    if ($null -eq $raw.DiscretionaryAcl) { return @() }
    foreach ($ace in $raw.DiscretionaryAcl) {
        if (-not ($ace -is [System.Security.AccessControl.CommonAce])) { continue }
        $type = $null
        if ($ace.AceQualifier -eq [System.Security.AccessControl.AceQualifier]::AccessAllowed) { $type = 'allow' }
        if ($ace.AceQualifier -eq [System.Security.AccessControl.AceQualifier]::AccessDenied) { $type = 'deny' }
        if ($null -eq $type) { continue }
        $flags = @()
        if ($ace.AceFlags -band [System.Security.AccessControl.AceFlags]::ContainerInherit) { $flags += 'container_inherit' }
        if ($ace.AceFlags -band [System.Security.AccessControl.AceFlags]::ObjectInherit) { $flags += 'object_inherit' }
        if ($ace.AceFlags -band [System.Security.AccessControl.AceFlags]::NoPropagateInherit) { $flags += 'no_propagate' }
        if ($ace.AceFlags -band [System.Security.AccessControl.AceFlags]::InheritOnly) { $flags += 'inherit_only' }
        $aces += [ordered]@{
            sid       = $ace.SecurityIdentifier.Value
            type      = $type
            mask      = ConvertTo-FleetUInt32 -Value $ace.AccessMask
            inherited = [bool]($ace.AceFlags -band [System.Security.AccessControl.AceFlags]::Inherited)
            flags     = @($flags)
        }
    }
    return @($aces)
}

function Test-FleetEffectiveAccess {
    # Whether the token (the SID, the implicit groups, its local groups) gets every bit of $Mask
    # from the DACL: allowed minus denied, raw masks, inherit-only ACEs skipped. Privileges and
    # owner rights are not modelled. Used by effective_access rules and the MTA queue check.
    param([object[]]$Dacl, [string]$Sid, [string[]]$GroupSids, [int64]$Mask)
    $token = @($Sid) + $script:ImplicitGroupSids + @($GroupSids)
    $allowed = [int64]0
    $denied = [int64]0
    foreach ($ace in $Dacl) {
        if ($token -notcontains $ace.sid -or $ace.flags -contains 'inherit_only') { continue }
        if ($ace.type -eq 'deny') { $denied = $denied -bor $ace.mask } else { $allowed = $allowed -bor $ace.mask }
    }
    return ((($allowed -band -bnot $denied) -band $Mask) -eq $Mask)
}

function Test-FleetAceCompliant {
    # The plan's own numeric test, used only to decide whether to change anything; the status
    # is always recomputed in Python from the observation.
    param($Item, [object[]]$Dacl, [string]$Sid, [string[]]$GroupSids)
    $want = [int64]$Item.access_mask
    $type = [string]$Item.ace_type
    $flags = @($Item.ace_flags)
    if ($Item.judge -eq 'effective_access') {
        return Test-FleetEffectiveAccess -Dacl $Dacl -Sid $Sid -GroupSids $GroupSids -Mask $want
    }
    foreach ($ace in $Dacl) {
        if ($ace.sid -ne $Sid -or $ace.type -ne $type -or $ace.inherited) { continue }
        if (($ace.mask -band $want) -ne $want) { continue }
        $missing = @($flags | Where-Object { $ace.flags -notcontains $_ })
        if ($missing.Count -eq 0) { return $true }
    }
    return $false
}

function Get-FleetInheritance {
    param($Item)
    $inherit = [System.Security.AccessControl.InheritanceFlags]::None
    $propagate = [System.Security.AccessControl.PropagationFlags]::None
    foreach ($flag in @($Item.ace_flags)) {
        switch ($flag) {
            'container_inherit' { $inherit = $inherit -bor [System.Security.AccessControl.InheritanceFlags]::ContainerInherit }
            'object_inherit' { $inherit = $inherit -bor [System.Security.AccessControl.InheritanceFlags]::ObjectInherit }
            'no_propagate' { $propagate = $propagate -bor [System.Security.AccessControl.PropagationFlags]::NoPropagateInherit }
            'inherit_only' { $propagate = $propagate -bor [System.Security.AccessControl.PropagationFlags]::InheritOnly }
        }
    }
    return @($inherit, $propagate)
}

$script:PrivilegeSource = @'
using System;
using System.Runtime.InteropServices;
namespace FleetLockdown {
    public static class TokenPrivilege {
        [StructLayout(LayoutKind.Sequential, Pack = 1)]
        struct TokPriv1Luid { public int Count; public long Luid; public int Attr; }
        [DllImport("advapi32.dll", SetLastError = true)]
        static extern bool AdjustTokenPrivileges(IntPtr htok, bool disall, ref TokPriv1Luid newst, int len, ref TokPriv1Luid prev, ref int relen);
        [DllImport("advapi32.dll", SetLastError = true)]
        static extern bool OpenProcessToken(IntPtr h, int acc, ref IntPtr phtok);
        [DllImport("advapi32.dll", SetLastError = true)]
        static extern bool LookupPrivilegeValue(string host, string name, ref long pluid);
        [DllImport("kernel32.dll")]
        static extern IntPtr GetCurrentProcess();
        [DllImport("kernel32.dll")]
        static extern bool CloseHandle(IntPtr h);
        const int SE_PRIVILEGE_ENABLED = 0x2;
        const int TOKEN_QUERY = 0x8;
        const int TOKEN_ADJUST_PRIVILEGES = 0x20;
        // Enables or disables one privilege; returns whether it was enabled before.
        public static bool Set(string privilege, bool enable) {
            IntPtr htok = IntPtr.Zero;
            if (!OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, ref htok))
                throw new System.ComponentModel.Win32Exception(Marshal.GetLastWin32Error());
            try {
                TokPriv1Luid tp = new TokPriv1Luid();
                tp.Count = 1;
                tp.Attr = enable ? SE_PRIVILEGE_ENABLED : 0;
                if (!LookupPrivilegeValue(null, privilege, ref tp.Luid))
                    throw new System.ComponentModel.Win32Exception(Marshal.GetLastWin32Error());
                TokPriv1Luid prev = new TokPriv1Luid();
                int relen = Marshal.SizeOf(prev);
                if (!AdjustTokenPrivileges(htok, false, ref tp, relen, ref prev, ref relen))
                    throw new System.ComponentModel.Win32Exception(Marshal.GetLastWin32Error());
                int err = Marshal.GetLastWin32Error();
                if (err == 1300) throw new System.ComponentModel.Win32Exception(err); // ERROR_NOT_ALL_ASSIGNED: privilege not held
                return prev.Count == 0 ? enable : (prev.Attr & SE_PRIVILEGE_ENABLED) != 0;
            } finally {
                CloseHandle(htok);
            }
        }
    }
}
'@

function Enable-FleetPrivilege {
    # Returns @{ name = previously-enabled } so the caller can restore the token in `finally`.
    param([string[]]$Name)
    if (-not ('FleetLockdown.TokenPrivilege' -as [type])) {
        Add-Type -TypeDefinition $script:PrivilegeSource -Language CSharp
    }
    $previous = @{}
    foreach ($privilege in $Name) {
        $previous[$privilege] = [FleetLockdown.TokenPrivilege]::Set($privilege, $true)
    }
    return $previous
}

function Restore-FleetPrivilege {
    param([hashtable]$Previous)
    if ($null -eq $Previous) { return }
    foreach ($privilege in @($Previous.Keys)) {
        if (-not $Previous[$privilege]) { [void][FleetLockdown.TokenPrivilege]::Set($privilege, $false) }
    }
}

function Test-FleetElevated {
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList $identity
    $admins = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $script:AdministratorsSid
    return $principal.IsInRole($admins)
}
