//! The `cli-guard` binary: everything lives in the library; this maps its
//! outcome to the process's exit.

use std::process::ExitCode;

use cli_guard::exit::{die_by, Exit};

fn main() -> ExitCode {
    match cli_guard::cli::dispatch(std::env::args_os().collect()) {
        Ok(Exit::Code(code)) => ExitCode::from(code),
        Ok(Exit::Signal(sig)) => ExitCode::from(die_by(sig)),
        Err(failure) => {
            eprintln!("cli-guard: {failure}");
            ExitCode::from(failure.code)
        }
    }
}
