<#
.SYNOPSIS
    Prepares a MailEnable server for Fleet Lockdown: a WinRM HTTPS listener on 5986 and a
    firewall rule for it. Run once, as an administrator, in an elevated PowerShell 5.1.

.DESCRIPTION
    - Creates (or keeps) a WinRM HTTPS listener using an existing certificate from
      Cert:\LocalMachine\My (-CertificateThumbprint) or a new self-signed one (-DnsName;
      New-SelfSignedCertificate needs Windows Server 2012 or later: on 2008 R2 pass a thumbprint).
    - Opens TCP 5986 inbound, optionally only from the MSP's addresses (-AllowedAddress).
    - Keeps Basic authentication and unencrypted WinRM traffic OFF (Fleet Lockdown uses NTLM
      over HTTPS; Basic over plain HTTP is refused by the dashboard anyway).
    - Prints the certificate's SHA-256 fingerprint: enter it in the dashboard to pin it
      (TLS verification "pinned") when the certificate is self-signed.
    - -AllowLocalAdminAccounts sets LocalAccountTokenFilterPolicy=1 so a *local* administrator
      account is not filtered by UAC over the network (not needed for domain accounts or the
      built-in Administrator). This weakens a UAC protection: prefer a domain account.

    This script is syntax-checked by the project's tests; it has not been run by them (there is
    no Windows in CI). Review it before running it.

.EXAMPLE
    .\Enable-FleetLockdownWinRM.ps1 -DnsName mail01.example.com -AllowedAddress 203.0.113.10, 203.0.113.11

.EXAMPLE
    .\Enable-FleetLockdownWinRM.ps1 -CertificateThumbprint 0123456789ABCDEF0123456789ABCDEF01234567
#>
[CmdletBinding()]
param(
    [string]$CertificateThumbprint,
    [string]$DnsName = $env:COMPUTERNAME,
    [string[]]$AllowedAddress = @('Any'),
    [int]$Port = 5986,
    [switch]$AllowLocalAdminAccounts
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'

$identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList $identity
if (-not $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell (Run as administrator).'
}
if ($PSVersionTable.PSVersion.Major -lt 5 -or ($PSVersionTable.PSVersion.Major -eq 5 -and $PSVersionTable.PSVersion.Minor -lt 1)) {
    Write-Warning 'Fleet Lockdown needs Windows Management Framework 5.1 on this server; install it before the first verify.'
}

# 1. The certificate.
if ($CertificateThumbprint) {
    $thumbprint = ($CertificateThumbprint -replace '\s', '').ToUpperInvariant()
    $certificate = Get-Item -LiteralPath ('Cert:\LocalMachine\My\' + $thumbprint)
} else {
    if ($null -eq (Get-Command -Name New-SelfSignedCertificate -ErrorAction SilentlyContinue)) {
        throw 'New-SelfSignedCertificate is not available on this Windows version: pass -CertificateThumbprint of a certificate in LocalMachine\My.'
    }
    $certificate = New-SelfSignedCertificate -DnsName $DnsName -CertStoreLocation 'Cert:\LocalMachine\My'
    $thumbprint = $certificate.Thumbprint
}

# 2. WinRM running, with an HTTPS listener on the certificate.
Set-Service -Name WinRM -StartupType Automatic
Start-Service -Name WinRM
$existing = @(Get-ChildItem -Path 'WSMan:\localhost\Listener' | Where-Object { $_.Keys -contains 'Transport=HTTPS' })
foreach ($listener in $existing) {
    Remove-Item -Path ('WSMan:\localhost\Listener\' + $listener.Name) -Recurse -Force
}
$null = New-Item -Path 'WSMan:\localhost\Listener' -Transport HTTPS -Address * -CertificateThumbPrint $thumbprint -Port $Port -Force

# 3. Basic and unencrypted traffic stay off.
Set-Item -Path 'WSMan:\localhost\Service\Auth\Basic' -Value $false
Set-Item -Path 'WSMan:\localhost\Service\AllowUnencrypted' -Value $false

# 4. Firewall: 5986 inbound, optionally only from the MSP.
$ruleName = 'Fleet Lockdown WinRM HTTPS'
if ($null -ne (Get-Command -Name New-NetFirewallRule -ErrorAction SilentlyContinue)) {
    Get-NetFirewallRule -DisplayName $ruleName -ErrorAction SilentlyContinue | Remove-NetFirewallRule
    $null = New-NetFirewallRule -DisplayName $ruleName -Direction Inbound -Protocol TCP -LocalPort $Port -RemoteAddress $AllowedAddress -Action Allow -Profile Any
} else {
    # Server 2008 R2: no NetSecurity module.
    & netsh.exe advfirewall firewall delete rule name="$ruleName" | Out-Null
    & netsh.exe advfirewall firewall add rule name="$ruleName" dir=in action=allow protocol=TCP localport=$Port "remoteip=$($AllowedAddress -join ',')" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'netsh could not create the firewall rule' }
}

# 5. Optional: let local administrator accounts through UAC remote restrictions.
if ($AllowLocalAdminAccounts) {
    Write-Warning 'Setting LocalAccountTokenFilterPolicy=1: local administrators get full rights over the network.'
    Set-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' -Name LocalAccountTokenFilterPolicy -Value 1 -Type DWord
}

$sha256 = [System.Security.Cryptography.SHA256]::Create()
$fingerprint = ($sha256.ComputeHash($certificate.RawData) | ForEach-Object { $_.ToString('X2') }) -join ':'
Write-Output ('WinRM HTTPS listener on port ' + $Port + ' with certificate ' + $thumbprint)
Write-Output ('SHA-256 fingerprint (for pinning in Fleet Lockdown): ' + $fingerprint)
Write-Output ('Firewall: TCP ' + $Port + ' inbound from ' + ($AllowedAddress -join ', '))
