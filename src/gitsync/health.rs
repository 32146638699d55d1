//! (being written; placeholder with the agreed type)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Progressing(String),
    Degraded(String),
    Unknown(String),
}
