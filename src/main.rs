//! The `scalekit-mcp` binary. Its `main` is the library's (`cli::main`, which parses the command
//! line, runs the command and turns its error into a message and an exit code), so that the
//! modules it runs need not be public; what is here is what only a binary should decide.

use std::process::ExitCode;

/// mimalloc rather than the system allocator: see `allocator.rs` for why and how it was
/// measured. Chosen by the binary, not the library, so that library users keep their own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    scalekit_mcp::__binary_main()
}
