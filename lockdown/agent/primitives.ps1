# Fleet Lockdown agent v2: the primitives. One function per entry of PRIMITIVES in
# lockdown/engine/program.py (the wire contract), named Invoke-FleetOp<CamelName>, each taking the
# step's args as $A (a PSCustomObject from ConvertFrom-Json) and returning exactly one hashtable
# with exactly the contract's result keys. No decisions: every rule, plan and compliance question
# is answered in Python. Every value that is not the returned hashtable is voided ([void] or
# $null =), which tests/unit/agent checks over the syntax tree.
# Windows PowerShell 5.1 / .NET Framework 4.5+ only. NEVER EXECUTED: there is no Windows here
# (see lockdown/agent/README.md). The agent script is this file followed by executor.ps1.

$script:FleetAdministratorsSid = 'S-1-5-32-544'
$script:FleetSystemSid = 'S-1-5-18'
$script:FleetSections = [System.Security.AccessControl.AccessControlSections]'Owner, Access'
$script:FleetJobIdPattern = '^[A-Za-z0-9_.\-]{1,100}$'

# Constant C# compiled once by Add-Type (never built from arguments). Sources: Ansible.Privilege.cs
# (PrivilegeEnabler), ansible.windows win_user_right.ps1 (LSA), win_user.ps1 (LogonUser network).
$script:FleetNativeSource = @'
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Security.Principal;
namespace FleetLockdown {
    public static class TokenPrivilege {
        [StructLayout(LayoutKind.Sequential, Pack = 1)]
        struct TokPriv1Luid { public int Count; public long Luid; public int Attr; }
        [DllImport("advapi32.dll", SetLastError = true)]
        static extern bool AdjustTokenPrivileges(IntPtr htok, bool disall, ref TokPriv1Luid newst, int len, ref TokPriv1Luid prev, ref int relen);
        [DllImport("advapi32.dll", SetLastError = true)]
        static extern bool OpenProcessToken(IntPtr h, int acc, ref IntPtr phtok);
        [DllImport("advapi32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
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
                if (err == 1300) throw new System.ComponentModel.Win32Exception(err); // ERROR_NOT_ALL_ASSIGNED
                return prev.Count == 0 ? enable : (prev.Attr & SE_PRIVILEGE_ENABLED) != 0;
            } finally {
                CloseHandle(htok);
            }
        }
    }
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
        [DllImport("advapi32.dll")] static extern uint LsaRemoveAccountRights(IntPtr handle, byte[] sid, [MarshalAs(UnmanagedType.U1)] bool AllRights, LSA_UNICODE_STRING[] rights, int count);
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
        // The SIDs holding `right` directly (not through groups); none -> empty.
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
                try {
                    for (int i = 0; i < count; i++) {
                        LSA_ENUMERATION_INFORMATION info = (LSA_ENUMERATION_INFORMATION)Marshal.PtrToStructure(new IntPtr(buffer.ToInt64() + i * size), typeof(LSA_ENUMERATION_INFORMATION));
                        sids.Add(new SecurityIdentifier(info.Sid).Value);
                    }
                } finally {
                    LsaFreeMemory(buffer);
                }
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
    public static class Certificates {
        static bool Accept(object sender, System.Security.Cryptography.X509Certificates.X509Certificate certificate, System.Security.Cryptography.X509Certificates.X509Chain chain, System.Net.Security.SslPolicyErrors errors) { return true; }
        // For one HttpWebRequest whose step allows a self-signed certificate.
        public static System.Net.Security.RemoteCertificateValidationCallback AcceptAny() { return new System.Net.Security.RemoteCertificateValidationCallback(Accept); }
    }
    public static class Logon {
        [DllImport("advapi32.dll", SetLastError = true, CharSet = CharSet.Unicode)]
        static extern bool LogonUser(string user, string domain, string password, int logonType, int provider, out IntPtr token);
        [DllImport("kernel32.dll")]
        static extern bool CloseHandle(IntPtr h);
        const int LOGON32_LOGON_NETWORK = 3;
        const int LOGON32_PROVIDER_DEFAULT = 0;
        // 0 when the password logs the account on (network logon), else the Win32 error.
        public static int Check(string user, string domain, string password) {
            IntPtr token;
            if (!LogonUser(user, domain, password, LOGON32_LOGON_NETWORK, LOGON32_PROVIDER_DEFAULT, out token))
                return Marshal.GetLastWin32Error();
            CloseHandle(token);
            return 0;
        }
    }
}
'@

# ------------------------------------------------------------------------------------------------
# Shared helpers (policy-free plumbing used by several primitives and by the executor's journal)

function Initialize-FleetNative {
    # Add-Type of the constant source above, once per process.
    if (-not ('FleetLockdown.Lsa' -as [type])) {
        $null = Add-Type -TypeDefinition $script:FleetNativeSource -Language CSharp
    }
}

