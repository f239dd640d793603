# Fleet Lockdown agent: SQL Server login, database user and database permissions for IME_SYSTEM.
# System.Data.SqlClient with Integrated Security (the WinRM user's token; SQL must be local:
# a remote SQL Server hits the Kerberos double hop). Identifiers cannot be parameters, so every
# statement is built server-side with QUOTENAME and run with sp_executesql; each step is
# guarded (SUSER_ID / DATABASE_PRINCIPAL_ID / HAS_PERMS) so a re-run changes nothing.
# Never executed by the project's tests.

$script:SqlPermissions = @('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'EXECUTE')
$script:SqlServer = '.'

function Open-FleetSqlConnection {
    param([string]$Database)
    $builder = New-Object -TypeName System.Data.SqlClient.SqlConnectionStringBuilder
    $builder['Data Source'] = $script:SqlServer
    $builder['Initial Catalog'] = $Database
    $builder['Integrated Security'] = $true
    $builder['Connect Timeout'] = 15
    $connection = New-Object -TypeName System.Data.SqlClient.SqlConnection -ArgumentList $builder.ConnectionString
    $connection.Open()
    return $connection
}

function Invoke-FleetSqlScalar {
    param($Connection, [string]$Text, [hashtable]$Parameters)
    $command = $Connection.CreateCommand()
    $command.CommandText = $Text
    foreach ($name in $Parameters.Keys) {
        [void]$command.Parameters.AddWithValue($name, [string]$Parameters[$name])
    }
    return $command.ExecuteScalar()
}

function Get-FleetSqlObservation {
    param($Connection, [string]$Login)
    $loginId = Invoke-FleetSqlScalar -Connection $Connection -Text 'SELECT SUSER_ID(@login)' -Parameters @{ '@login' = $Login }
    $userId = Invoke-FleetSqlScalar -Connection $Connection -Text 'SELECT DATABASE_PRINCIPAL_ID(@login)' -Parameters @{ '@login' = $Login }
    $command = $Connection.CreateCommand()
    $command.CommandText = "SELECT p.permission_name FROM sys.database_permissions p JOIN sys.database_principals u ON u.principal_id = p.grantee_principal_id WHERE u.name = @login AND p.class_desc = 'DATABASE' AND p.state_desc IN ('GRANT', 'GRANT_WITH_GRANT_OPTION')"
    [void]$command.Parameters.AddWithValue('@login', $Login)
    $reader = $command.ExecuteReader()
    $permissions = @()
    try {
        while ($reader.Read()) { $permissions += [string]$reader.GetString(0) }
    } finally {
        $reader.Close()
    }
    return [ordered]@{
        login_exists = -not ($null -eq $loginId -or $loginId -is [DBNull])
        user_exists  = -not ($null -eq $userId -or $userId -is [DBNull])
        permissions  = @($permissions)
    }
}

$script:SqlEnsureLoginAndUser = @'
DECLARE @q nvarchar(max);
IF SUSER_ID(@login) IS NULL
BEGIN
    SET @q = N'CREATE LOGIN ' + QUOTENAME(@login) + N' FROM WINDOWS';
    EXEC sp_executesql @q;
END
IF DATABASE_PRINCIPAL_ID(@login) IS NULL
BEGIN
    SET @q = N'CREATE USER ' + QUOTENAME(@login) + N' FOR LOGIN ' + QUOTENAME(@login);
    EXEC sp_executesql @q;
END
'@

$script:SqlGrant = @'
DECLARE @q nvarchar(max);
IF NOT EXISTS (SELECT 1 FROM sys.database_permissions p JOIN sys.database_principals u ON u.principal_id = p.grantee_principal_id
               WHERE u.name = @login AND p.class_desc = 'DATABASE' AND p.permission_name = @permission AND p.state_desc LIKE 'GRANT%')
BEGIN
    SET @q = N'GRANT ' + @permission + N' TO ' + QUOTENAME(@login);
    EXEC sp_executesql @q;
END
'@

function Invoke-FleetSqlGrant {
    param($Item, [string]$Mode)
    $obs = New-FleetObservation -Item $Item
    $login = [string]$Item.principal_name
    $connection = Open-FleetSqlConnection -Database ([string]$Item.target)
    try {
        $obs.sql = Get-FleetSqlObservation -Connection $connection -Login $login
        if ($Mode -ne 'apply') { return $obs }
        $before = ConvertTo-Json -InputObject $obs.sql -Compress
        if ($Item.judge -eq 'sql_login_and_user') {
            if ($obs.sql.login_exists -and $obs.sql.user_exists) { return $obs }
            [void](Invoke-FleetSqlScalar -Connection $connection -Text $script:SqlEnsureLoginAndUser -Parameters @{ '@login' = $login })
        } else {
            $missing = @($Item.sql_permissions | Where-Object { $obs.sql.permissions -notcontains $_ })
            if ($missing.Count -eq 0) { return $obs }
            foreach ($permission in $missing) {
                # Keywords cannot be quoted: only the fixed list is ever spliced into GRANT.
                if ($script:SqlPermissions -notcontains $permission) { throw ('refusing SQL permission ' + $permission) }
                [void](Invoke-FleetSqlScalar -Connection $connection -Text $script:SqlGrant -Parameters @{ '@login' = $login; '@permission' = $permission })
            }
        }
        $obs.sql = Get-FleetSqlObservation -Connection $connection -Login $login
        $record = [ordered]@{ login = $login; login_exists = $obs.sql.login_exists; user_exists = $obs.sql.user_exists; permissions = @($obs.sql.permissions) }
        Add-FleetChange -Item $Item -Before $before -After (ConvertTo-Json -InputObject $record -Compress) -Created $false
        $obs.action = 'changed'
        return $obs
    } finally {
        $connection.Close()
    }
}

$script:SqlRevoke = @'
DECLARE @q nvarchar(max);
IF EXISTS (SELECT 1 FROM sys.database_permissions p JOIN sys.database_principals u ON u.principal_id = p.grantee_principal_id
           WHERE u.name = @login AND p.class_desc = 'DATABASE' AND p.permission_name = @permission)
BEGIN
    SET @q = N'REVOKE ' + @permission + N' FROM ' + QUOTENAME(@login);
    EXEC sp_executesql @q;
END
'@

$script:SqlDropUserAndLogin = @'
DECLARE @q nvarchar(max);
IF @dropUser = N'1' AND DATABASE_PRINCIPAL_ID(@login) IS NOT NULL
BEGIN
    SET @q = N'DROP USER ' + QUOTENAME(@login);
    EXEC sp_executesql @q;
END
IF @dropLogin = N'1' AND SUSER_ID(@login) IS NOT NULL
BEGIN
    SET @q = N'DROP LOGIN ' + QUOTENAME(@login);
    EXEC sp_executesql @q;
END
'@

function Undo-FleetSqlChange {
    # Revoke only the permissions this tool granted; drop the user/login only if it created them.
    param($Change)
    $before = $Change.before | ConvertFrom-Json
    $after = $Change.after | ConvertFrom-Json
    $login = [string]$after.login
    if (-not $login) { throw 'the SQL change record does not name the login' }
    $connection = Open-FleetSqlConnection -Database ([string]$Change.target)
    try {
        foreach ($permission in @($after.permissions | Where-Object { @($before.permissions) -notcontains $_ })) {
            if ($script:SqlPermissions -notcontains $permission) { continue }
            [void](Invoke-FleetSqlScalar -Connection $connection -Text $script:SqlRevoke -Parameters @{ '@login' = $login; '@permission' = $permission })
        }
        $dropUser = [string][int]([bool]$after.user_exists -and -not [bool]$before.user_exists)
        $dropLogin = [string][int]([bool]$after.login_exists -and -not [bool]$before.login_exists)
        [void](Invoke-FleetSqlScalar -Connection $connection -Text $script:SqlDropUserAndLogin -Parameters @{ '@login' = $login; '@dropUser' = $dropUser; '@dropLogin' = $dropLogin })
    } finally {
        $connection.Close()
    }
    return 'rolled_back'
}
