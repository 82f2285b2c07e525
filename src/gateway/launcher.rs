//! Upstream commands that die with the gateway, even when the gateway is killed outright
//! (SIGKILL, the out-of-memory killer), not only when it shuts down.
//!
//! A stdio upstream is stopped by closing its stdin, and at shutdown by SIGTERM then SIGKILL
//! (`upstream::Children`). None of that happens when `serve` itself is killed: the kernel closes
//! the child's stdin, and a child that does not exit on its stdin's end is left running. Linux
//! can signal a child when its parent dies (`PR_SET_PDEATHSIG`), but only the child can ask for
//! it, between `fork` and `exec`: in Rust that is `pre_exec`, an unsafe hook this crate does not
//! use. So the binary starts each upstream command through itself:
//! `scalekit-mcp __launch-upstream <parent pid> <path> <name> <args…>` asks for SIGKILL when its
//! parent dies, checks that the parent is still there (it may have died before the request
//! took effect), and `exec`s the program at `path` under the `name` it was given (its `argv[0]`),
//! which keeps the request (except for a set-user-ID program, for which the kernel clears it).
//!
//! The kernel sends the signal when the *thread* that started the child ends. The gateway
//! starts children from tokio's worker threads and the main thread, which live as long as the
//! server does.
//!
//! Only the `scalekit-mcp` binary turns this on ([`launch_through_this_binary`], from
//! `cli::main`): a test's or a library user's process is not this binary and starts commands
//! directly. On other systems commands are started directly as well.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The first argument that makes the binary a launcher instead of the CLI. Not a subcommand:
/// it must run before anything else (`.env` loading would change the child's environment).
pub const LAUNCH_ARG: &str = "__launch-upstream";

#[cfg(target_os = "linux")]
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, start upstream commands through this process's own executable (see the module
/// documentation). Called by the binary only.
pub fn launch_through_this_binary() {
    #[cfg(target_os = "linux")]
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The command that starts `program` with `args`: through the launcher when it is on and the
/// program is found, else directly (so that a program that is not there fails to start with
/// the system's own error, as it always did).
pub fn command(program: &str, args: &[String]) -> tokio::process::Command {
    #[cfg(target_os = "linux")]
    if ENABLED.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(resolved) = resolve(program)
    {
        // /proc/self/exe is this executable even when its file was replaced or deleted since
        // it started (an upgrade in place).
        let mut command = tokio::process::Command::new("/proc/self/exe");
        command
            .arg(LAUNCH_ARG)
            .arg(std::process::id().to_string())
            .arg(resolved)
            .arg(program)
            .args(args);
        return command;
    }
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    command
}

/// `program` as `exec` would find it: a path as given, a bare name on `PATH`. `None` when it
/// is not there or not executable.
#[cfg(target_os = "linux")]
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(target_os = "linux")]
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs the launcher when the command line asks for it (`args` as the process got them, the
/// executable first). `None`: this process is not a launcher. Otherwise it does not return
/// unless starting the program failed, and then returns the exit code to end with (127, as a
/// shell does), having said why on stderr.
pub fn run_if_asked(args: &[OsString]) -> Option<ExitCode> {
    if args.get(1).is_none_or(|arg| arg != LAUNCH_ARG) {
        return None;
    }
    let failure = launch(&args[2..]);
    // Not eprintln!: a closed stderr must not turn an error into a panic. The gateway logs
    // this line as the child's last words.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("scalekit-mcp: cannot start the upstream command: {failure}\n").as_bytes(),
    );
    Some(ExitCode::from(127))
}

/// Asks for SIGKILL when the parent (`args[0]`, its pid) dies, then becomes the program at
/// `args[1]`, named `args[2]`, with the rest as its arguments. Returns only on failure, saying
/// what failed.
#[cfg(target_os = "linux")]
fn launch(args: &[OsString]) -> String {
    use std::os::unix::process::CommandExt;
    let (Some(parent), Some(program), Some(name)) = (args.first(), args.get(1), args.get(2)) else {
        return format!("usage: scalekit-mcp {LAUNCH_ARG} <parent pid> <path> <name> [args…]");
    };
    let parent = parent.to_str().and_then(|pid| pid.parse::<i32>().ok());
    if let Err(error) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        return format!("cannot ask to be stopped with the gateway: {error}");
    }
    // The parent may have died before the request took effect: the signal will not come then.
    let still_there =
        rustix::process::getppid().is_some_and(|pid| Some(pid.as_raw_nonzero().get()) == parent);
    if !still_there {
        return "the gateway that started it is gone".to_owned();
    }
    let error = std::process::Command::new(program)
        .arg0(name)
        .args(&args[3..])
        .exec();
    format!("{}: {error}", program.to_string_lossy())
}

#[cfg(not(target_os = "linux"))]
fn launch(_: &[OsString]) -> String {
    "starting commands through the binary is supported on Linux only".to_owned()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn resolves_programs_as_exec_would() {
        assert_eq!(resolve("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        let sh = resolve("sh").expect("sh is on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(resolve("no-such-program-anywhere"), None);
        let plain_file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(
            resolve(plain_file.path().to_str().unwrap()),
            None,
            "not executable"
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(dir.path().to_str().unwrap()), None, "a directory");
    }

    #[test]
    fn other_command_lines_are_not_the_launchers() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(run_if_asked(&args(&["scalekit-mcp", "serve"])).is_none());
        assert!(run_if_asked(&args(&["scalekit-mcp"])).is_none());
    }
}