function Enable-FleetPrivilege {
    # AdjustTokenPrivileges; returns @{ name = enabled before } for Restore-FleetPrivilege.
    param([string[]]$Name)
    Initialize-FleetNative
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

function New-FleetWin32Error {
    # A Win32Exception: the executor reports it as win32_<code>.
    param([int]$Code, [string]$Text)
    return (New-Object -TypeName System.ComponentModel.Win32Exception -ArgumentList @($Code, $Text))
}

function Open-FleetRegistryKey {
    # RegistryKey.OpenBaseKey(hive, explicit RegistryView) then OpenSubKey(path, ReadWriteSubTree,
    # rights); $null when the key does not exist.
    param([string]$Path, $View, [System.Security.AccessControl.RegistryRights]$Rights)
    $hives = @{ 'HKLM' = 'LocalMachine'; 'HKEY_LOCAL_MACHINE' = 'LocalMachine'; 'HKU' = 'Users'; 'HKEY_USERS' = 'Users'; 'HKCR' = 'ClassesRoot'; 'HKEY_CLASSES_ROOT' = 'ClassesRoot' }
    $parts = $Path.Split([char[]]@([char]'\'), 2)
    $hive = $parts[0].TrimEnd(':')
    if (-not $hives.ContainsKey($hive)) { throw ('unsupported registry hive: ' + $hive) }
    $viewName = 'Registry64'
    if ([int]$View -eq 32) { $viewName = 'Registry32' }
    $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey([Microsoft.Win32.RegistryHive]$hives[$hive], [Microsoft.Win32.RegistryView]$viewName)
    if ($parts.Count -lt 2 -or $parts[1] -eq '') { return $base }
    return $base.OpenSubKey($parts[1], [Microsoft.Win32.RegistryKeyPermissionCheck]::ReadWriteSubTree, $Rights)
}

function Get-FleetObjectKind {
    # "directory" | "file" | "key" | $null (absent): System.IO.Directory/File.Exists, OpenSubKey.
    param([string]$Kind, [string]$Path, $View)
    if ($Kind -eq 'path') {
        if ([System.IO.Directory]::Exists($Path)) { return 'directory' }
        if ([System.IO.File]::Exists($Path)) { return 'file' }
        return $null
    }
    if ($Kind -ne 'key') { throw ('unknown kind: ' + $Kind) }
    $key = Open-FleetRegistryKey -Path $Path -View $View -Rights ([System.Security.AccessControl.RegistryRights]::ReadPermissions)
    if ($null -eq $key) { return $null }
    [void]$key.Close()
    return 'key'
}

function Get-FleetSecurity {
    # Owner + Access sections only, with the object's own class: DirectorySecurity
    # (DirectoryInfo.GetAccessControl), FileSecurity (FileInfo.GetAccessControl), RegistrySecurity.
    param([string]$Object, [string]$Path, $View)
    if ($Object -eq 'directory') { return (New-Object -TypeName System.IO.DirectoryInfo -ArgumentList $Path).GetAccessControl($script:FleetSections) }
    if ($Object -eq 'file') { return (New-Object -TypeName System.IO.FileInfo -ArgumentList $Path).GetAccessControl($script:FleetSections) }
    $key = Open-FleetRegistryKey -Path $Path -View $View -Rights ([System.Security.AccessControl.RegistryRights]::ReadPermissions)
    try {
        return $key.GetAccessControl($script:FleetSections)
    } finally {
        [void]$key.Close()
    }
}

function New-FleetSecurityObject {
    # An empty security object of the object's class: only the sections set on it are written.
    param([string]$Object)
    if ($Object -eq 'directory') { return (New-Object -TypeName System.Security.AccessControl.DirectorySecurity) }
    if ($Object -eq 'file') { return (New-Object -TypeName System.Security.AccessControl.FileSecurity) }
    return (New-Object -TypeName System.Security.AccessControl.RegistrySecurity)
}

function Set-FleetSecurity {
    # FileInfo/DirectoryInfo/RegistryKey.SetAccessControl (not Set-Acl: ansible/ansible#20553);
    # .NET persists only the sections modified on $Security. $Rights: what the key is opened for.
    param([string]$Object, [string]$Path, $View, $Security, [System.Security.AccessControl.RegistryRights]$Rights)
    if ($Object -eq 'directory') {
        $directory = New-Object -TypeName System.IO.DirectoryInfo -ArgumentList $Path
        [void]$directory.SetAccessControl($Security)
        return
    }
    if ($Object -eq 'file') {
        $file = New-Object -TypeName System.IO.FileInfo -ArgumentList $Path
        [void]$file.SetAccessControl($Security)
        return
    }
    $open = $Rights -bor [System.Security.AccessControl.RegistryRights]::ReadPermissions
    $key = Open-FleetRegistryKey -Path $Path -View $View -Rights $open
    if ($null -eq $key) { throw (New-FleetWin32Error -Code 2 -Text ('key not found: ' + $Path)) }
    try {
        [void]$key.SetAccessControl($Security)
    } finally {
        [void]$key.Close()
    }
}

function Set-FleetOwner {
    # ObjectSecurity.SetOwner on an empty security object: only the Owner section is written.
    param([string]$Object, [string]$Path, $View, [string]$Sid)
    $security = New-FleetSecurityObject -Object $Object
    [void]$security.SetOwner((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $Sid))
    Set-FleetSecurity -Object $Object -Path $Path -View $View -Security $security -Rights ([System.Security.AccessControl.RegistryRights]::TakeOwnership)
}

function Write-FleetDaclAsOwner {
    # THE take-ownership helper (apply and rollback): SeTakeOwnershipPrivilege + SeRestorePrivilege
    # enabled; the owner becomes BUILTIN\Administrators (WRITE_DAC by ownership); then ONE
    # SetAccessControl writes the DACL AND the previous owner (Owner + Access sections, so Windows
    # computes inherited CREATOR OWNER ACEs for the restored owner, not for Administrators); if that
    # write fails, finally puts the previous owner back alone. MS Learn "SetNamedSecurityInfoW"
    # (WRITE_DAC needs ownership; SeRestorePrivilege allows any owner SID), "ObjectSecurity.SetOwner".
    param([string]$Object, [string]$Path, $View, $Security)
    $previous = Enable-FleetPrivilege -Name @('SeTakeOwnershipPrivilege', 'SeRestorePrivilege')
    $original = $null
    $written = $false
    try {
        $original = (Get-FleetSecurity -Object $Object -Path $Path -View $View).GetOwner([System.Security.Principal.SecurityIdentifier]).Value
        Set-FleetOwner -Object $Object -Path $Path -View $View -Sid $script:FleetAdministratorsSid
        [void]$Security.SetOwner((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $original))
        Set-FleetSecurity -Object $Object -Path $Path -View $View -Security $Security -Rights ([System.Security.AccessControl.RegistryRights]::ChangePermissions -bor [System.Security.AccessControl.RegistryRights]::TakeOwnership)
        $written = $true
    } finally {
        if ($null -ne $original -and -not $written) { Set-FleetOwner -Object $Object -Path $Path -View $View -Sid $original }
        Restore-FleetPrivilege -Previous $previous
    }
}

function Get-FleetExplicitForm {
    # The compare-and-swap form of a descriptor: its DACL without inherited ACEs, protection kept
    # (a write on a parent changes its children's inherited ACEs: no conflict). MS Learn
    # "RawSecurityDescriptor Class", "RawAcl.RemoveAce", "GenericSecurityDescriptor.GetSddlForm".
    param([string]$Sddl)
    $raw = New-Object -TypeName System.Security.AccessControl.RawSecurityDescriptor -ArgumentList $Sddl
    $acl = $raw.DiscretionaryAcl
    if ($null -ne $acl) {
        for ($i = $acl.Count - 1; $i -ge 0; $i--) {
            if (($acl[$i].AceFlags -band [System.Security.AccessControl.AceFlags]::Inherited) -ne 0) { [void]$acl.RemoveAce($i) }
        }
    }
    return $raw.GetSddlForm([System.Security.AccessControl.AccessControlSections]::Access)
}

function Get-FleetAdsiEntry {
    # ADSI WinNT://<computer>,computer Children.Find(name, class); $null when absent.
    param([string]$Name, [string]$Class)
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    try {
        return $computer.Children.Find($Name.Split('\')[-1], $Class)
    } catch {
        return $null
    }
}

function Get-FleetAdsiSid {
    # objectSid of a DirectoryEntry (SecurityIdentifier(byte[], 0)).
    param($Entry)
    $bytes = [byte[]]$Entry.psbase.Properties['objectSid'].Value
    return (New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList @($bytes, 0)).Value
}

function Get-FleetComSids {
    # SIDs of the IADs objects a native Invoke returned (Members, Groups): objectSid via InvokeMember,
    # as ansible.windows win_group_membership.ps1 does (orphaned SIDs come back raw).
    param($Entry, [string]$Method)
    $sids = New-Object -TypeName System.Collections.ArrayList
    foreach ($item in @($Entry.psbase.Invoke($Method))) {
        $bytes = $item.GetType().InvokeMember('objectSid', 'GetProperty', $null, $item, $null)
        [void]$sids.Add((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList @([byte[]]$bytes, 0)).Value)
    }
    return , $sids.ToArray()
}

function ConvertTo-FleetSid {
    # A SID string, validated and normalised by System.Security.Principal.SecurityIdentifier.
    param([string]$Sid)
    return (New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $Sid).Value
}

function Resolve-FleetAccountSid {
    # NTAccount.Translate(SecurityIdentifier); $null when the name does not map (1332).
    param([string]$Name)
    if ($Name -match '^S-1-[0-9-]+$') { return (ConvertTo-FleetSid -Sid $Name) }
    try {
        return (New-Object -TypeName System.Security.Principal.NTAccount -ArgumentList $Name).Translate([System.Security.Principal.SecurityIdentifier]).Value
    } catch {
        return $null
    }
}

function Resolve-FleetStartNameSid {
    # Win32_Service.StartName -> SID: LocalSystem and the NT AUTHORITY service accounts are fixed
    # (ansible.windows win_service.ps1), ".\name" is this computer's account.
    param([string]$StartName)
    if (-not $StartName) { return $null }
    if ($StartName -match '^(LocalSystem|NT AUTHORITY\\SYSTEM)$') { return 'S-1-5-18' }
    if ($StartName -match '^NT AUTHORITY\\LocalService$') { return 'S-1-5-19' }
    if ($StartName -match '^NT AUTHORITY\\NetworkService$') { return 'S-1-5-20' }
    $name = $StartName
    if ($name.StartsWith('.\')) { $name = $env:COMPUTERNAME + $name.Substring(1) }
    return (Resolve-FleetAccountSid -Name $name)
}

function Get-FleetServiceInstance {
    # Win32_Service by name, filtered in PowerShell (no WQL text is ever built from arguments).
    param([string]$Name)
    $found = @(Get-CimInstance -ClassName Win32_Service | Where-Object { $_.Name -eq $Name })
    if ($found.Count -eq 0) { return $null }
    return $found[0]
}

function Get-FleetExclusionPaths {
    # (Get-MpPreference).ExclusionPath; $null when the Defender cmdlets are not installed.
    if ($null -eq (Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue)) { return $null }
    $preference = Get-MpPreference
    $paths = @($preference.ExclusionPath | Where-Object { $_ })
    return , $paths
}

function Get-FleetPasswordPolicy {
    # ADSI WinNT://<computer> (the local SAM domain, IADsDomain.MinPasswordLength). Complexity is
    # not exposed there: reported null (unknown). [U] not verified on Windows.
    try {
        $domain = [ADSI]('WinNT://' + $env:COMPUTERNAME)
        $min = $domain.psbase.Properties['MinPasswordLength'].Value
        if ($null -eq $min) { return $null }
        return @{ min_length = [int]$min; complexity = $null }
    } catch {
        return $null
    }
}

function Get-FleetJournalPaths {
    # @(FleetLockdown folder, journal folder, <job_id>.jsonl) under %ProgramData%.
    param([string]$JobId)
    if ($JobId -notmatch $script:FleetJobIdPattern) { throw ('bad job id: ' + $JobId) }
    $root = Join-Path -Path $env:ProgramData -ChildPath 'FleetLockdown'
    $folder = Join-Path -Path $root -ChildPath 'journal'
    return @($root, $folder, (Join-Path -Path $folder -ChildPath ($JobId + '.jsonl')))
}

function Get-FleetJournalProblem {
    # Why a journal path must not be trusted ($null when it may): a junction or other reparse point
    # (FileAttributes.ReparsePoint), or an owner other than SYSTEM, Administrators or the caller.
    param([string]$Path)
    if (-not (Test-Path -LiteralPath $Path)) { return $null }
    $item = Get-Item -LiteralPath $Path -Force
    if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) { return ('reparse point: ' + $Path) }
    $owner = $item.GetAccessControl([System.Security.AccessControl.AccessControlSections]::Owner).GetOwner([System.Security.Principal.SecurityIdentifier]).Value
    $trusted = @($script:FleetSystemSid, $script:FleetAdministratorsSid, [System.Security.Principal.WindowsIdentity]::GetCurrent().User.Value)
    if ($trusted -notcontains $owner) { return ('owned by ' + $owner + ': ' + $Path) }
    return $null
}

function Initialize-FleetJournalFolder {
    # Directory.CreateDirectory(path, DirectorySecurity): SYSTEM + Administrators full control,
    # protected, owner Administrators; an existing folder is checked, then re-protected.
    param([string]$Path)
    $security = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    [void]$security.SetAccessRuleProtection($true, $false)
    $inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
    foreach ($sid in @($script:FleetSystemSid, $script:FleetAdministratorsSid)) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList @($identity, [System.Security.AccessControl.FileSystemRights]::FullControl, $inherit, [System.Security.AccessControl.PropagationFlags]::None, [System.Security.AccessControl.AccessControlType]::Allow)
        [void]$security.AddAccessRule($rule)
    }
    [void]$security.SetOwner((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $script:FleetAdministratorsSid))
    $problem = Get-FleetJournalProblem -Path $Path
    if ($null -ne $problem) { throw ('journal folder not trusted: ' + $problem) }
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) {
        [void][System.IO.Directory]::CreateDirectory($Path, $security)
        return
    }
    $directory = New-Object -TypeName System.IO.DirectoryInfo -ArgumentList $Path
    [void]$directory.SetAccessControl($security)
}

function Read-FleetJournalEntries {
    # <job_id>.jsonl: one compact JSON object per line (File.ReadAllText, split on LF, ConvertFrom-Json
    # per line). A last line without its LF was cut short by a stop mid-write: left out, and said.
    # Returns @(entries, problem-or-$null).
    param([string]$Path)
    $lines = ([System.IO.File]::ReadAllText($Path, [System.Text.Encoding]::UTF8)).Split([char]10)
    $entries = New-Object -TypeName System.Collections.ArrayList
    $last = $lines.Length - 1
    for ($i = 0; $i -lt $last; $i++) {
        if ($lines[$i].Length -gt 0) { [void]$entries.Add((ConvertFrom-Json -InputObject $lines[$i])) }
    }
    $torn = $null
    if ($lines[$last].Length -gt 0) { $torn = 'the last entry was cut short (the agent stopped while writing it) and is left out' }
    $read = @($entries.ToArray(), $torn)
    return , $read
}

function Add-FleetJournalEntry {
    # The executor's journal append: one line (ConvertTo-Json -Compress, LF) added with a FileStream
    # opened FileMode.Append and FileOptions.WriteThrough, then Flush($true); the folders are created
    # only when the file does not exist yet. Cost per append is constant: nothing is re-read.
    # Source: MS Learn "FileMode Enum" (Append), "FileOptions Enum" (WriteThrough), "FileStream.Flush(Boolean)".
    param([string]$JobId, $Entry)
    $paths = Get-FleetJournalPaths -JobId $JobId
    foreach ($path in $paths) {
        $problem = Get-FleetJournalProblem -Path $path
        if ($null -ne $problem) { throw ('journal not trusted: ' + $problem) }
    }
    if (-not (Test-Path -LiteralPath $paths[2] -PathType Leaf)) {
        Initialize-FleetJournalFolder -Path $paths[0]
        Initialize-FleetJournalFolder -Path $paths[1]
    }
    $line = (ConvertTo-Json -InputObject $Entry -Depth 32 -Compress) + [char]10
    $bytes = (New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $false).GetBytes($line)
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList @($paths[2], [System.IO.FileMode]::Append, [System.IO.FileAccess]::Write, [System.IO.FileShare]::Read, 4096, [System.IO.FileOptions]::WriteThrough)
    try {
        [void]$stream.Write($bytes, 0, $bytes.Length)
        [void]$stream.Flush($true)
    } finally {
        [void]$stream.Dispose()
    }
}

function Read-FleetLine {
    # StreamReader.ReadLine with the stream's ReadTimeout; $null on timeout or close.
    param($Reader)
    try {
        return $Reader.ReadLine()
    } catch {
        return $null
    }
}

# ------------------------------------------------------------------------------------------------
# Reads

function Invoke-FleetOpHostInfo {
    # Win32_OperatingSystem / Win32_ComputerSystem (Get-CimInstance), $PSVersionTable,
    # [Environment]::Is64BitProcess / Is64BitOperatingSystem, SessionState.LanguageMode,
    # WindowsPrincipal.IsInRole(WindowsBuiltInRole.Administrator). Sources: MS Learn
    # "Win32_OperatingSystem class", "Win32_ComputerSystem class" (DomainRole 0-5).
    param($A)
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $cs = Get-CimInstance -ClassName Win32_ComputerSystem
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList $identity
    $arch = 'x86'
    if ([Environment]::Is64BitOperatingSystem) { $arch = 'x64' }
    $policy = Get-FleetPasswordPolicy
    return @{
        computer_name      = ([string]$env:COMPUTERNAME).ToUpperInvariant()
        system_root        = [string]$env:SystemRoot
        os_caption         = [string]$os.Caption
        os_build           = [int]$os.BuildNumber
        arch               = $arch
        domain_role        = [int]$cs.DomainRole
        powershell_version = [string]$PSVersionTable.PSVersion
        process_64bit      = [Environment]::Is64BitProcess
        language_mode      = [string]$ExecutionContext.SessionState.LanguageMode
        elevated           = $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
        user_name          = [string]$identity.Name
        password_policy    = $policy
    }
}

function Invoke-FleetOpRegistryRead {
    # RegistryKey.OpenBaseKey(LocalMachine, RegistryView.Registry32|Registry64) + GetValue with
    # DoNotExpandEnvironmentNames; DWORD as unsigned, REG_BINARY as lower-case hex.
    # Source: MS Learn "RegistryKey.OpenBaseKey(RegistryHive, RegistryView) Method".
    param($A)
    $key = Open-FleetRegistryKey -Path ([string]$A.path) -View $A.view -Rights ([System.Security.AccessControl.RegistryRights]::ReadKey)
    if ($null -eq $key) { return @{ exists = $false; values = @{} } }
    $values = @{}
    try {
        $present = @($key.GetValueNames())
        $wanted = $present
        if ($null -ne $A.names) { $wanted = @($A.names) }
        foreach ($name in $wanted) {
            if ($present -notcontains $name) { continue }
            $kind = $key.GetValueKind($name)
            $value = $key.GetValue($name, $null, [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames)
            if ($kind -eq [Microsoft.Win32.RegistryValueKind]::DWord) { $value = [int64]$value -band [int64]4294967295 }
            if ($kind -eq [Microsoft.Win32.RegistryValueKind]::MultiString) { $value = @($value) }
            if ($kind -eq [Microsoft.Win32.RegistryValueKind]::Binary) { $value = ([System.BitConverter]::ToString([byte[]]$value) -replace '-', '').ToLowerInvariant() }
            $values[[string]$name] = $value
        }
    } finally {
        [void]$key.Close()
    }
    return @{ exists = $true; values = $values }
}

function Invoke-FleetOpSdRead {
    # GetAccessControl(AccessControlSections 'Owner, Access') on DirectoryInfo (DirectorySecurity),
    # FileInfo (FileSecurity) or RegistryKey via OpenBaseKey(explicit view) (RegistrySecurity);
    # ObjectSecurity.GetSecurityDescriptorSddlForm(Owner, Access), AreAccessRulesProtected.
    # Source: MS Learn "ObjectSecurity.GetSecurityDescriptorSddlForm Method".
    param($A)
    $view = $null
    if ($null -ne $A.PSObject.Properties['view']) { $view = $A.view }
    $object = Get-FleetObjectKind -Kind ([string]$A.kind) -Path ([string]$A.path) -View $view
    if ($null -eq $object) { return @{ exists = $false; object = $null; owner = $null; sddl = $null; protected = $null } }
    $security = Get-FleetSecurity -Object $object -Path ([string]$A.path) -View $view
    $owner = $security.GetOwner([System.Security.Principal.SecurityIdentifier])
    $ownerSid = $null
    if ($null -ne $owner) { $ownerSid = $owner.Value }
    return @{
        exists    = $true
        object    = $object
        owner     = $ownerSid
        sddl      = $security.GetSecurityDescriptorSddlForm($script:FleetSections)
        protected = $security.AreAccessRulesProtected
    }
}

function Invoke-FleetOpSidLookup {
    # NTAccount.Translate([SecurityIdentifier]); a name that does not map gives null.
    # Source: MS Learn "NTAccount.Translate(Type) Method".
    param($A)
    $sids = @{}
    foreach ($name in @($A.names)) {
        $sids[[string]$name] = Resolve-FleetAccountSid -Name ([string]$name)
    }
    return @{ sids = $sids }
}

function Invoke-FleetOpUserGet {
    # ADSI WinNT:// Children.Find(name, 'user'), UserFlags, objectSid, psbase.Invoke('Groups').
    # Source: MS Learn "IADsUser::Groups", "ADS_USER_FLAG_ENUM"; ansible.windows win_user.ps1.
    param($A)
    $user = Get-FleetAdsiEntry -Name ([string]$A.name) -Class 'user'
    if ($null -eq $user) { return @{ exists = $false; sid = $null; flags = $null; groups = @() } }
    $groups = Get-FleetComSids -Entry $user -Method 'Groups'
    $sid = Get-FleetAdsiSid -Entry $user
    $flags = [int64]$user.psbase.Properties['UserFlags'].Value
    return @{ exists = $true; sid = $sid; flags = $flags; groups = $groups }
}

function Invoke-FleetOpGroupGet {
    # ADSI WinNT:// Children.Find(name, 'group'), psbase.Invoke('Members') by objectSid
    # (not Get-LocalGroupMember: PowerShell/PowerShell#2996). Source: MS Learn "IADsGroup::Members".
    param($A)
    $group = Get-FleetAdsiEntry -Name ([string]$A.name) -Class 'group'
    if ($null -eq $group) { return @{ exists = $false; sid = $null; members = @() } }
    $members = Get-FleetComSids -Entry $group -Method 'Members'
    $sid = Get-FleetAdsiSid -Entry $group
    return @{ exists = $true; sid = $sid; members = $members }
}

function Invoke-FleetOpLsaEnum {
    # LsaEnumerateAccountsWithUserRight (STATUS_NO_MORE_ENTRIES -> []). Source: MS Learn
    # "LsaEnumerateAccountsWithUserRight function (ntsecapi.h)"; ansible.windows win_user_right.ps1.
    param($A)
    Initialize-FleetNative
    $sids = @([FleetLockdown.Lsa]::Holders([string]$A.right))
    return @{ sids = $sids }
}

function Invoke-FleetOpServiceGet {
    # Win32_Service via Get-CimInstance (Name, DisplayName, StartName, State, StartMode, PathName).
    # Source: MS Learn "Win32_Service class".
    param($A)
    $all = @(Get-CimInstance -ClassName Win32_Service)
    $names = @($all | ForEach-Object { [string]$_.Name })
    if ($null -ne $A.names) { $names = @($A.names | ForEach-Object { [string]$_ }) }
    $services = New-Object -TypeName System.Collections.ArrayList
    foreach ($name in $names) {
        $found = @($all | Where-Object { $_.Name -eq $name })
        if ($found.Count -eq 0) {
            [void]$services.Add(@{ name = $name; exists = $false; display_name = $null; start_name = $null; start_name_sid = $null; state = $null; start_mode = $null; path_name = $null })
            continue
        }
        $service = $found[0]
        [void]$services.Add(@{
                name           = [string]$service.Name
                exists         = $true
                display_name   = [string]$service.DisplayName
                start_name     = [string]$service.StartName
                start_name_sid = Resolve-FleetStartNameSid -StartName ([string]$service.StartName)
                state          = [string]$service.State
                start_mode     = [string]$service.StartMode
                path_name      = [string]$service.PathName
            })
    }
    return @{ services = $services.ToArray() }
}

function Invoke-FleetOpDefenderGet {
    # Get-MpPreference ExclusionPath (Defender module); installed=false when the cmdlets are absent.
    # Source: MS Learn "Get-MpPreference (Defender)".
    param($A)
    $paths = Get-FleetExclusionPaths
    if ($null -eq $paths) { return @{ installed = $false; paths = @() } }
    return @{ installed = $true; paths = $paths }
}

# The fixed SQL statement table (names = SQL_STATEMENTS in program.py). Identifiers are quoted with
# QUOTENAME inside dynamic SQL; every value is a SqlParameter; a permission must be one of
# sys.fn_builtin_permissions('DATABASE'). Statements run in a database through
# EXEC <QUOTENAME(db)>.sys.sp_executesql. Source: MS Learn "QUOTENAME (Transact-SQL)",
# "sp_executesql (Transact-SQL)", "sys.fn_builtin_permissions (Transact-SQL)".
$script:FleetSqlStatements = @{
    'whoami'       = 'SELECT IS_SRVROLEMEMBER(N''sysadmin''), SUSER_SNAME()'
    'login_exists' = 'SELECT name, type_desc FROM sys.server_principals WHERE name = @login'
    'user_exists'  = @'
DECLARE @proc nvarchar(400) = QUOTENAME(@database) + N'.sys.sp_executesql';
EXEC @proc N'SELECT dp.name FROM sys.database_principals dp WHERE dp.sid = SUSER_SID(@login)', N'@login sysname', @login = @login;
'@
    'permissions'  = @'
DECLARE @proc nvarchar(400) = QUOTENAME(@database) + N'.sys.sp_executesql';
EXEC @proc N'SELECT p.permission_name, p.state_desc FROM sys.database_permissions p JOIN sys.database_principals u ON u.principal_id = p.grantee_principal_id WHERE u.name = @user AND p.class_desc = N''DATABASE''', N'@user sysname', @user = @user;
'@
    'create_login' = @'
DECLARE @q nvarchar(max) = N'CREATE LOGIN ' + QUOTENAME(@login) + N' FROM WINDOWS';
EXEC sp_executesql @q;
'@
    'drop_login'   = @'
DECLARE @q nvarchar(max) = N'DROP LOGIN ' + QUOTENAME(@login);
EXEC sp_executesql @q;
'@
    'create_user'  = @'
DECLARE @proc nvarchar(400) = QUOTENAME(@database) + N'.sys.sp_executesql';
DECLARE @q nvarchar(max) = N'CREATE USER ' + QUOTENAME(@user) + N' FOR LOGIN ' + QUOTENAME(@login);
EXEC @proc @q;
'@
    'drop_user'    = @'
DECLARE @proc nvarchar(400) = QUOTENAME(@database) + N'.sys.sp_executesql';
DECLARE @q nvarchar(max) = N'DROP USER ' + QUOTENAME(@user);
EXEC @proc @q;
'@
    'grant'        = @'
IF NOT EXISTS (SELECT 1 FROM sys.fn_builtin_permissions(N'DATABASE') WHERE permission_name = @permission)
BEGIN RAISERROR(N'not a database permission', 16, 1); RETURN; END
DECLARE @proc nvarchar(400) = QUOTENAME(@database) + N'.sys.sp_executesql';
DECLARE @q nvarchar(max) = N'GRANT ' + @permission + N' TO ' + QUOTENAME(@user);
EXEC @proc @q;
'@
    'revoke'       = @'
IF NOT EXISTS (SELECT 1 FROM sys.fn_builtin_permissions(N'DATABASE') WHERE permission_name = @permission)
BEGIN RAISERROR(N'not a database permission', 16, 1); RETURN; END
DECLARE @proc nvarchar(400) = QUOTENAME(@database) + N'.sys.sp_executesql';
DECLARE @q nvarchar(max) = N'REVOKE ' + @permission + N' FROM ' + QUOTENAME(@user);
EXEC @proc @q;
'@
}
$script:FleetSqlWrites = @('create_login', 'drop_login', 'create_user', 'drop_user', 'grant', 'revoke')

function Invoke-FleetOpSql {
    # System.Data.SqlClient: SqlConnectionStringBuilder (Data Source = the instance argument,
    # Integrated Security), SqlCommand.CommandText from the fixed table, SqlParameter values
    # (NVarChar). Source: MS Learn "SqlParameter Class", "SqlConnectionStringBuilder Class".
    param($A)
    if (-not $script:FleetSqlStatements.ContainsKey([string]$A.statement)) { throw ('unknown SQL statement: ' + [string]$A.statement) }
    $builder = New-Object -TypeName System.Data.SqlClient.SqlConnectionStringBuilder
    $builder['Data Source'] = [string]$A.instance
    $builder['Initial Catalog'] = 'master'
    $builder['Integrated Security'] = $true
    $builder['Connect Timeout'] = 15
    $connection = New-Object -TypeName System.Data.SqlClient.SqlConnection -ArgumentList $builder.ConnectionString
    $rows = New-Object -TypeName System.Collections.ArrayList
    try {
        [void]$connection.Open()
        $command = $connection.CreateCommand()
        $command.CommandText = $script:FleetSqlStatements[[string]$A.statement]
        foreach ($property in @($A.params.PSObject.Properties)) {
            if ($property.Name -notmatch '^[A-Za-z][A-Za-z0-9_]{0,63}$') { throw ('bad SQL parameter name: ' + $property.Name) }
            $parameter = New-Object -TypeName System.Data.SqlClient.SqlParameter -ArgumentList @(('@' + $property.Name), [System.Data.SqlDbType]::NVarChar, 4000)
            $parameter.Value = [string]$property.Value
            [void]$command.Parameters.Add($parameter)
        }
        $reader = $command.ExecuteReader()
        try {
            while ($reader.Read()) {
                $row = New-Object -TypeName System.Collections.ArrayList
                for ($i = 0; $i -lt $reader.FieldCount; $i += 1) {
                    $cell = $reader.GetValue($i)
                    if ($cell -is [DBNull]) { $cell = $null }
                    [void]$row.Add($cell)
                }
                [void]$rows.Add($row.ToArray())
            }
        } finally {
            [void]$reader.Close()
        }
    } finally {
        [void]$connection.Close()
    }
    return @{ rows = $rows.ToArray(); changed = ($script:FleetSqlWrites -contains [string]$A.statement) }
}

function Invoke-FleetOpTcpProbe {
    # System.Net.Sockets.TcpClient (address family of the host argument, so 127.0.0.1, ::1 and the
    # name can each be probed), BeginConnect + WaitOne(timeout), NetworkStream.ReadTimeout; `send`
    # is written as one ASCII line ended by CRLF. Source: MS Learn "TcpClient.BeginConnect Method".
    param($A)
    $ip = $null
    $client = New-Object -TypeName System.Net.Sockets.TcpClient
    if ([System.Net.IPAddress]::TryParse([string]$A.host, [ref]$ip)) {
        [void]$client.Close()
        $client = New-Object -TypeName System.Net.Sockets.TcpClient -ArgumentList $ip.AddressFamily
    }
    $result = @{ connected = $false; banner = $null; reply = $null; error = $null }
    try {
        $pending = $client.BeginConnect([string]$A.host, [int]$A.port, $null, $null)
        if (-not $pending.AsyncWaitHandle.WaitOne([int]$A.timeout_ms)) { throw 'connect timed out' }
        [void]$client.EndConnect($pending)
        $result['connected'] = $true
        $stream = $client.GetStream()
        $stream.ReadTimeout = [int]$A.timeout_ms
        $stream.WriteTimeout = [int]$A.timeout_ms
        $reader = New-Object -TypeName System.IO.StreamReader -ArgumentList @($stream, [System.Text.Encoding]::ASCII)
        $result['banner'] = Read-FleetLine -Reader $reader
        if ($null -ne $A.send) {
            $bytes = [System.Text.Encoding]::ASCII.GetBytes(([string]$A.send).TrimEnd([char[]]@([char]13, [char]10)) + "`r`n")
            [void]$stream.Write($bytes, 0, $bytes.Length)
            [void]$stream.Flush()
            $result['reply'] = Read-FleetLine -Reader $reader
        }
    } catch {
        $result['error'] = [string]$_.Exception.Message
    } finally {
        [void]$client.Close()
    }
    return $result
}

function Invoke-FleetOpHttpProbe {
    # HttpWebRequest GET, AllowAutoRedirect = false, Timeout; ServicePointManager.SecurityProtocol =
    # Tls12 (3072) (+ Tls13 where the enum and the OS have it), restored in finally; a per-request
    # ServerCertificateValidationCallback that accepts any certificate only when allow_self_signed.
    # Source: MS Learn "HttpWebRequest.AllowAutoRedirect", "HttpWebRequest.ServerCertificateValidationCallback".
    param($A)
    $result = @{ status = $null; location = $null; title = $null; error = $null }
    $savedProtocol = [System.Net.ServicePointManager]::SecurityProtocol
    $protocol = [System.Net.SecurityProtocolType]3072
    if ([Enum]::GetNames([System.Net.SecurityProtocolType]) -contains 'Tls13' -and [Environment]::OSVersion.Version.Build -ge 20348) {
        $protocol = $protocol -bor [System.Net.SecurityProtocolType]'Tls13'
    }
    $response = $null
    try {
        [System.Net.ServicePointManager]::SecurityProtocol = $protocol
        $request = [System.Net.HttpWebRequest]([System.Net.WebRequest]::Create([string]$A.url))
        $request.AllowAutoRedirect = $false
        $request.Timeout = [int]$A.timeout_ms
        $request.ReadWriteTimeout = [int]$A.timeout_ms
        if ($A.allow_self_signed) { Initialize-FleetNative; $request.ServerCertificateValidationCallback = [FleetLockdown.Certificates]::AcceptAny() }
        try { $response = $request.GetResponse() } catch [System.Net.WebException] { $response = $_.Exception.Response; if ($null -eq $response) { throw } }
        $result['status'] = [int]$response.StatusCode
        $result['location'] = $response.Headers['Location']
        $reader = New-Object -TypeName System.IO.StreamReader -ArgumentList $response.GetResponseStream()
        $buffer = New-Object -TypeName char[] -ArgumentList 65536
        $count = $reader.Read($buffer, 0, $buffer.Length)
        $match = [regex]::Match((New-Object -TypeName string -ArgumentList @($buffer, 0, $count)), '(?is)<title[^>]*>(.*?)</title>')
        if ($match.Success) { $result['title'] = [System.Net.WebUtility]::HtmlDecode($match.Groups[1].Value).Trim() }
    } catch {
        $result['error'] = [string]$_.Exception.Message
    } finally {
        if ($null -ne $response) { [void]$response.Close() }
        [System.Net.ServicePointManager]::SecurityProtocol = $savedProtocol
    }
    return $result
}

function Invoke-FleetOpLogonCheck {
    # LogonUser(LOGON32_LOGON_NETWORK = 3, LOGON32_PROVIDER_DEFAULT) P/Invoke, code = GetLastError
    # (not PrincipalContext.ValidateCredentials). Source: MS Learn "LogonUserW function
    # (winbase.h)"; ansible.windows win_user.ps1 Test-LocalCredential.
    param($A)
    Initialize-FleetNative
    $parts = ([string]$A.user).Split([char[]]@([char]'\'), 2)
    $domain = '.'
    $name = $parts[0]
    if ($parts.Count -eq 2) { $domain = $parts[0]; $name = $parts[1] }
    $code = [FleetLockdown.Logon]::Check($name, $domain, [string]$A.password)
    return @{ ok = ($code -eq 0); code = $code }
}

function Invoke-FleetOpJournalRead {
    # %ProgramData%\FleetLockdown\journal\<job_id>.json: refused (trusted=false) when a folder or the
    # file is a reparse point or owned by someone other than SYSTEM/Administrators/the caller.
    # Source: MS Learn "FileAttributes Enum" (ReparsePoint), "FileSystemSecurity" GetOwner.
    param($A)
    $paths = Get-FleetJournalPaths -JobId ([string]$A.job_id)
    if (-not (Test-Path -LiteralPath $paths[2] -PathType Leaf)) { return @{ exists = $false; trusted = $true; entries = @(); problem = $null } }
    foreach ($path in $paths) {
        $problem = Get-FleetJournalProblem -Path $path
        if ($null -ne $problem) { return @{ exists = $true; trusted = $false; entries = @(); problem = $problem } }
    }
    try {
        $read = Read-FleetJournalEntries -Path $paths[2]
    } catch {
        return @{ exists = $true; trusted = $true; entries = @(); problem = ('journal is not valid: ' + [string]$_.Exception.Message) }
    }
    return @{ exists = $true; trusted = $true; entries = $read[0]; problem = $read[1] }
}

function Invoke-FleetOpFileRead {
    # FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite): read-only, and IIS may hold
    # applicationHost.config open; Stream.Read until max_bytes or the end; Convert.ToBase64String.
    # Source: MS Learn "FileStream(String, FileMode, FileAccess, FileShare) Constructor", "Stream.Read".
    param($A)
    $path = [string]$A.path
    if (-not [System.IO.File]::Exists($path)) { return @{ exists = $false; size = $null; data = $null; truncated = $false } }
    $limit = [int64]$A.max_bytes
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList @($path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]::ReadWrite)
    try {
        $size = [int64]$stream.Length
        if ($size -lt $limit) { $limit = $size }
        $buffer = New-Object -TypeName byte[] -ArgumentList ([int]$limit)
        $done = 0
        while ($done -lt $limit) {
            $count = $stream.Read($buffer, $done, [int]($limit - $done))
            if ($count -le 0) { break }
            $done = $done + $count
        }
    } finally {
        [void]$stream.Close()
    }
    return @{ exists = $true; size = $size; data = [Convert]::ToBase64String($buffer, 0, $done); truncated = ($size -gt $done) }
}

# ------------------------------------------------------------------------------------------------
# Writes (each returns "changed")

function Invoke-FleetOpDaclWrite {
    # Compare-and-swap: re-read (Owner, Access); when its explicit ACEs or protection differ from
    # `expected`'s (Get-FleetExplicitForm of both), nothing is written (conflict). Else the DACL is set from SDDL on a new object of the object's own class
    # (DirectorySecurity / FileSecurity / RegistrySecurity .SetSecurityDescriptorSddlForm(sddl, Access))
    # and written with SetAccessControl (only the DACL section); `after` is re-read. `failures` is
    # always [] (per-child propagation errors need TreeSetNamedSecurityInfo: not done). Source: MS Learn
    # "ObjectSecurity.SetSecurityDescriptorSddlForm Method", "FileSystemAclExtensions.SetAccessControl".
    param($A)
    $view = $null
    if ($null -ne $A.PSObject.Properties['view']) { $view = $A.view }
    $path = [string]$A.path
    $object = Get-FleetObjectKind -Kind ([string]$A.kind) -Path $path -View $view
    $current = $null
    if ($null -ne $object) { $current = (Get-FleetSecurity -Object $object -Path $path -View $view).GetSecurityDescriptorSddlForm($script:FleetSections) }
    if ($object -ne [string]$A.object -or $null -eq $current -or (Get-FleetExplicitForm -Sddl $current) -cne (Get-FleetExplicitForm -Sddl ([string]$A.expected))) {
        return @{ changed = $false; conflict = $true; current = $current; after = $null; failures = @() }
    }
    $security = New-FleetSecurityObject -Object $object
    [void]$security.SetSecurityDescriptorSddlForm([string]$A.sddl, [System.Security.AccessControl.AccessControlSections]::Access)
    if ($A.take_ownership) {
        Write-FleetDaclAsOwner -Object $object -Path $path -View $view -Security $security
    } else {
        Set-FleetSecurity -Object $object -Path $path -View $view -Security $security -Rights ([System.Security.AccessControl.RegistryRights]::ChangePermissions)
    }
    $after = (Get-FleetSecurity -Object $object -Path $path -View $view).GetSecurityDescriptorSddlForm($script:FleetSections)
    return @{ changed = ($after -cne $current); conflict = $false; current = $null; after = $after; failures = @() }
}

function Invoke-FleetOpLsaAdd {
    # LsaAddAccountRights for one SID and one right (additive; other holders untouched).
    # Source: MS Learn "LsaAddAccountRights function (ntsecapi.h)".
    param($A)
    Initialize-FleetNative
    $sid = ConvertTo-FleetSid -Sid ([string]$A.sid)
    $before = @([FleetLockdown.Lsa]::Holders([string]$A.right))
    if ($before -contains $sid) { return @{ changed = $false } }
    [void][FleetLockdown.Lsa]::Add($sid, [string]$A.right)
    return @{ changed = $true }
}

function Invoke-FleetOpLsaRemove {
    # LsaRemoveAccountRights(AllRights = FALSE as a 1-byte BOOLEAN, one right).
    # Source: MS Learn "LsaRemoveAccountRights function (ntsecapi.h)".
    param($A)
    Initialize-FleetNative
    $sid = ConvertTo-FleetSid -Sid ([string]$A.sid)
    $before = @([FleetLockdown.Lsa]::Holders([string]$A.right))
    if ($before -notcontains $sid) { return @{ changed = $false } }
    [void][FleetLockdown.Lsa]::Remove($sid, [string]$A.right)
    return @{ changed = $true }
}

function Invoke-FleetOpUserCreate {
    # ADSI WinNT:// Create('User'), SetPassword, SetInfo, then UserFlags ORed into the flags Windows
    # gave the account (UF_SCRIPT | UF_NORMAL_ACCOUNT stay), Description, SetInfo. Every ADSI call is
    # voided. Source: MS Learn "IADsUser::SetPassword", "ADS_USER_FLAG_ENUM"; ansible.windows win_user.ps1.
    param($A)
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    $user = $computer.Create('User', [string]$A.name)
    [void]$user.SetPassword([string]$A.password)
    [void]$user.SetInfo()
    [void]$user.psbase.RefreshCache()
    $flags = [int]$user.psbase.Properties['UserFlags'].Value -bor [int]$A.flags
    [void]$user.Put('UserFlags', $flags)
    [void]$user.Put('Description', [string]$A.description)
    [void]$user.SetInfo()
    [void]$user.psbase.RefreshCache()
    $sid = Get-FleetAdsiSid -Entry $user
    $after = [int64]$user.psbase.Properties['UserFlags'].Value
    return @{ changed = $true; sid = $sid; flags = $after }
}

function Invoke-FleetOpUserSetFlags {
    # UserFlags = (UserFlags | set) & ~clear, written (Put + SetInfo) only when different, read back.
    # Source: MS Learn "ADS_USER_FLAG_ENUM", "IADs::Put".
    param($A)
    $user = Get-FleetAdsiEntry -Name ([string]$A.name) -Class 'user'
    if ($null -eq $user) { throw (New-FleetWin32Error -Code 2221 -Text ('user not found: ' + [string]$A.name)) }
    $before = [int64]$user.psbase.Properties['UserFlags'].Value
    $want = ($before -bor [int64]$A.set) -band (-bnot [int64]$A.clear)
    if ($want -ne $before) {
        [void]$user.Put('UserFlags', [int]$want)
        [void]$user.SetInfo()
        [void]$user.psbase.RefreshCache()
    }
    $after = [int64]$user.psbase.Properties['UserFlags'].Value
    return @{ changed = ($after -ne $before); before = $before; after = $after }
}

function Invoke-FleetOpUserSetPassword {
    # IADsUser::SetPassword (voided) on an existing local account.
    # Source: MS Learn "IADsUser::SetPassword method (iads.h)".
    param($A)
    $user = Get-FleetAdsiEntry -Name ([string]$A.name) -Class 'user'
    if ($null -eq $user) { throw (New-FleetWin32Error -Code 2221 -Text ('user not found: ' + [string]$A.name)) }
    [void]$user.SetPassword([string]$A.password)
    [void]$user.SetInfo()
    return @{ changed = $true }
}

function Invoke-FleetOpUserDelete {
    # IADsContainer::Delete('user', name), only when the account still has `sid`.
    # Source: MS Learn "IADsContainer::Delete method (iads.h)".
    param($A)
    $user = Get-FleetAdsiEntry -Name ([string]$A.name) -Class 'user'
    if ($null -eq $user) { return @{ changed = $false } }
    if ((Get-FleetAdsiSid -Entry $user) -ne (ConvertTo-FleetSid -Sid ([string]$A.sid))) { return @{ changed = $false } }
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    [void]$computer.Delete('user', [string]$user.psbase.Name)
    return @{ changed = $true }
}

function Invoke-FleetOpGroupCreate {
    # ADSI WinNT:// Create('Group'), Put('Description'), SetInfo (all voided), objectSid read back.
    # Source: MS Learn "IADsContainer::Create method (iads.h)".
    param($A)
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    $group = $computer.Create('Group', [string]$A.name)
    [void]$group.Put('Description', [string]$A.description)
    [void]$group.SetInfo()
    [void]$group.psbase.RefreshCache()
    $sid = Get-FleetAdsiSid -Entry $group
    return @{ changed = $true; sid = $sid }
}

function Invoke-FleetOpGroupDelete {
    # IADsContainer::Delete('group', name), only when the group still has `sid`.
    # Source: MS Learn "IADsContainer::Delete method (iads.h)".
    param($A)
    $group = Get-FleetAdsiEntry -Name ([string]$A.name) -Class 'group'
    if ($null -eq $group) { return @{ changed = $false } }
    if ((Get-FleetAdsiSid -Entry $group) -ne (ConvertTo-FleetSid -Sid ([string]$A.sid))) { return @{ changed = $false } }
    $computer = [ADSI]('WinNT://' + $env:COMPUTERNAME + ',computer')
    [void]$computer.Delete('group', [string]$group.psbase.Name)
    return @{ changed = $true }
}

function Invoke-FleetOpGroupMemberAdd {
    # IADsGroup::Add('WinNT://<SID>') (voided), when the SID is not a member already.
    # Source: MS Learn "IADsGroup::Add method (iads.h)"; ansible.windows win_group_membership.ps1.
    param($A)
    $group = Get-FleetAdsiEntry -Name ([string]$A.group) -Class 'group'
    if ($null -eq $group) { throw (New-FleetWin32Error -Code 2220 -Text ('group not found: ' + [string]$A.group)) }
    $sid = ConvertTo-FleetSid -Sid ([string]$A.sid)
    if ((Get-FleetComSids -Entry $group -Method 'Members') -contains $sid) { return @{ changed = $false } }
    [void]$group.Add('WinNT://' + $sid)
    return @{ changed = $true }
}

function Invoke-FleetOpGroupMemberRemove {
    # IADsGroup::Remove('WinNT://<SID>') (voided), when the SID is a member.
    # Source: MS Learn "IADsGroup::Remove method (iads.h)".
    param($A)
    $group = Get-FleetAdsiEntry -Name ([string]$A.group) -Class 'group'
    if ($null -eq $group) { throw (New-FleetWin32Error -Code 2220 -Text ('group not found: ' + [string]$A.group)) }
    $sid = ConvertTo-FleetSid -Sid ([string]$A.sid)
    if ((Get-FleetComSids -Entry $group -Method 'Members') -notcontains $sid) { return @{ changed = $false } }
    [void]$group.Remove('WinNT://' + $sid)
    return @{ changed = $true }
}

function Invoke-FleetOpServiceChange {
    # Win32_Service.Change with StartName and StartPassword only (Invoke-CimMethod -Arguments);
    # changed = ReturnValue 0. Source: MS Learn "Change method of the Win32_Service class".
    param($A)
    $service = Get-FleetServiceInstance -Name ([string]$A.name)
    if ($null -eq $service) { throw (New-FleetWin32Error -Code 1060 -Text ('service not found: ' + [string]$A.name)) }
    $arguments = @{ StartName = [string]$A.start_name; StartPassword = [string]$A.password }
    $outcome = Invoke-CimMethod -InputObject $service -MethodName Change -Arguments $arguments
    $code = [int]$outcome.ReturnValue
    return @{ changed = ($code -eq 0); return_value = $code }
}

function Invoke-FleetOpServiceControl {
    # System.ServiceProcess.ServiceController Start/Stop + WaitForStatus(status, timeout). A failed
    # start/stop returns its Win32 code (1058 disabled, 1069 logon failure; 1053 for the timeout)
    # instead of throwing. Source: MS Learn "ServiceController.WaitForStatus Method".
    param($A)
    $null = Add-Type -AssemblyName System.ServiceProcess
    $controller = New-Object -TypeName System.ServiceProcess.ServiceController -ArgumentList ([string]$A.name)
    $before = [string]$controller.Status
    $want = 'Running'
    if ([string]$A.action -eq 'stop') { $want = 'Stopped' } elseif ([string]$A.action -ne 'start') { throw ('unknown action: ' + [string]$A.action) }
    $code = 0
    try {
        if ($before -ne $want) {
            if ($want -eq 'Running') { [void]$controller.Start() } else { [void]$controller.Stop() }
            [void]$controller.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]$want, [TimeSpan]::FromMilliseconds([double]$A.timeout_ms))
        }
    } catch {
        $inner = $_.Exception
        while ($null -ne $inner.InnerException -and -not ($inner -is [System.ComponentModel.Win32Exception])) { $inner = $inner.InnerException }
        if ($inner -is [System.ComponentModel.Win32Exception]) { $code = $inner.NativeErrorCode }
        elseif ($inner -is [System.ServiceProcess.TimeoutException]) { $code = 1053 }
        else { throw }
    }
    [void]$controller.Refresh()
    $after = [string]$controller.Status
    return @{ changed = ($after -ne $before); state = $after; code = $code }
}

function Invoke-FleetOpDefenderAdd {
    # Add-MpPreference -ExclusionPath (appends; Set-MpPreference would replace the list).
    # Source: MS Learn "Add-MpPreference (Defender)".
    param($A)
    $paths = Get-FleetExclusionPaths
    if ($null -eq $paths) { throw 'Microsoft Defender cmdlets are not installed' }
    if ($paths -contains [string]$A.path) { return @{ changed = $false } }
    $null = Add-MpPreference -ExclusionPath ([string]$A.path)
    return @{ changed = $true }
}

function Invoke-FleetOpDefenderRemove {
    # Remove-MpPreference -ExclusionPath (only that path). Source: MS Learn "Remove-MpPreference (Defender)".
    param($A)
    $paths = Get-FleetExclusionPaths
    if ($null -eq $paths) { throw 'Microsoft Defender cmdlets are not installed' }
    if ($paths -notcontains [string]$A.path) { return @{ changed = $false } }
    $null = Remove-MpPreference -ExclusionPath ([string]$A.path)
    return @{ changed = $true }
}

function Invoke-FleetOpJournalDelete {
    # Remove-Item -LiteralPath of <job_id>.json, refused when the journal path is not trusted.
    # Source: MS Learn "Remove-Item (Microsoft.PowerShell.Management)".
    param($A)
    $paths = Get-FleetJournalPaths -JobId ([string]$A.job_id)
    if (-not (Test-Path -LiteralPath $paths[2] -PathType Leaf)) { return @{ changed = $false } }
    foreach ($path in $paths) {
        $problem = Get-FleetJournalProblem -Path $path
        if ($null -ne $problem) { throw ('journal not trusted: ' + $problem) }
    }
    $null = Remove-Item -LiteralPath $paths[2] -Force
    return @{ changed = $true }
}

function Invoke-FleetOpSleep {
    # Start-Sleep -Milliseconds. Source: MS Learn "Start-Sleep (Microsoft.PowerShell.Utility)".
    param($A)
    $null = Start-Sleep -Milliseconds ([int]([double]$A.seconds * 1000))
    return @{ changed = $false }
}
