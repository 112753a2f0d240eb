//! Who is calling the admin API: the break-glass admin token, or a user
//! (session JWT or cookie) with a role. The guard puts a [`Caller`] in the
//! request's extensions; handlers check permissions and ownership with it.

use llm_link_gateway::identity::{Permission, Role, UserEntry};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Caller {
    /// The user, or `None` for the admin token.
    pub user: Option<Arc<UserEntry>>,
    pub role: Role,
    /// For the audit log: `admin@<ip>` or `user:<name>`.
    pub actor: String,
}

impl Caller {
    /// The admin token: every permission.
    pub fn admin_token(actor: String) -> Caller {
        Caller {
            user: None,
            role: Role::Admin,
            actor,
        }
    }

    pub fn can(&self, p: Permission) -> bool {
        self.role.can(p)
    }

    /// The user id, when a user calls.
    pub fn user_id(&self) -> Option<i64> {
        self.user.as_ref().map(|u| u.id)
    }

    /// Whether this caller sees and manages everything (not just its own).
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
