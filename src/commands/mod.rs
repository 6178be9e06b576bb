//! One module per command that does more than call one function of another module.

pub mod compact;
pub mod ingest;
pub mod jobs;
pub mod roles;
pub mod watch;
