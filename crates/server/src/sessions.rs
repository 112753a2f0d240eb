//! Session tokens on the model endpoints (replaced by the users work).

use crate::state::AppState;
use llm_link_gateway::identity::UserEntry;
use std::sync::Arc;

#[derive(Debug)]
pub struct SessionError(&'static str);

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

pub async fn session_user(_st: &AppState, _token: &str) -> Result<Arc<UserEntry>, SessionError> {
    Err(SessionError("invalid API key"))
}
