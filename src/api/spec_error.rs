//! What an InvalidSpec condition and its Warning event say: each problem of a spec with the field path
//! it is at. Shared by every part that validates a user's spec (rollout, traffic routers, gitsync).
use std::fmt;

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Dotted path such as `spec.strategy.canary.steps[2].setWeight`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems joined into one message, as shown in the InvalidSpec condition.
pub fn summary(errors: &[SpecError]) -> String {
    errors.iter().map(SpecError::to_string).collect::<Vec<_>>().join("; ")
}
