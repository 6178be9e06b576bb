//! How a command's outcome becomes an exit status and a message: the documented exit codes
//! (docs/cli.md), the one error kind of its own (a usage error), and what is recognised in an error chain.

/// Exit codes: 0 success, 1 some file was not loaded (or a merge failed), 2 usage error, 3 database
/// unusable.
pub const EXIT_FILE_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_DATABASE: u8 = 3;

/// An error in what the user asked for (exit status 2), as opposed to a problem with the database.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub fn usage(message: String) -> anyhow::Error {
    Usage(message).into()
}

pub fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<postgres::Error>()
            .and_then(|pg| pg.code())
            .is_some_and(|code| *code == postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    })
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
