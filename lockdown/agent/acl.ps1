# Fleet Lockdown agent: file, folder and registry ACL handlers (observe, apply, roll back).
# Never executed by the project's tests (see README.md); structure is tested over the syntax tree.

function Get-FleetAclObservation {
    # Observation of a file, folder or key: owner, DACL, protection, principal SID and groups.
    param($Item, [string]$Sddl, [bool]$Exists)
    $obs = New-FleetObservation -Item $Item
    $obs.exists = $Exists
    if (-not $Exists) { return $obs }
    $raw = New-Object -TypeName System.Security.AccessControl.RawSecurityDescriptor -ArgumentList $Sddl
    $obs.owner_sid = $raw.Owner.Value
    $obs.protected = [bool]($raw.ControlFlags -band [System.Security.AccessControl.ControlFlags]::DiscretionaryAclProtected)
    $obs.dacl = @(ConvertFrom-FleetSddl -Sddl $Sddl)
    $sid = Resolve-FleetSid -Name ([string]$Item.principal_name) -KnownSid ([string]$Item.principal_sid)
    $obs.principal_sid = $sid
    $obs.principal_group_sids = @(Get-FleetPrincipalGroupSids -Name ([string]$Item.principal_name))
    return $obs
}

function Get-FleetFileSddl {
    param([string]$Path)
    $security = (Get-Item -LiteralPath $Path -Force).GetAccessControl('Access, Owner')
    return $security.GetSecurityDescriptorSddlForm('Access, Owner')
}

function Set-FleetOwner {
    # Ownership with SeRestore/SeTakeOwnership enabled: only the Owner section is written.
    param([string]$Path, [string]$OwnerSid)
    $info = Get-Item -LiteralPath $Path -Force
    $security = $info.GetAccessControl('Owner')
    $owner = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $OwnerSid
    $security.SetOwner($owner)
    $info.SetAccessControl($security)
}

function Set-FleetFileAce {
    # Adds one ACE to a file or folder, writing only the DACL (FileInfo/DirectoryInfo
    # SetAccessControl, not Set-Acl, which rewrites the owner: ansible#20553). SeRestorePrivilege
    # grants WRITE_DAC on TrustedInstaller-owned System32 files; if the write is still refused,
    # ownership is taken by Administrators and the original owner is put back in `finally`.
    param($Item, [string]$Sid, [System.Security.AccessControl.AccessControlType]$AceType)
    $path = [string]$Item.target
    $inheritance = Get-FleetInheritance -Item $Item
    $rights = [System.Security.AccessControl.FileSystemRights]([int]$Item.access_mask)
    $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $Sid
    $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList @($identity, $rights, $inheritance[0], $inheritance[1], $AceType)
    $previous = Enable-FleetPrivilege -Name @('SeRestorePrivilege', 'SeTakeOwnershipPrivilege', 'SeBackupPrivilege')
    $ownerBefore = $null
    try {
        $info = Get-Item -LiteralPath $path -Force
        $security = $info.GetAccessControl('Access')
        $security.AddAccessRule($rule)
        try {
            $info.SetAccessControl($security)
        } catch [System.UnauthorizedAccessException] {
            $ownerBefore = $info.GetAccessControl('Owner').GetOwner([System.Security.Principal.SecurityIdentifier]).Value
            Set-FleetOwner -Path $path -OwnerSid $script:AdministratorsSid
            $info = Get-Item -LiteralPath $path -Force
            $security = $info.GetAccessControl('Access')
            $security.AddAccessRule($rule)
            $info.SetAccessControl($security)
        }
    } finally {
        if ($null -ne $ownerBefore) { Set-FleetOwner -Path $path -OwnerSid $ownerBefore }
        Restore-FleetPrivilege -Previous $previous
    }
}

