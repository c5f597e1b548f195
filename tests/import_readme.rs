//! README's "Coming from nginx" example is what the importer does: its nginx block,
//! imported by the real binary, gives its TOML block and its stderr lines.

use std::process::Command;

mod support;

use support::tempdir;

/// The body of the first ```LANG block after `after` in README.md.
fn block<'a>(readme: &'a str, after: &str, lang: &str) -> &'a str {
    let from = readme.find(after).expect("section in README") + after.len();
    let open = format!("```{lang}\n");
    let start = readme[from..].find(&open).expect("block") + from + open.len();
    let end = readme[start..].find("```").expect("block end") + start;
    &readme[start..end]
}

#[test]
fn the_readme_example_is_what_the_importer_writes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = "## Coming from nginx";
    let nginx = block(&readme, section, "nginx");
    let toml = block(&readme, section, "toml");
    let stderr = block(&readme, section, "text");
    let dir = tempdir::Dir::new();
    let conf = dir.path.join("nginx.conf");
    std::fs::write(&conf, nginx).expect("write nginx.conf");
    let out = dir.path.join("cutover.toml");
    let run = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(&dir.path)
        .args(["import", "nginx", "nginx.conf", "-o", "cutover.toml"])
        .output()
        .expect("run cutover import");
    assert_eq!(run.status.code(), Some(2), "something is left out");
    let written = std::fs::read_to_string(&out).expect("output");
    // The README leaves out the header comment.
    let body = written
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(body.trim(), toml.trim());
    assert_eq!(String::from_utf8_lossy(&run.stderr).trim(), stderr.trim());
    let check = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["check", "-c"])
        .arg(&out)
        .output()
        .expect("run cutover check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
