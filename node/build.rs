//! Records the git commit the node is built from (`BFTNODE_GIT_COMMIT`: the first 12 hex
//! digits of HEAD; `unknown` outside a git checkout or without git), for `bftnode --version`,
//! `GET /status` and `bftnode_build_info`. Uncommitted changes are not marked: watching every
//! file would rebuild the node on any edit anywhere.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BFTNODE_GIT_COMMIT={commit}");
    // A new commit or checkout moves HEAD or the branch it names.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "refs/heads", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