function Invoke-FleetFileRule {
    # Shared flow of file_acl, file_deny and path_acl: observe; in apply, if the plan's numeric
    # test fails, snapshot the SDDL, add the ACE, re-observe.
    param($Item, [string]$Mode, [System.Security.AccessControl.AccessControlType]$AceType)
    $path = [string]$Item.target
    $exists = Test-Path -LiteralPath $path
    $sddl = $null
    if ($exists) { $sddl = Get-FleetFileSddl -Path $path }
    $obs = Get-FleetAclObservation -Item $Item -Sddl $sddl -Exists $exists
    if ($Mode -ne 'apply' -or -not $exists -or $null -eq $obs.principal_sid) { return $obs }
    if (Test-FleetAceCompliant -Item $Item -Dacl $obs.dacl -Sid $obs.principal_sid -GroupSids $obs.principal_group_sids) { return $obs }
    Set-FleetFileAce -Item $Item -Sid $obs.principal_sid -AceType $AceType
    $after = Get-FleetFileSddl -Path $path
    Add-FleetChange -Item $Item -Before $sddl -After $after -Created $false
    $obs = Get-FleetAclObservation -Item $Item -Sddl $after -Exists $true
    $obs.sddl_before = $sddl
    $obs.sddl_after = $after
    $obs.action = 'changed'
    return $obs
}

function Invoke-FleetFileAcl {
    param($Item, [string]$Mode)
    return Invoke-FleetFileRule -Item $Item -Mode $Mode -AceType ([System.Security.AccessControl.AccessControlType]::Allow)
}

function Invoke-FleetPathAcl {
    # MailEnable folders (store, queues, logging...): an inheritable Allow ACE on the folder.
    # SetAccessControl on a directory propagates to existing children (can take long on a big store).
    param($Item, [string]$Mode)
    return Invoke-FleetFileRule -Item $Item -Mode $Mode -AceType ([System.Security.AccessControl.AccessControlType]::Allow)
}

function Invoke-FleetFileDeny {
    # Deny ReadAndExecute for the service account's own SID on System32/SysWOW64 programs.
    param($Item, [string]$Mode)
    return Invoke-FleetFileRule -Item $Item -Mode $Mode -AceType ([System.Security.AccessControl.AccessControlType]::Deny)
}

function Open-FleetRegistryKey {
    # Plan targets are HKLM\... as 64-bit PowerShell sees them (the compiler already inserted
    # WOW6432Node for MailEnable's 32-bit key), so the 64-bit view is opened on x64.
    param([string]$Target, [bool]$Writable)
    $view = [Microsoft.Win32.RegistryView]::Default
    if ([Environment]::Is64BitOperatingSystem) { $view = [Microsoft.Win32.RegistryView]::Registry64 }
    $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey([Microsoft.Win32.RegistryHive]::LocalMachine, $view)
    $subPath = $Target -replace '^HKLM\\', ''
    $rights = [System.Security.AccessControl.RegistryRights]::ReadPermissions
    if ($Writable) { $rights = $rights -bor [System.Security.AccessControl.RegistryRights]::ChangePermissions }
    return $base.OpenSubKey($subPath, [Microsoft.Win32.RegistryKeyPermissionCheck]::ReadWriteSubTree, $rights)
}

function Invoke-FleetRegistryAcl {
    param($Item, [string]$Mode)
    $key = Open-FleetRegistryKey -Target ([string]$Item.target) -Writable $false
    if ($null -eq $key) { return (Get-FleetAclObservation -Item $Item -Sddl $null -Exists $false) }
    $sddl = $key.GetAccessControl([System.Security.AccessControl.AccessControlSections]::Access).GetSecurityDescriptorSddlForm('Access, Owner')
    $key.Close()
    $obs = Get-FleetAclObservation -Item $Item -Sddl $sddl -Exists $true
    if ($Mode -ne 'apply' -or $null -eq $obs.principal_sid) { return $obs }
    if (Test-FleetAceCompliant -Item $Item -Dacl $obs.dacl -Sid $obs.principal_sid -GroupSids $obs.principal_group_sids) { return $obs }
    $inheritance = Get-FleetInheritance -Item $Item
    $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $obs.principal_sid
    $rights = [System.Security.AccessControl.RegistryRights]([int]$Item.access_mask)
    $rule = New-Object -TypeName System.Security.AccessControl.RegistryAccessRule -ArgumentList @($identity, $rights, $inheritance[0], $inheritance[1], [System.Security.AccessControl.AccessControlType]::Allow)
    $previous = Enable-FleetPrivilege -Name @('SeRestorePrivilege', 'SeTakeOwnershipPrivilege', 'SeBackupPrivilege')
    try {
        $key = Open-FleetRegistryKey -Target ([string]$Item.target) -Writable $true
        $security = $key.GetAccessControl([System.Security.AccessControl.AccessControlSections]::Access)
        $security.AddAccessRule($rule)
        $key.SetAccessControl($security)
        $after = $key.GetAccessControl([System.Security.AccessControl.AccessControlSections]::Access).GetSecurityDescriptorSddlForm('Access, Owner')
        $key.Close()
    } finally {
        Restore-FleetPrivilege -Previous $previous
    }
    Add-FleetChange -Item $Item -Before $sddl -After $after -Created $false
    $obs = Get-FleetAclObservation -Item $Item -Sddl $after -Exists $true
    $obs.sddl_before = $sddl
    $obs.sddl_after = $after
    $obs.action = 'changed'
    return $obs
}

