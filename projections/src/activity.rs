//! What each command (or process) is called in audit records: Graph-style
//! activity display names and categories.

use store::{Causation, Record};

/// Commands as named on the command line, their activity display name, and category.
const ACTIVITIES: [(&str, &str, &str); 50] = [
    ("init", "Initialize tenant", "DirectoryManagement"),
    ("sku add", "Add subscription", "DirectoryManagement"),
    ("sku set-seats", "Update subscription", "DirectoryManagement"),
    ("user create", "Add user", "UserManagement"),
    ("user update", "Update user", "UserManagement"),
    ("user license assign", "Change user license", "UserManagement"),
    ("user license remove", "Change user license", "UserManagement"),
    ("user admin-role add", "Add member to role", "RoleManagement"),
    ("user admin-role remove", "Remove member from role", "RoleManagement"),
    ("user block", "Disable account", "UserManagement"),
    ("user unblock", "Enable account", "UserManagement"),
    ("user delete", "Delete user", "UserManagement"),
    ("user restore", "Restore user", "UserManagement"),
    ("user reset-password", "Reset user password", "UserManagement"),
    ("user invite", "Invite external user", "UserManagement"),
    ("user accept-invite", "Redeem external user invite", "UserManagement"),
    ("group create", "Add group", "GroupManagement"),
    ("group add-member", "Add member to group", "GroupManagement"),
    ("group remove-member", "Remove member from group", "GroupManagement"),
    ("group add-owner", "Add owner to group", "GroupManagement"),
    ("env create", "Create environment", "EnvironmentManagement"),
    ("env set", "Update environment settings", "EnvironmentManagement"),
    ("env add-user", "Add user to environment", "SystemUserManagement"),
    ("env unified-routing enable", "Provision unified routing", "EnvironmentManagement"),
    ("env unified-routing disable", "Turn off unified routing", "EnvironmentManagement"),
    ("user refresh", "Refresh user", "SystemUserManagement"),
    ("user access", "Access environment", "SystemUserManagement"),
    ("user set-access-mode", "Update access mode", "SystemUserManagement"),
    ("user reassign-records", "Reassign records", "SystemUserManagement"),
    ("user set-email", "Update primary email", "SystemUserManagement"),
    ("user set-bu", "Change business unit", "SecurityManagement"),
    ("app-user create", "Add application user", "SystemUserManagement"),
    ("app-user set-status", "Update application user status", "SystemUserManagement"),
    ("import stub-users", "Import stub users", "SystemUserManagement"),
    ("bu create", "Add business unit", "SecurityManagement"),
    ("role copy", "Copy security role", "SecurityManagement"),
    ("role set-privilege", "Update role privilege", "SecurityManagement"),
    ("role assign", "Assign security role", "SecurityManagement"),
    ("role remove", "Remove security role", "SecurityManagement"),
    ("team create", "Add team", "SecurityManagement"),
    ("team add-member", "Add member to team", "SecurityManagement"),
    ("team remove-member", "Remove member from team", "SecurityManagement"),
    ("team role assign", "Assign security role to team", "SecurityManagement"),
    ("team role remove", "Remove security role from team", "SecurityManagement"),
    ("mailbox test-enable", "Test and enable mailbox", "SystemUserManagement"),
    ("sync", "Synchronize user", "SystemUserManagement"),
    ("import graph", "Import from Microsoft Graph", "DirectoryManagement"),
    ("import environments", "Import environments", "EnvironmentManagement"),
    ("import systemusers", "Import observed SystemUser table", "SystemUserManagement"),
    ("report", "Generate report", "AuditReport"),
];

/// The activity display name and category of a command by its command-line name.
pub fn of_command(command: &str) -> (String, &'static str) {
    match ACTIVITIES.iter().find(|(name, _, _)| *name == command) {
        Some((_, display, category)) => ((*display).to_owned(), category),
        None => (command.to_owned(), "Other"),
    }
}

/// The activity of the command (or process) that wrote a record.
pub fn of_record(record: &Record) -> (String, &'static str) {
    match &record.causation {
        Causation::Command { name } | Causation::Process { name, .. } => of_command(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_of_the_shell_has_an_activity() {
        let (display, category) = of_command("user license assign");
        assert_eq!((display.as_str(), category), ("Change user license", "UserManagement"));
        assert_eq!(of_command("sync").0, "Synchronize user");
        assert_eq!(of_command("frobnicate"), ("frobnicate".to_owned(), "Other"));
        let names: std::collections::BTreeSet<_> = ACTIVITIES.iter().map(|a| a.0).collect();
        assert_eq!(names.len(), ACTIVITIES.len(), "no command listed twice");
    }
}
