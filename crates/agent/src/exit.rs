//! Process exit codes of `interceptor-ebpf` (documented in docs/agent.md). Scripts branch on them, so the values
//! are stable: new ones are appended, none is reused.

use std::process::ExitCode;

/// Why the program exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// `agent`: stopped by Shutdown, SIGTERM or SIGINT. `ctl`: the command succeeded.
    Ok = 0,
    /// `agent`: could not start (dataplane load, control socket, another agent already serving) or failed while
    /// running. `ctl`: an unexpected local failure (e.g. writing to standard output).
    Failure = 1,
    /// Invalid command line or configuration value (clap uses 2 for usage errors too).
    Usage = 2,
    /// `ctl`: no agent answered: cannot connect, timed out, the connection closed, or the reply was not a valid
    /// control-protocol response.
    Connection = 3,
    /// `ctl`: the agent refused the peer or its own socket (reason codes 1-5).
    Authorization = 4,
    /// `ctl`: the request was refused or could not be applied (codes 6-8), or its input (e.g. a policy file)
    /// is invalid.
    Command = 5,
    /// `ctl health`: the agent answered and reports `degraded`.
    Degraded = 6,
}

impl Exit {
    pub const fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}