function Get-FleetAddedRules {
    # The explicit rules present in the `after` SDDL of a ChangeRecord and absent from `before`:
    # exactly the ACEs this tool added. Rollback removes only those.
    param([System.Security.AccessControl.CommonObjectSecurity]$Before, [System.Security.AccessControl.CommonObjectSecurity]$After)
    $old = @($Before.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier]))
    $added = @()
    foreach ($rule in $After.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier])) {
        $same = @($old | Where-Object {
                $_.IdentityReference.Value -eq $rule.IdentityReference.Value -and $_.AccessControlType -eq $rule.AccessControlType -and
                $_.InheritanceFlags -eq $rule.InheritanceFlags -and $_.PropagationFlags -eq $rule.PropagationFlags -and
                (Get-FleetRuleMask -Rule $_) -eq (Get-FleetRuleMask -Rule $rule)
            })
        if ($same.Count -eq 0) { $added += $rule }
    }
    return @($added)
}

function Get-FleetRuleMask {
    param($Rule)
    if ($Rule -is [System.Security.AccessControl.FileSystemAccessRule]) { return [int]$Rule.FileSystemRights }
    return [int]$Rule.RegistryRights
}

function Undo-FleetAclChange {
    # Rollback of one file/folder/key change: RemoveAccessRuleSpecific for our ACEs only, so
    # changes others made since (patches, admins) stay.
    param($Change)
    $registry = $Change.target_kind -eq 'registry_key'
    if ($registry) {
        $before = New-Object -TypeName System.Security.AccessControl.RegistrySecurity
        $after = New-Object -TypeName System.Security.AccessControl.RegistrySecurity
    } else {
        $before = New-Object -TypeName System.Security.AccessControl.FileSecurity
        $after = New-Object -TypeName System.Security.AccessControl.FileSecurity
    }
    $before.SetSecurityDescriptorSddlForm([string]$Change.before, 'Access')
    $after.SetSecurityDescriptorSddlForm([string]$Change.after, 'Access')
    $ours = @(Get-FleetAddedRules -Before $before -After $after)
    $previous = Enable-FleetPrivilege -Name @('SeRestorePrivilege', 'SeTakeOwnershipPrivilege', 'SeBackupPrivilege')
    try {
        if ($registry) {
            $key = Open-FleetRegistryKey -Target ([string]$Change.target) -Writable $true
            if ($null -eq $key) { return 'none' }
            $security = $key.GetAccessControl([System.Security.AccessControl.AccessControlSections]::Access)
            foreach ($rule in $ours) { $security.RemoveAccessRuleSpecific($rule) }
            $key.SetAccessControl($security)
            $key.Close()
        } else {
            if (-not (Test-Path -LiteralPath ([string]$Change.target))) { return 'none' }
            $info = Get-Item -LiteralPath ([string]$Change.target) -Force
            $security = $info.GetAccessControl('Access')
            foreach ($rule in $ours) {
                $specific = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList @($rule.IdentityReference, $rule.FileSystemRights, $rule.InheritanceFlags, $rule.PropagationFlags, $rule.AccessControlType)
                $security.RemoveAccessRuleSpecific($specific)
            }
            $info.SetAccessControl($security)
        }
    } finally {
        Restore-FleetPrivilege -Previous $previous
    }
    return 'rolled_back'
}
