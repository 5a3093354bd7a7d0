use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(ausi::main_with_args(std::env::args_os()).code())
}
