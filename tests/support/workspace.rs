//! Binaries of the workspace's other crates, which cargo does not build for this crate's tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary of `package` (named like it), built in the profile of the test (or benchmark)
/// that asks: cargo builds it on the first call in a process (a no-op when it is up to date).
pub fn binary(package: &str) -> PathBuf {
    // The test binary is <target>/<profile dir>/deps/<name>.
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lies in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("the target directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile in {}", profile_dir.display()),
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "--quiet", "--package", package])
        .args(["--bin", package, "--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|error| panic!("run cargo to build {package}: {error}"));
    assert!(status.success(), "cargo build --package {package} failed");
    profile_dir.join(package)
}
