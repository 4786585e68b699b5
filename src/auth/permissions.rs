//! The permission table: what each project role, and the public, may do.
//! Every access decision about a project ends in `Role::allows` or
//! `public_allows`.

use std::fmt;
use std::str::FromStr;

/// Something a caller may do in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Pull manifests and blobs; list tags, referrers, repositories and artifacts.
    Pull,
    /// Push blobs and manifests; create and move tags.
    Push,
    DeleteTag,
    /// Delete manifests (with their tags) and blobs.
    DeleteArtifact,
    /// See the project and its settings.
    ReadProject,
    UpdateProject,
    DeleteProject,
    ReadMembers,
    ManageMembers,
    ReadRobots,
    ManageRobots,
    ReadPolicies,
    ManagePolicies,
    ReadWebhooks,
    ManageWebhooks,
    ReadAudit,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::Pull,
        Action::Push,
        Action::DeleteTag,
        Action::DeleteArtifact,
        Action::ReadProject,
        Action::UpdateProject,
        Action::DeleteProject,
        Action::ReadMembers,
        Action::ManageMembers,
        Action::ReadRobots,
        Action::ManageRobots,
        Action::ReadPolicies,
        Action::ManagePolicies,
        Action::ReadWebhooks,
        Action::ManageWebhooks,
        Action::ReadAudit,
    ];

    /// What robot accounts may be given: the registry operations CI needs.
    pub const ROBOT: [Action; 4] = [
        Action::Pull,
        Action::Push,
        Action::DeleteTag,
        Action::DeleteArtifact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::DeleteTag => "delete_tag",
            Action::DeleteArtifact => "delete_artifact",
            Action::ReadProject => "read_project",
            Action::UpdateProject => "update_project",
            Action::DeleteProject => "delete_project",
            Action::ReadMembers => "read_members",
            Action::ManageMembers => "manage_members",
            Action::ReadRobots => "read_robots",
            Action::ManageRobots => "manage_robots",
            Action::ReadPolicies => "read_policies",
            Action::ManagePolicies => "manage_policies",
            Action::ReadWebhooks => "read_webhooks",
            Action::ManageWebhooks => "manage_webhooks",
            Action::ReadAudit => "read_audit",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

/// A user's role in a project, from most to least powerful (as Harbor's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ProjectAdmin,
    Maintainer,
    Developer,
    Guest,
    LimitedGuest,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ProjectAdmin,
        Role::Maintainer,
        Role::Developer,
        Role::Guest,
        Role::LimitedGuest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "project_admin",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::LimitedGuest => "limited_guest",
        }
    }

    /// The permission table.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::ProjectAdmin => true,
            Role::Maintainer => !matches!(
                action,
                UpdateProject | DeleteProject | ManageMembers | ManageRobots | ManageWebhooks
            ),
            Role::Developer => matches!(
                action,
                Pull | Push | ReadProject | ReadMembers | ReadPolicies | ReadAudit
            ),
            Role::Guest => matches!(
                action,
                Pull | ReadProject | ReadMembers | ReadPolicies | ReadAudit
            ),
            Role::LimitedGuest => matches!(action, Pull | ReadProject),
        }
    }
}

/// What anyone, signed in or not, may do in a public project.
pub fn public_allows(action: Action) -> bool {
    matches!(action, Action::Pull | Action::ReadProject)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (project_admin, maintainer, developer, guest, limited_guest)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        // Each role may do everything the next one down may.
        for pair in Role::ALL.windows(2) {
            for action in Action::ALL {
                assert!(
                    !pair[1].allows(action) || pair[0].allows(action),
                    "{} may {action} but {} may not",
                    pair[1],
                    pair[0]
                );
            }
        }
        assert!(Role::Developer.allows(Action::Push));
        assert!(!Role::Guest.allows(Action::Push));
        assert!(!Role::LimitedGuest.allows(Action::ReadMembers));
        assert!(!Role::Maintainer.allows(Action::ManageMembers));
        assert!(Role::Maintainer.allows(Action::DeleteArtifact));
        assert!(!Role::Developer.allows(Action::DeleteTag));
    }

    #[test]
    fn names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("owner".parse::<Role>().is_err());
    }
}
