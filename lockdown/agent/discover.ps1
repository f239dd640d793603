# Fleet Lockdown agent: discover mode, the host facts compile_plan needs.
# MailEnable is 32-bit: its settings are read through the 32-bit registry view. The exact names
# of the version/edition values are not confirmed by a source [U]; directories are.
# Never executed by the project's tests.

$script:MailEnableKey = 'SOFTWARE\Mail Enable\Mail Enable'
$script:MailEnableServiceNames = @('MEMTAS', 'MESMTPCS', 'MEPOPS', 'MEIMAPS', 'MELCS', 'MEPOCS')
$script:DomainRoles = @('standalone_workstation', 'member_workstation', 'standalone_server', 'member_server', 'backup_domain_controller', 'primary_domain_controller')

function Get-FleetMailEnableRegistry {
    $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey([Microsoft.Win32.RegistryHive]::LocalMachine, [Microsoft.Win32.RegistryView]::Registry32)
    $key = $base.OpenSubKey($script:MailEnableKey)
    $values = @{}
    if ($null -eq $key) { return $values }
    try {
        foreach ($name in @('Program Directory', 'Application Directory', 'Configuration Directory', 'Mail Root', 'Version', 'Product Version', 'Edition', 'Product')) {
            $value = $key.GetValue($name)
            if ($null -ne $value -and [string]$value) { $values[$name] = [string]$value }
        }
    } finally {
        $key.Close()
    }
    return $values
}

function Get-FleetFirstValue {
    param([hashtable]$Values, [string[]]$Names)
    foreach ($name in $Names) {
        if ($Values.ContainsKey($name)) { return $Values[$name] }
    }
    return $null
}

function Invoke-FleetDiscover {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    $arch = 'x86'
    if ([Environment]::Is64BitOperatingSystem) { $arch = 'x64' }
    $me = Get-FleetMailEnableRegistry
    $programDir = Get-FleetFirstValue -Values $me -Names @('Program Directory')
    $services = @(Get-CimInstance -ClassName Win32_Service | Where-Object {
            $_.PathName -match 'Mail Enable' -or $script:MailEnableServiceNames -contains $_.Name
        } | ForEach-Object { [string]$_.Name })
    $imeSystem = Get-FleetLocalAccount -Name 'IME_SYSTEM' -SchemaClass 'user'
    $storeGroup = Get-FleetLocalAccount -Name 'IME_STORE_GROUP' -SchemaClass 'group'
    $storeGroupName = 'IME_STORE_GROUP'
    if ($null -eq $storeGroup) {
        $storeGroup = Get-FleetLocalAccount -Name 'IME_STORE_USERS' -SchemaClass 'group'
        $storeGroupName = 'IME_STORE_USERS'
    }
    $facts = [ordered]@{
        computer_name            = [string]$env:COMPUTERNAME
        system_root              = [string]$env:SystemRoot
        os_caption               = [string]$os.Caption
        os_build                 = [int]$os.BuildNumber
        arch                     = $arch
        domain_role              = $script:DomainRoles[[int]$computer.DomainRole]
        powershell_version       = [string]$PSVersionTable.PSVersion
        mailenable_version       = Get-FleetFirstValue -Values $me -Names @('Version', 'Product Version')
        mailenable_edition       = Get-FleetFirstValue -Values $me -Names @('Edition', 'Product')
        program_dir              = $programDir
        application_dir          = Get-FleetFirstValue -Values $me -Names @('Application Directory')
        config_dir               = Get-FleetFirstValue -Values $me -Names @('Configuration Directory')
        mail_root                = Get-FleetFirstValue -Values $me -Names @('Mail Root')
        bin64_exists             = [bool]($programDir -and (Test-Path -LiteralPath (Join-Path -Path $programDir -ChildPath 'Bin64')))
        services                 = @($services | Sort-Object -Unique)
        ime_system_sid           = $null
        store_group_name         = $null
        store_group_sid          = $null
        windows_search_present   = $null -ne (Get-Service -Name 'WSearch' -ErrorAction SilentlyContinue)
        indexing_service_present = $null -ne (Get-Service -Name 'cisvc' -ErrorAction SilentlyContinue)
        defender_present         = ($null -ne (Get-Service -Name 'WinDefend' -ErrorAction SilentlyContinue)) -and ($null -ne (Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue))
    }
    if ($null -ne $imeSystem) { $facts.ime_system_sid = Get-FleetAdsiSid -Entry $imeSystem }
    if ($null -ne $storeGroup) {
        $facts.store_group_name = $storeGroupName
        $facts.store_group_sid = Get-FleetAdsiSid -Entry $storeGroup
    }
    return $facts
}
