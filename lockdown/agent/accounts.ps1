# Fleet Lockdown agent: local users, groups, memberships (ADSI WinNT) and user rights (LSA).
# Never executed by the project's tests (see README.md); structure is tested over the syntax tree.

$script:AdsUfAccountDisable = 2
$script:AdsUfPasswdCantChange = 64
$script:AdsUfDontExpirePasswd = 65536

function Get-FleetAccountObservation {
    param($Entry)
    if ($null -eq $Entry) { return [ordered]@{ exists = $false } }
    $flags = $null
    $enabled = $null
    if ($Entry.SchemaClassName -eq 'User') {
        $flags = [int64]$Entry.Properties['UserFlags'].Value
        $enabled = -not [bool]($flags -band $script:AdsUfAccountDisable)
    }
    return [ordered]@{ exists = $true; sid = (Get-FleetAdsiSid -Entry $Entry); enabled = $enabled; user_flags = $flags }
}

function Invoke-FleetLocalUser {
    # IME_SYSTEM: created with the generated password, never-expiring, user cannot change it.
    # An existing account is adopted (its password is not touched here).
    param($Item, [string]$Mode)
    $name = ([string]$Item.target).Split('\')[-1]
    $obs = New-FleetObservation -Item $Item
    $user = Get-FleetLocalAccount -Name $name -SchemaClass 'user'
    $obs.account = Get-FleetAccountObservation -Entry $user
    if ($Mode -ne 'apply') { return $obs }
    $wantFlags = $script:AdsUfPasswdCantChange
    if ($Item.password_never_expires) { $wantFlags = $wantFlags -bor $script:AdsUfDontExpirePasswd }
    if ($null -eq $user) {
        if (-not $script:ServicePassword) { throw 'apply needs service_password to create the service account' }
        $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
        $user = $computer.Create('User', $name)
        $user.SetPassword($script:ServicePassword)
        $user.SetInfo()
        $user.Put('Description', 'MailEnable service identity (Fleet Lockdown)')
        $user.Put('UserFlags', [int]$wantFlags)
        $user.SetInfo()
        $script:PasswordSetThisRun = $true
        $after = Get-FleetAccountObservation -Entry (Get-FleetLocalAccount -Name $name -SchemaClass 'user')
        Add-FleetChange -Item $Item -Before $null -After (ConvertTo-Json -InputObject $after -Compress) -Created $true
        $obs.account = $after
        $obs.action = 'changed'
        return $obs
    }
    $flags = [int64]$user.Properties['UserFlags'].Value
    $newFlags = ($flags -bor $wantFlags) -band (-bnot [int64]$script:AdsUfAccountDisable)
    if ($newFlags -ne $flags) {
        $before = ConvertTo-Json -InputObject $obs.account -Compress
        $user.Put('UserFlags', [int]$newFlags)
        $user.SetInfo()
        $obs.account = Get-FleetAccountObservation -Entry (Get-FleetLocalAccount -Name $name -SchemaClass 'user')
        Add-FleetChange -Item $Item -Before $before -After (ConvertTo-Json -InputObject $obs.account -Compress) -Created $false
        $obs.action = 'changed'
    }
    if ($script:ResetAdoptedPassword -and $name -eq $script:ServiceAccountName) {
        Reset-FleetAdoptedPassword -User $user -AccountName $name
    }
    return $obs
}

function Reset-FleetAdoptedPassword {
    # apply with reset_adopted_password (the operator's choice): the account existed before this run
    # (MEInstaller's hardening), so its password is unknown. Set the generated one and give it to every
    # service running as the account; the restart and health check follow the run.
    # DANGER: not recorded as a change: it cannot be rolled back (DESIGN.md, adoption).
    param($User, [string]$AccountName)
    if (-not $script:PasswordSetThisRun) { Set-FleetServiceAccountPassword -AccountName $AccountName }
    $sid = Get-FleetAdsiSid -Entry $User
    $names = @(Get-FleetServicesRunningAs -Sid $sid)
    Set-FleetServicePassword -Names $names -Password $script:ServicePassword
    foreach ($serviceName in $names) {
        if ((Get-FleetService -Name $serviceName).State -eq 'Running') { [void]$script:RestartServices.Add($serviceName) }
    }
    $script:Rotation = [ordered]@{ account = $AccountName; account_sid = $sid; services = $names; password_set = $true; restored = $false }
}

function Test-FleetAccountPassword {
    # Does $Password log the local account on? PrincipalContext(Machine).ValidateCredentials does a
    # network logon [U: it answers false, not an error, when the account is denied network logon].
    param([string]$Name, [string]$Password)
    Add-Type -AssemblyName System.DirectoryServices.AccountManagement
    $machine = [System.DirectoryServices.AccountManagement.ContextType]::Machine
    $context = New-Object -TypeName System.DirectoryServices.AccountManagement.PrincipalContext -ArgumentList @($machine)
    try {
        return [bool]$context.ValidateCredentials($Name, $Password)
    } finally {
        $context.Dispose()
    }
}

function Invoke-FleetPasswordRotation {
    # Mode rotate_password: check the previous password, SetPassword(new) on the account,
    # Win32_Service.Change(StartPassword) on every service running as it (by SID), restart what ran,
    # health check. On failure the previous password goes back on the account and the services.
    param($Request, $Result)
    $name = [string]$Request.service_account
    $new = [string]$Request.service_password
    $previous = [string]$Request.previous_service_password
    $user = Get-FleetLocalAccount -Name $name -SchemaClass 'user'
    if ($null -eq $user) {
        $Result.error = [ordered]@{ code = 'account_missing'; message = ($name + ' does not exist on this host: harden it first') }
        return
    }
    if (-not (Test-FleetAccountPassword -Name $name -Password $previous)) {
        $Result.error = [ordered]@{ code = 'previous_password_mismatch'; message = ('the stored password of ' + $name + ' does not log it on: nothing was changed') }
        return
    }
    $sid = Get-FleetAdsiSid -Entry $user
    $names = @(Get-FleetServicesRunningAs -Sid $sid)
    $running = @($names | Where-Object { (Get-FleetService -Name $_).State -eq 'Running' })
    $report = [ordered]@{ account = $name; account_sid = $sid; services = $names; password_set = $false; restored = $false }
    $Result.rotation = $report
    try {
        $user.SetPassword($new)
        $user.SetInfo()
    } catch {
        $Result.error = [ordered]@{ code = 'password_rejected'; message = ('SetPassword refused the new password: ' + $_.Exception.Message) }
        return
    }
    $report.password_set = $true
    $problems = @()
    try {
        Set-FleetServicePassword -Names $names -Password $new
        Restart-FleetServices -Names $running
    } catch {
        $problems += $_.Exception.Message
    }
    if ($problems.Count -eq 0) { $problems += @(Test-FleetMailHealth -Services $running) }
    if ($problems.Count -eq 0) {
        $Result.action = 'changed'
        return
    }
    $undo = @()
    try {
        $user.SetPassword($previous)
        $user.SetInfo()
        Set-FleetServicePassword -Names $names -Password $previous
        Restart-FleetServices -Names $running
    } catch {
        $undo += $_.Exception.Message
    }
    $report.restored = $true
    $Result.action = 'rolled_back'
    $message = 'health check failed after the password change: ' + ($problems -join '; ') + '; the previous password was restored on the account and its services'
    if ($undo.Count -gt 0) { $message += ' (incompletely: ' + ($undo -join '; ') + ')' }
    $Result.error = [ordered]@{ code = 'health_check_failed'; message = $message }
}

function Set-FleetServiceAccountPassword {
    # Called before a service identity change when the account existed already: the services
    # need its password. DANGER: the reset cannot be rolled back (DESIGN.md, adoption).
    param([string]$AccountName)
    if ($script:PasswordSetThisRun) { return }
    if (-not $script:ServicePassword) { throw 'apply needs service_password to change a service identity' }
    $user = Get-FleetLocalAccount -Name ($AccountName.Split('\')[-1]) -SchemaClass 'user'
    if ($null -eq $user) { throw ('the account ' + $AccountName + ' does not exist') }
    $user.SetPassword($script:ServicePassword)
    $user.SetInfo()
    $script:PasswordSetThisRun = $true
}

function Invoke-FleetLocalGroup {
    param($Item, [string]$Mode)
    $name = ([string]$Item.target).Split('\')[-1]
    $obs = New-FleetObservation -Item $Item
    $group = Get-FleetLocalAccount -Name $name -SchemaClass 'group'
    $obs.account = Get-FleetAccountObservation -Entry $group
    if ($Mode -ne 'apply' -or $null -ne $group) { return $obs }
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    $group = $computer.Create('Group', $name)
    $group.Put('Description', 'MailEnable message store access (Fleet Lockdown)')
    $group.SetInfo()
    $obs.account = Get-FleetAccountObservation -Entry (Get-FleetLocalAccount -Name $name -SchemaClass 'group')
    Add-FleetChange -Item $Item -Before $null -After (ConvertTo-Json -InputObject $obs.account -Compress) -Created $true
    $obs.action = 'changed'
    return $obs
}

function Get-FleetGroupMemberSids {
    # Members by objectSid (orphaned SIDs come back raw); avoids Get-LocalGroupMember, which
    # throws on unresolvable members (PowerShell#2996).
    param($Group)
    $sids = @()
    foreach ($member in @($Group.psbase.Invoke('Members'))) {
        $bytes = $member.GetType().InvokeMember('objectSid', 'GetProperty', $null, $member, $null)
        $sids += (New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList @([byte[]]$bytes, 0)).Value
    }
    return @($sids)
}

function Invoke-FleetGroupMember {
    param($Item, [string]$Mode)
    $obs = New-FleetObservation -Item $Item
    $group = Get-FleetLocalAccount -Name (([string]$Item.group_name).Split('\')[-1]) -SchemaClass 'group'
    $sid = Resolve-FleetSid -Name ([string]$Item.principal_name) -KnownSid ([string]$Item.principal_sid)
    $obs.principal_sid = $sid
    if ($null -eq $group) {
        $obs.group_member_sids = @()
        return $obs
    }
    $members = @(Get-FleetGroupMemberSids -Group $group)
    $obs.group_member_sids = $members
    if ($Mode -ne 'apply' -or $null -eq $sid -or $members -contains $sid) { return $obs }
    $group.Add('WinNT://' + $sid)
    $after = @(Get-FleetGroupMemberSids -Group $group)
    $record = ConvertTo-Json -InputObject ([ordered]@{ group = [string]$Item.group_name; added = $sid; members = $after }) -Compress
    Add-FleetChange -Item $Item -Before (ConvertTo-Json -InputObject @($members) -Compress) -After $record -Created $false
    $obs.group_member_sids = $after
    $obs.action = 'changed'
    return $obs
}

$script:LsaSource = @'
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Security.Principal;
namespace FleetLockdown {
    public static class Lsa {
        [StructLayout(LayoutKind.Sequential)]
        struct LSA_UNICODE_STRING { public ushort Length; public ushort MaximumLength; public IntPtr Buffer; }
        [StructLayout(LayoutKind.Sequential)]
        struct LSA_OBJECT_ATTRIBUTES { public int Length; public IntPtr RootDirectory; public IntPtr ObjectName; public int Attributes; public IntPtr SecurityDescriptor; public IntPtr SecurityQualityOfService; }
        [StructLayout(LayoutKind.Sequential)]
        struct LSA_ENUMERATION_INFORMATION { public IntPtr Sid; }
        [DllImport("advapi32.dll")] static extern uint LsaOpenPolicy(IntPtr system, ref LSA_OBJECT_ATTRIBUTES attrs, int access, out IntPtr handle);
        [DllImport("advapi32.dll")] static extern uint LsaEnumerateAccountsWithUserRight(IntPtr handle, ref LSA_UNICODE_STRING right, out IntPtr buffer, out int count);
        [DllImport("advapi32.dll")] static extern uint LsaAddAccountRights(IntPtr handle, byte[] sid, LSA_UNICODE_STRING[] rights, int count);
        [DllImport("advapi32.dll")] static extern uint LsaRemoveAccountRights(IntPtr handle, byte[] sid, bool all, LSA_UNICODE_STRING[] rights, int count);
        [DllImport("advapi32.dll")] static extern uint LsaFreeMemory(IntPtr buffer);
        [DllImport("advapi32.dll")] static extern uint LsaClose(IntPtr handle);
        [DllImport("advapi32.dll")] static extern int LsaNtStatusToWinError(uint status);
        const int POLICY_ALL_ACCESS = 0x00F0FFF;
        const uint STATUS_NO_MORE_ENTRIES = 0x8000001A;
        const uint STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034;

        static LSA_UNICODE_STRING Text(string value) {
            LSA_UNICODE_STRING s = new LSA_UNICODE_STRING();
            s.Buffer = Marshal.StringToHGlobalUni(value);
            s.Length = (ushort)(value.Length * 2);
            s.MaximumLength = (ushort)(s.Length + 2);
            return s;
        }
        static IntPtr Open() {
            LSA_OBJECT_ATTRIBUTES attrs = new LSA_OBJECT_ATTRIBUTES();
            IntPtr handle;
            Check(LsaOpenPolicy(IntPtr.Zero, ref attrs, POLICY_ALL_ACCESS, out handle));
            return handle;
        }
        static void Check(uint status) {
            if (status != 0) throw new System.ComponentModel.Win32Exception(LsaNtStatusToWinError(status));
        }
        static byte[] SidBytes(string sid) {
            SecurityIdentifier id = new SecurityIdentifier(sid);
            byte[] bytes = new byte[id.BinaryLength];
            id.GetBinaryForm(bytes, 0);
            return bytes;
        }
        // The SIDs holding `right` directly (not through groups).
        public static string[] Holders(string right) {
            IntPtr handle = Open();
            LSA_UNICODE_STRING name = Text(right);
            try {
                IntPtr buffer; int count;
                uint status = LsaEnumerateAccountsWithUserRight(handle, ref name, out buffer, out count);
                if (status == STATUS_NO_MORE_ENTRIES || status == STATUS_OBJECT_NAME_NOT_FOUND) return new string[0];
                Check(status);
                List<string> sids = new List<string>();
                int size = Marshal.SizeOf(typeof(LSA_ENUMERATION_INFORMATION));
                for (int i = 0; i < count; i++) {
                    LSA_ENUMERATION_INFORMATION info = (LSA_ENUMERATION_INFORMATION)Marshal.PtrToStructure(new IntPtr(buffer.ToInt64() + i * size), typeof(LSA_ENUMERATION_INFORMATION));
                    sids.Add(new SecurityIdentifier(info.Sid).Value);
                }
                LsaFreeMemory(buffer);
                return sids.ToArray();
            } finally {
                Marshal.FreeHGlobal(name.Buffer);
                LsaClose(handle);
            }
        }
        public static void Add(string sid, string right) {
            IntPtr handle = Open();
            LSA_UNICODE_STRING[] rights = new LSA_UNICODE_STRING[] { Text(right) };
            try { Check(LsaAddAccountRights(handle, SidBytes(sid), rights, 1)); }
            finally { Marshal.FreeHGlobal(rights[0].Buffer); LsaClose(handle); }
        }
        public static void Remove(string sid, string right) {
            IntPtr handle = Open();
            LSA_UNICODE_STRING[] rights = new LSA_UNICODE_STRING[] { Text(right) };
            try { Check(LsaRemoveAccountRights(handle, SidBytes(sid), false, rights, 1)); }
            finally { Marshal.FreeHGlobal(rights[0].Buffer); LsaClose(handle); }
        }
    }
}
'@

function Initialize-FleetLsa {
    if (-not ('FleetLockdown.Lsa' -as [type])) { Add-Type -TypeDefinition $script:LsaSource -Language CSharp }
}

function Invoke-FleetUserRight {
    # Per-SID and additive (LsaAddAccountRights): other holders are never touched. A GPO that
    # defines the right will overwrite this at the next refresh; verify shows it as drift.
    param($Item, [string]$Mode)
    Initialize-FleetLsa
    $right = [string]$Item.right
    $obs = New-FleetObservation -Item $Item
    $sid = Resolve-FleetSid -Name ([string]$Item.principal_name) -KnownSid ([string]$Item.principal_sid)
    $obs.principal_sid = $sid
    $holders = @([FleetLockdown.Lsa]::Holders($right))
    $obs.right_holder_sids = $holders
    if ($Mode -ne 'apply' -or $null -eq $sid -or $holders -contains $sid) { return $obs }
    [FleetLockdown.Lsa]::Add($sid, $right)
    $after = @([FleetLockdown.Lsa]::Holders($right))
    $record = ConvertTo-Json -InputObject ([ordered]@{ right = $right; added = $sid; holders = $after }) -Compress
    Add-FleetChange -Item $Item -Before (ConvertTo-Json -InputObject @($holders) -Compress) -After $record -Created $false
    $obs.right_holder_sids = $after
    $obs.action = 'changed'
    return $obs
}

function Undo-FleetAccountChange {
    # Rollback: remove only the SID we added to a right or group; delete only accounts we created.
    param($Change)
    $after = $Change.after | ConvertFrom-Json
    switch ([string]$Change.target_kind) {
        'right' {
            Initialize-FleetLsa
            if (@([FleetLockdown.Lsa]::Holders([string]$after.right)) -contains [string]$after.added) {
                [FleetLockdown.Lsa]::Remove([string]$after.added, [string]$after.right)
            }
            return 'rolled_back'
        }
        'membership' {
            $group = Get-FleetLocalAccount -Name (([string]$after.group).Split('\')[-1]) -SchemaClass 'group'
            if ($null -ne $group -and @(Get-FleetGroupMemberSids -Group $group) -contains [string]$after.added) {
                $group.Remove('WinNT://' + [string]$after.added)
            }
            return 'rolled_back'
        }
        default {
            if (-not $Change.created_object) { return 'none' }
            $class = 'user'
            if ($Change.target_kind -eq 'group') { $class = 'group' }
            $name = ([string]$Change.target).Split('\')[-1]
            $entry = Get-FleetLocalAccount -Name $name -SchemaClass $class
            # Delete only the very account we created (same SID), never a namesake made since.
            if ($null -ne $entry -and (Get-FleetAdsiSid -Entry $entry) -eq [string]$after.sid) {
                $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
                $computer.Delete($class, $name)
            }
            return 'rolled_back'
        }
    }
}
